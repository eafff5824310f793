"""``cloudseed server …``: servers, their metadata, and their passwords."""

from __future__ import annotations

import argparse
import base64
from pathlib import Path
from typing import Any

from cloudseed.cli.context import (
    EXIT_USAGE,
    CliError,
    ControlClient,
    add_group,
    command,
    emit,
    parse_key_values,
    quote,
)

COLUMNS = ("id", "name", "hostname", "networks", "key_name")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "server", "Servers (the guests metadata is served to)")
    _register_create(group)
    command(group, "list", "List servers").set_defaults(func=list_servers)
    show = command(group, "show", "Show a server")
    show.add_argument("server", metavar="SERVER", help="name or id")
    show.set_defaults(func=show_server)
    delete = command(group, "delete", "Delete a server and the ports created with it", output=False)
    delete.add_argument("server", metavar="SERVER", help="name or id")
    delete.add_argument(
        "--keep-ports", action="store_true", help="free the server's ports instead of deleting them"
    )
    delete.set_defaults(func=delete_server)

    set_ = command(group, "set", "Change server properties and settings", output=False)
    set_.add_argument("server", metavar="SERVER", help="name or id")
    set_.add_argument(
        "--property",
        metavar="KEY=VALUE",
        action="append",
        help="metadata item to add or change (repeatable)",
    )
    set_.add_argument("--name", help="new server name")
    set_.add_argument("--hostname", help="new host name")
    set_.add_argument("--imds-tokens", choices=("optional", "required"))
    set_.add_argument("--imds-endpoint", choices=("enabled", "disabled"))
    set_.set_defaults(func=set_server)
    unset = command(group, "unset", "Remove server metadata items", output=False)
    unset.add_argument("server", metavar="SERVER", help="name or id")
    unset.add_argument(
        "--property",
        metavar="KEY",
        action="append",
        required=True,
        help="metadata key to remove (repeatable)",
    )
    unset.set_defaults(func=unset_server)

    password = add_group(group, "password", "The password a guest posted")
    show_pw = command(password, "show", "Show the (guest-encrypted) password")
    show_pw.add_argument("server", metavar="SERVER")
    show_pw.set_defaults(func=show_password)
    clear = command(
        password, "clear", "Clear the password so the guest may set it again", output=False
    )
    clear.add_argument("server", metavar="SERVER")
    clear.set_defaults(func=clear_password)


