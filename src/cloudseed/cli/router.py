"""``cloudseed router …``: routers and the subnets they attach."""

from __future__ import annotations

import argparse

from cloudseed.cli.context import ControlClient, add_group, command, output, quote

COLUMNS = ("id", "name", "subnet_ids")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(subparsers, "router", "Routers (the metadata path for routed networks)")
    create = command(group, "create", "Create a router")
    create.add_argument("name", metavar="NAME")
    create.set_defaults(func=create_router)
    command(group, "list", "List routers").set_defaults(func=list_routers)
    for name, func, help_text in (
        ("show", show_router, "Show a router"),
        ("delete", delete_router, "Delete a router"),
    ):
        sub = command(group, name, help_text, output=name == "show")
        sub.add_argument("router", metavar="ROUTER", help="name or id")
        sub.set_defaults(func=func)
    for verb, func, help_text in (
        ("add", add_subnet, "Attach a subnet (or every subnet of a network) to a router"),
        ("remove", remove_subnet, "Detach a subnet (or a network's subnets) from a router"),
    ):
        verb_group = add_group(group, verb, help_text)
        sub = command(verb_group, "subnet", help_text)
        sub.add_argument("router", metavar="ROUTER", help="name or id")
        sub.add_argument("subnet", metavar="NETWORK_OR_SUBNET", help="name or id")
        sub.set_defaults(func=func)


def create_router(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).post("/v1/routers", {"name": args.name}))
    return 0


def list_routers(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).get("/v1/routers")["routers"], COLUMNS)
    return 0


def show_router(args: argparse.Namespace) -> int:
    output(args, ControlClient.from_args(args).get(f"/v1/routers/{quote(args.router)}"))
    return 0


def delete_router(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/routers/{quote(args.router)}")
    return 0


def add_subnet(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    router = client.post(f"/v1/routers/{quote(args.router)}/subnets", {"subnet": args.subnet})
    output(args, router)
    return 0


def remove_subnet(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    router = client.delete(f"/v1/routers/{quote(args.router)}/subnets/{quote(args.subnet)}")
    output(args, router)
    return 0
