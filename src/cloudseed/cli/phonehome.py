"""``cloudseed known-hosts`` and ``server wait|phone-home|attributes``: what guests reported.

``server wait --booted`` long-polls the control API
(``GET /v1/servers/{id}/phone_home?wait=S``), which answers as soon as the
change feed brings the report: no polling, and it returns within a moment of
the guest's POST. A long wait is a few requests of at most ``LONG_POLL_SECONDS``.
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

# One long-poll request at most (the control API's MAX_CONTROL_WAIT_SECONDS
# bounds it too); a refused waiter (429) tries again after this.
LONG_POLL_SECONDS = 60.0
BUSY_RETRY_SECONDS = 1.0
TOO_MANY_REQUESTS = 429
ATTRIBUTE_COLUMNS = ("namespace", "key", "value", "updated_at")
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

    attributes = add_group(group, "attributes",
                           "Guest attributes: key/value pairs the guest wrote (docs/GUESTS.md)")
    show = command(attributes, "show", "Show the guest's attributes, or one NAMESPACE/KEY")
    show.add_argument("server", metavar="SERVER")
    show.add_argument("key", metavar="KEY", nargs="?", help="NAMESPACE/KEY (default: all)")
    show.set_defaults(func=show_attributes)
    clear = command(attributes, "clear", "Delete one guest attribute, or all of them",
                    output=False)
    clear.add_argument("server", metavar="SERVER")
    clear.add_argument("key", metavar="KEY", nargs="?", help="NAMESPACE/KEY (default: all)")
    clear.set_defaults(func=clear_attributes)


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
    client = ControlClient.from_args(args, timeout=LONG_POLL_SECONDS + 30)
    deadline = time.monotonic() + args.timeout
    path = f"/v1/servers/{quote(args.server)}/phone_home"
    while True:
        left = max(0.0, deadline - time.monotonic())
        try:
            report = client.get(f"{path}?wait={min(left, LONG_POLL_SECONDS):.3f}")
        except CliError as exc:
            if exc.status != TOO_MANY_REQUESTS:
                raise
            report = {"booted": False}  # too many waiters now: wait a moment, ask again
            time.sleep(min(BUSY_RETRY_SECONDS, left))
        if report["booted"]:
            return 0
        if time.monotonic() >= deadline:
            raise CliError(
                f"server {args.server} did not phone home within {args.timeout:g} s; is "
                "phone_home in its cloud-config (docs/DECISIONS.md, Phone-home)?",
                EXIT_TIMEOUT,
            )


def show_attributes(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    path = f"/v1/servers/{quote(args.server)}/guest_attributes"
    if args.key is None:
        output(args, client.get(path)["guest_attributes"], ATTRIBUTE_COLUMNS)
    else:
        output(args, client.get(f"{path}/{_key_path(args.key)}"))
    return 0


def clear_attributes(args: argparse.Namespace) -> int:
    path = f"/v1/servers/{quote(args.server)}/guest_attributes"
    if args.key is not None:
        path += f"/{_key_path(args.key)}"
    ControlClient.from_args(args).delete(path)
    return 0


def _key_path(key: str) -> str:
    namespace, slash, name = key.partition("/")
    if not slash or not namespace or not name:
        raise CliError(f"KEY {key!r} is not NAMESPACE/KEY (e.g. hostkeys/ssh-ed25519)")
    return f"{quote(namespace)}/{quote(name)}"


def show_phone_home(args: argparse.Namespace) -> int:
    output(args, phone_home_of(ControlClient.from_args(args), args.server))
    return 0


def clear_phone_home(args: argparse.Namespace) -> int:
    ControlClient.from_args(args).delete(f"/v1/servers/{quote(args.server)}/phone_home")
    return 0
