"""``cloudseed doctor SERVER``: every hop of one server's metadata path, ✓ or ✗ with the fix."""

from __future__ import annotations

import argparse

from cloudseed.cli.context import EXIT_FAILURE
from cloudseed.cli.dataplane import add_dataplane_options, open_host


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = ("walk a server's metadata path (store, bridge, namespace, legs, the MAC the "
            "bridge learned, dnsmasq and the guest's lease, route, REDIRECT, proxy, agent, "
            "API, signature with the secret `serve` generated, a real request) and name the "
            "broken hop; hops it cannot see (a guest it did not plug) are listed as not seen, "
            "never as healthy. Exit 1 when a hop is broken")
    parser = subparsers.add_parser("doctor", help=text, description=text)
    parser.add_argument("server", metavar="SERVER", help="server id or name")
    parser.add_argument("-f", "--format", choices=("table", "json"), default="table",
                        help="output format (default: table)")
    add_dataplane_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cloudseed.doctor import diagnose, first_failure, render, to_json

    with open_host(args) as host:
        hops = diagnose(host, args.server)
    print(to_json(hops) if args.format == "json" else render(hops), end="")
    return EXIT_FAILURE if first_failure(hops) else 0
