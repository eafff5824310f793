"""``cloudseed port …``: ports (a MAC and fixed IPs on a network)."""

from __future__ import annotations

import argparse
from typing import Any

from cloudseed.cli.context import (
    EXIT_USAGE,
    CliError,
    ControlClient,
    add_group,
    command,
    is_human,
    output,
    quote,
)

COLUMNS = ("id", "name", "mac_address", "fixed_ips", "server_id")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "port", "Ports (what a server plugs into a network)")
    create = command(group, "create", "Create a port")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--network", required=True, help="network name or id")
    create.add_argument(
        "--fixed-ip",
        metavar="subnet=SUBNET,ip-address=IP",
        action="append",
        help="a fixed IP (repeatable); either key may be left out",
    )
    create.add_argument("--mac-address", metavar="MAC")
    create.set_defaults(func=create_port)
    listing = command(group, "list", "List ports")
    listing.add_argument("--network", help="only ports on this network")
    listing.add_argument("--server", help="only ports of this server")
    listing.set_defaults(func=list_ports)
    for name, func, help_text in (
        ("show", show_port, "Show a port"),
        ("delete", delete_port, "Delete a port that no server owns"),
    ):
        sub = command(group, name, help_text, output=name == "show")
        sub.add_argument("port", metavar="PORT", help="name or id")
        sub.set_defaults(func=func)


def parse_fixed_ip(text: str) -> dict[str, str]:
    item: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        field = {"subnet": "subnet", "ip-address": "ip_address"}.get(key.strip())
        if not sep or field is None:
            raise CliError(
                f"--fixed-ip {text!r}: expected subnet=SUBNET and/or ip-address=IP", EXIT_USAGE
            )
        item[field] = value.strip()
    return item


def port_row(port: dict[str, Any], fmt: str) -> dict[str, Any]:
    if not is_human(fmt):
        return port
    ips = [
        f"ip_address='{f['ip_address']}', subnet_id='{f['subnet_id']}'" for f in port["fixed_ips"]
    ]
    return {**port, "fixed_ips": ips}


def create_port(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "network": args.network}
    if args.mac_address:
        body["mac_address"] = args.mac_address
    if args.fixed_ip:
        body["fixed_ips"] = [parse_fixed_ip(text) for text in args.fixed_ip]
    output(args, port_row(ControlClient.from_args(args).post("/v1/ports", body), args.format))
    return 0


def list_ports(args: argparse.Namespace) -> int:
    query = "&".join(
        f"{key}={quote(value)}"
        for key, value in (("network", args.network), ("server", args.server))
        if value
    )
    ports = ControlClient.from_args(args).get("/v1/ports" + (f"?{query}" if query else ""))
    output(args, [port_row(p, args.format) for p in ports["ports"]], COLUMNS)
    return 0


def show_port(args: argparse.Namespace) -> int:
    port = ControlClient.from_args(args).get(f"/v1/ports/{quote(args.port)}")
    output(args, port_row(port, args.format))
    return 0


def delete_port(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/ports/{quote(args.port)}")
    return 0
