"""``cloudseed network …`` and ``cloudseed subnet …``: L2 networks and their subnets."""

from __future__ import annotations

import argparse
from typing import Any

from cloudseed.cli.context import ControlClient, add_group, command, is_human, output, quote

NETWORK_COLUMNS = ("id", "name", "mtu", "subnets")
SUBNET_COLUMNS = ("id", "name", "network_id", "cidr", "gateway_ip", "enable_dhcp")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "network", "Networks (an L2 segment and its subnets)")

    create = command(group, "create", "Create a network with an IPv4 and/or IPv6 subnet")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--subnet-range", metavar="CIDR", help="IPv4 subnet, e.g. 10.0.0.0/24")
    create.add_argument(
        "--gateway",
        metavar="IP|none",
        default="auto",
        help="gateway of the IPv4 subnet (default: its first address; 'none' for no gateway)",
    )
    create.add_argument(
        "--dns",
        metavar="IP",
        action="append",
        default=[],
        help="DNS server for the IPv4 subnet (repeatable)",
    )
    create.add_argument("--no-dhcp", action="store_true", help="disable DHCP on the subnets")
    create.add_argument("--mtu", type=int, default=1500, help="MTU (default: 1500)")
    create.add_argument("--ipv6-range", metavar="CIDR", help="IPv6 subnet, e.g. fd00::/64")
    create.add_argument(
        "--ipv6-mode",
        choices=("slaac", "dhcpv6-stateful", "dhcpv6-stateless"),
        help="IPv6 address mode",
    )
    create.set_defaults(func=create_network)

    for name, func, help_text in (
        ("show", show_network, "Show a network"),
        ("delete", delete_network, "Delete a network and its subnets"),
    ):
        sub = command(group, name, help_text, output=name == "show")
        sub.add_argument("network", metavar="NETWORK", help="name or id")
        sub.set_defaults(func=func)
    command(group, "list", "List networks").set_defaults(func=list_networks)

    _register_subnet(subparsers)


def _register_subnet(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "subnet", "Subnets of networks")
    create = command(group, "create", "Add a subnet to a network")
    create.add_argument("name", metavar="NAME")
    create.add_argument("--network", required=True, help="network name or id")
    create.add_argument("--subnet-range", metavar="CIDR", required=True)
    create.add_argument("--gateway", metavar="IP|none", default="auto")
    create.add_argument("--dns", metavar="IP", action="append", default=[])
    create.add_argument("--no-dhcp", action="store_true")
    create.add_argument("--ipv6-mode", choices=("slaac", "dhcpv6-stateful", "dhcpv6-stateless"))
    create.set_defaults(func=create_subnet)
    listing = command(group, "list", "List subnets")
    listing.add_argument("--network", help="only this network's subnets")
    listing.set_defaults(func=list_subnets)
    for name, func, help_text in (
        ("show", show_subnet, "Show a subnet"),
        ("delete", delete_subnet, "Delete a subnet"),
    ):
        sub = command(group, name, help_text, output=name == "show")
        sub.add_argument("subnet", metavar="SUBNET", help="name or id")
        sub.set_defaults(func=func)


def _subnet_body(
    name: str, cidr: str, *, gateway: str, dns: list[str], dhcp: bool, mode: str | None
) -> dict[str, Any]:
    return {
        "name": name,
        "cidr": cidr,
        "gateway_ip": None if gateway.lower() == "none" else gateway,
        "dns_nameservers": dns,
        "enable_dhcp": dhcp,
        "ipv6_address_mode": mode,
    }


def create_network(args: argparse.Namespace) -> int:
    subnets = []
    if args.subnet_range:
        subnets.append(
            _subnet_body(
                f"{args.name}-v4",
                args.subnet_range,
                gateway=args.gateway,
                dns=args.dns,
                dhcp=not args.no_dhcp,
                mode=None,
            )
        )
    if args.ipv6_range:
        subnets.append(
            _subnet_body(
                f"{args.name}-v6",
                args.ipv6_range,
                gateway="auto",
                dns=[],
                dhcp=not args.no_dhcp,
                mode=args.ipv6_mode,
            )
        )
    body = {"name": args.name, "mtu": args.mtu, "subnets": subnets}
    output(args, network_row(ControlClient.from_args(args).post("/v1/networks", body), args.format))
    return 0


def network_row(network: dict[str, Any], fmt: str) -> dict[str, Any]:
    if not is_human(fmt):
        return network
    return {**network, "subnets": [f"{s['cidr']} ({s['id']})" for s in network["subnets"]]}


def list_networks(args: argparse.Namespace) -> int:
    networks = ControlClient.from_args(args).get("/v1/networks")["networks"]
    output(args, [network_row(n, args.format) for n in networks], NETWORK_COLUMNS)
    return 0


def show_network(args: argparse.Namespace) -> int:
    network = ControlClient.from_args(args).get(f"/v1/networks/{quote(args.network)}")
    output(args, network_row(network, args.format))
    return 0


def delete_network(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/networks/{quote(args.network)}")
    return 0


def create_subnet(args: argparse.Namespace) -> int:
    body = _subnet_body(
        args.name,
        args.subnet_range,
        gateway=args.gateway,
        dns=args.dns,
        dhcp=not args.no_dhcp,
        mode=args.ipv6_mode,
    )
    client = ControlClient.from_args(args)
    output(args, client.post(f"/v1/networks/{quote(args.network)}/subnets", body))
    return 0


def list_subnets(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    path = f"/v1/networks/{quote(args.network)}/subnets" if args.network else "/v1/subnets"
    output(args, client.get(path)["subnets"], SUBNET_COLUMNS)
    return 0


def show_subnet(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).get(f"/v1/subnets/{quote(args.subnet)}"))
    return 0


def delete_subnet(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/subnets/{quote(args.subnet)}")
    return 0
