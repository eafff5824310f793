"""``cloudseed server …``: servers, their metadata, and their passwords."""

from __future__ import annotations

import argparse
import base64
from typing import Any

from cloudseed.cli.audit import register_server_command as register_audit_command
from cloudseed.cli.context import (
    EXIT_USAGE,
    CliError,
    ControlClient,
    add_group,
    command,
    is_human,
    output,
    parse_key_values,
    quote,
    read_bytes,
)
from cloudseed.cli.nic import NO_NIC, NicAction
from cloudseed.cli.phonehome import phone_home_of, register_server_commands
from cloudseed.limits import DEFAULT_HOP_LIMIT, MAX_HOP_LIMIT, MIN_HOP_LIMIT

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
    _imds_extra_arguments(set_, defaults=False)
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
    register_server_commands(group)
    register_audit_command(group)


def _register_create(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    create = command(group, "create", "Create a server with one port per --nic")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--nic",
        action=NicAction,
        dest="nics",
        metavar="net-id=NET[,v4-fixed-ip=IP][,v6-fixed-ip=IP][,mac=MAC][,tag=TAG]",
        help="a NIC: a new port on network NET (name or id), or port-id=PORT[,tag=TAG] for "
        "an existing unowned port; repeatable, one port per --nic, in order; "
        "'--nic none' for no NIC",
    )
    create.add_argument(
        "--network",
        action=NicAction,
        dest="nics",
        metavar="NETWORK",
        help="shorthand for --nic net-id=NETWORK (repeatable: each is another NIC)",
    )
    create.add_argument(
        "--port",
        action=NicAction,
        dest="nics",
        metavar="PORT",
        help="shorthand for --nic port-id=PORT (repeatable)",
    )
    create.add_argument(
        "--fixed-ip", metavar="IP", help="address of the only new port (else use --nic)"
    )
    create.add_argument("--mac", metavar="MAC", help="MAC of the only new port (else use --nic)")
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
    create.add_argument(
        "--config-drive",
        metavar="True|False",
        nargs="?",
        const=True,
        default=False,
        type=_boolean,
        help="build a config drive (a bare --config-drive means True)",
    )
    create.add_argument("--availability-zone", metavar="AZ")
    create.add_argument("--flavor", metavar="NAME")
    # Nova's flavor disks: EC2 block-device-mapping/ lists ephemeral0 and swap from them.
    create.add_argument("--root-gb", metavar="GB", type=_disk_size, help="root disk size")
    create.add_argument("--ephemeral-gb", metavar="GB", type=_disk_size,
                        help="ephemeral disk size (ephemeral0 in block-device-mapping/)")
    create.add_argument("--swap-mb", metavar="MB", type=_disk_size,
                        help="swap disk size (swap in block-device-mapping/)")
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
    _imds_extra_arguments(create, defaults=True)
    create.set_defaults(func=create_server, nics=[])