def _register_create(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    create = command(group, "create", "Create a server with a port on a network")
    create.add_argument("name", metavar="NAME")
    nic = create.add_mutually_exclusive_group(required=True)
    nic.add_argument("--network", help="network for a new port (name or id)")
    nic.add_argument("--port", help="an existing, unowned port (name or id)")
    create.add_argument("--fixed-ip", metavar="IP", help="address for the new port")
    create.add_argument("--mac", metavar="MAC", help="MAC for the new port")
    create.add_argument("--key-name", metavar="KEYPAIR")
    create.add_argument("--user-data", metavar="FILE", help="file served as user-data")
    create.add_argument(
        "--property", metavar="KEY=VALUE", action="append", help="metadata item (repeatable)"
    )
    create.add_argument(
        "--file",
        metavar="DEST=SRC",
        action="append",
        help="inject local file SRC at DEST (repeatable, at most 5)",
    )
    create.add_argument("--config-drive", action="store_true", help="build a config drive")
    create.add_argument("--availability-zone", metavar="AZ")
    create.add_argument("--flavor", metavar="NAME")
    create.add_argument("--image", metavar="ID")
    create.add_argument("--project", metavar="ID")
    create.add_argument("--hostname", help="host name (default: derived from NAME)")
    create.add_argument(
        "--imds-tokens",
        choices=("optional", "required"),
        default="optional",
        help="IMDSv2 session tokens (default: optional)",
    )
    create.add_argument(
        "--imds-endpoint",
        choices=("enabled", "disabled"),
        default="enabled",
        help="metadata endpoint switch (default: enabled)",
    )
    create.set_defaults(func=create_server)


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CliError(f"{option} {path}: {exc.strerror}") from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def create_server(args: argparse.Namespace) -> int:
    if args.port and (args.fixed_ip or args.mac):
        raise CliError(
            "--fixed-ip and --mac apply to a new port; drop them with --port", EXIT_USAGE
        )
    nic: dict[str, Any] = {"port": args.port} if args.port else {"network": args.network}
    if args.fixed_ip:
        nic["fixed_ip"] = args.fixed_ip
    if args.mac:
        nic["mac_address"] = args.mac
    body: dict[str, Any] = {
        "name": args.name,
        "networks": [nic],
        "metadata": parse_key_values(args.property, "--property"),
        "config_drive": args.config_drive,
        "imds": {"tokens": args.imds_tokens, "endpoint": args.imds_endpoint},
    }
    optional = {
        "key_name": args.key_name,
        "availability_zone": args.availability_zone,
        "flavor_name": args.flavor,
        "image_id": args.image,
        "project_id": args.project,
        "hostname": args.hostname,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.user_data:
        body["user_data"] = _b64(_read(args.user_data, "--user-data"))
    files = []
    for spec in args.file or ():
        dest, sep, src = spec.partition("=")
        if not sep or not dest or not src:
            raise CliError(f"--file {spec!r}: expected DEST=SRC", EXIT_USAGE)
        files.append({"path": dest, "contents": _b64(_read(src, "--file"))})
    body["files"] = files
    server = ControlClient.from_args(args).post("/v1/servers", body)
    emit(server_record(server, args.format), args.format)
    return 0


def server_record(server: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The API object for json/yaml; for tables, an ``openstack server show`` layout."""
    if fmt != "table":
        return server
    return {
        "id": server["id"],
        "name": server["name"],
        "hostname": server["hostname"],
        "instance_id": f"i-{server['ec2_id']:08x}",
        "addresses": _addresses(server),
        "key_name": server["key_name"],
        "properties": server["metadata"],
        "user_data": f"{len(base64.b64decode(server['user_data']))} bytes"
        if server["user_data"]
        else None,
        "files": [f["path"] for f in server["files"]],
        "config_drive": server["config_drive"],
        "imds_tokens": server["imds"]["tokens"],
        "imds_endpoint": server["imds"]["endpoint"],
        "availability_zone": server["availability_zone"],
        "flavor": server["flavor_name"],
        "image": server["image_id"],
        "project_id": server["project_id"],
        "created": server["created_at"],
    }


def _addresses(server: dict[str, Any]) -> list[str]:
    return [
        f"{port['mac_address']}: "
        + ", ".join(f["ip_address"] for f in port["fixed_ips"])
        + (f" (floating {port['floating_ip']})" if port["floating_ip"] else "")
        for port in server["ports"]
    ]


def list_servers(args: argparse.Namespace) -> int:
    servers = ControlClient.from_args(args).get("/v1/servers")["servers"]
    if args.format == "table":
        servers = [
            {
                **s,
                "networks": ", ".join(f["ip_address"] for p in s["ports"] for f in p["fixed_ips"]),
            }
            for s in servers
        ]
    emit(servers, args.format, COLUMNS)
    return 0


def show_server(args: argparse.Namespace) -> int:
    server = ControlClient.from_args(args).get(f"/v1/servers/{quote(args.server)}")
    emit(server_record(server, args.format), args.format)
    return 0


def delete_server(args: argparse.Namespace) -> int:
    suffix = "?keep_ports=true" if args.keep_ports else ""
    ControlClient.from_args(args).delete(f"/v1/servers/{quote(args.server)}{suffix}")
    return 0


def set_server(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    path = f"/v1/servers/{quote(args.server)}"
    properties = parse_key_values(args.property, "--property")
    update: dict[str, Any] = {}
    if args.name:
        update["name"] = args.name
    if args.hostname:
        update["hostname"] = args.hostname
    if args.imds_tokens or args.imds_endpoint:
        current = client.get(path)["imds"]
        update["imds"] = {
            "tokens": args.imds_tokens or current["tokens"],
            "endpoint": args.imds_endpoint or current["endpoint"],
        }
    if not properties and not update:
        raise CliError(
            "nothing to set; give --property, --name, --hostname or --imds-*", EXIT_USAGE
        )
    if properties:
        client.post(f"{path}/metadata", {"metadata": properties})
    if update:
        client.request("PATCH", path, update)
    return 0


def unset_server(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    for key in args.property:
        client.delete(f"/v1/servers/{quote(args.server)}/metadata/{quote(key)}")
    return 0


def show_password(args: argparse.Namespace) -> int:
    password = ControlClient.from_args(args).get(f"/v1/servers/{quote(args.server)}/password")
    emit(password if args.format != "table" else {"password": password["password"]}, args.format)
    return 0


def clear_password(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/servers/{quote(args.server)}/password")
    return 0
