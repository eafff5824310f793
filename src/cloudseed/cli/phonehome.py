"""``cloudseed known-hosts`` and ``server wait|phone-home``: what guests reported.

``server wait --booted`` polls the control API's phone-home view every
``POLL_SECONDS`` (the change-feed long-poll of issue #15 is not built yet;
docs/DECISIONS.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from cloudseed.cli.context import (
    CliError,
    ControlClient,
    add_group,
    command,
    output,
    quote,
)

POLL_SECONDS = 0.25
EXIT_TIMEOUT = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    known = command(
        subparsers, "known-hosts",
        "Print OpenSSH known_hosts lines for servers whose guests reported host keys",
        output=False,
    )
    known.add_argument("servers", metavar="SERVER", nargs="*",
                       help="name or id (default: every server that reported)")
    known.set_defaults(func=known_hosts)


def register_server_commands(group: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wait = command(group, "wait", "Wait until the guest has phoned home (cloud-init phone_home)",
                   output=False)
    wait.add_argument("server", metavar="SERVER", help="name or id")
    wait.add_argument("--booted", action="store_true", required=True,
                      help="wait for the guest's phone-home report (the one condition so far)")
    wait.add_argument("--timeout", type=float, default=600.0, metavar="S",
                      help=f"give up after S seconds, exit status {EXIT_TIMEOUT} (default: 600)")
    wait.set_defaults(func=wait_booted)

    phone = add_group(group, "phone-home", "What the guest's cloud-init phone_home reported")
    show = command(phone, "show", "Show the reported host keys and boot time")
    show.add_argument("server", metavar="SERVER")
    show.set_defaults(func=show_phone_home)
    clear = command(phone, "clear", "Forget the report so the next boot may report again",
                    output=False)
    clear.add_argument("server", metavar="SERVER")
    clear.set_defaults(func=clear_phone_home)


def phone_home_of(client: ControlClient, server: str) -> dict[str, Any]:
    report: dict[str, Any] = client.get(f"/v1/servers/{quote(server)}/phone_home")
    return report


def known_hosts(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    lines: list[str] = []
    for server in args.servers or [None]:
        suffix = "" if server is None else f"?server={quote(server)}"
        lines += client.get(f"/v1/known_hosts{suffix}")["known_hosts"]
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


def wait_booted(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    deadline = time.monotonic() + args.timeout
    while not phone_home_of(client, args.server)["booted"]:
        if time.monotonic() >= deadline:
            raise CliError(
                f"server {args.server} did not phone home within {args.timeout:g} s; is "
                "phone_home in its cloud-config (docs/DECISIONS.md, Phone-home)?",
                EXIT_TIMEOUT,
            )
        time.sleep(POLL_SECONDS)
    return 0


def show_phone_home(args: argparse.Namespace) -> int:
    output(args, phone_home_of(ControlClient.from_args(args), args.server))
    return 0


def clear_phone_home(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/servers/{quote(args.server)}/phone_home")
    return 0