def _imds_extra_arguments(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    parser.add_argument(
        "--imds-hop-limit",
        metavar="N",
        type=_hop_limit,
        default=DEFAULT_HOP_LIMIT if defaults else None,
        help=f"IP TTL of the token PUT's reply, {MIN_HOP_LIMIT}-{MAX_HOP_LIMIT}"
        f" (default: {DEFAULT_HOP_LIMIT}; 2 lets containers in the guest fetch tokens)",
    )
    parser.add_argument(
        "--imds-tags",
        choices=("enabled", "disabled"),
        default="disabled" if defaults else None,
        help="metadata items as meta-data/tags/instance/ (default: disabled)",
    )


def _hop_limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not MIN_HOP_LIMIT <= value <= MAX_HOP_LIMIT:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a hop limit is a whole number {MIN_HOP_LIMIT}-{MAX_HOP_LIMIT}")
    return value


def _disk_size(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a disk size is a whole number, 0 or more")
    return int(text)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in {"true", "yes", "1"}:
        return True
    if value in {"false", "no", "0"}:
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use True or False")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def create_server(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {
        "name": args.name,
        "networks": _networks(args),
        "metadata": parse_key_values(args.property, "--property"),
        "config_drive": args.config_drive,
        "imds": {"tokens": args.imds_tokens, "endpoint": args.imds_endpoint,
                 "hop_limit": args.imds_hop_limit, "tags": args.imds_tags == "enabled"},
    }
    optional = {
        "key_name": args.key_name,
        "availability_zone": args.availability_zone,
        "flavor_name": args.flavor,
        "image_id": args.image,
        "project_id": args.project,
        "hostname": args.hostname,
        "root_gb": args.root_gb,
        "ephemeral_gb": args.ephemeral_gb,
        "swap_mb": args.swap_mb,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.user_data:
        body["user_data"] = _b64(read_bytes(args.user_data, "--user-data"))
    files = []
    for spec in args.file or ():
        dest, sep, src = spec.partition("=")
        if not sep or not dest or not src:
            raise CliError(f"--file {spec!r}: expected DEST=SRC", EXIT_USAGE)
        files.append({"path": dest, "contents": _b64(read_bytes(src, "--file"))})
    body["files"] = files
    server = ControlClient.from_args(args).post("/v1/servers", body)
    output(args, server_record(server, args.format))
    return 0


def _networks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The request's ``networks``: one entry per --nic/--network/--port, in order."""
    nics: list[dict[str, Any]] = list(args.nics)
    if not nics:
        raise CliError("give at least one --nic, --network or --port (or --nic none)", EXIT_USAGE)
    if NO_NIC in nics:
        if len(nics) > 1:
            raise CliError("--nic none cannot be combined with other NICs", EXIT_USAGE)
        nics = []
    if args.fixed_ip or args.mac:
        new_ports = [nic for nic in nics if "network" in nic]
        if len(nics) != 1 or len(new_ports) != 1:
            raise CliError(
                "--fixed-ip and --mac apply to a single new port; with other NICs use "
                "--nic net-id=NET,v4-fixed-ip=IP,mac=MAC",
                EXIT_USAGE,
            )
        if args.fixed_ip:
            new_ports[0].setdefault("fixed_ips", []).append({"ip_address": args.fixed_ip})
        if args.mac:
            new_ports[0]["mac_address"] = args.mac
    return nics


def server_record(server: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The API object for json/yaml; for tables, an ``openstack server show`` layout."""
    if not is_human(fmt):
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
        "imds_hop_limit": server["imds"]["hop_limit"],
        "imds_tags": "enabled" if server["imds"]["tags"] else "disabled",
        "availability_zone": server["availability_zone"],
        "flavor": server["flavor_name"],
        "disks": f"root {server['root_gb']} GB, ephemeral {server['ephemeral_gb']} GB, "
        f"swap {server['swap_mb']} MB",
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
    if is_human(args.format):
        servers = [
            {
                **s,
                "networks": ", ".join(f["ip_address"] for p in s["ports"] for f in p["fixed_ips"]),
            }
            for s in servers
        ]
    output(args, servers, COLUMNS)
    return 0


def show_server(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    server = client.get(f"/v1/servers/{quote(args.server)}")
    report = phone_home_of(client, server["id"])
    record = server_record(server, args.format)
    if is_human(args.format):
        record |= {"booted_at": report["booted_at"], "host_keys": report["host_keys"]}
    else:
        record = {**record, "phone_home": report}
    output(args, record)
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
    if args.imds_tokens or args.imds_endpoint or args.imds_hop_limit or args.imds_tags:
        current = client.get(path)["imds"]
        update["imds"] = {
            "tokens": args.imds_tokens or current["tokens"],
            "endpoint": args.imds_endpoint or current["endpoint"],
            "hop_limit": args.imds_hop_limit or current["hop_limit"],
            "tags": current["tags"] if args.imds_tags is None else args.imds_tags == "enabled",
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
    output(args, {"password": password["password"]} if is_human(args.format) else password)
    return 0


def clear_password(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/servers/{quote(args.server)}/password")
    return 0
