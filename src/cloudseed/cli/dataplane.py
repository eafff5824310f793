"""``cloudseed dataplane sync|status|teardown|plug|unplug`` (root).

These read the store directly (like the agent), not the control API: the
data plane is a reader of the inventory that makes the host match it.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from cloudseed.cli.context import (
    EXIT_FAILURE,
    CliError,
    add_format_option,
    add_group,
    emit,
    load_cli_settings,
)
from cloudseed.settings import ProxyImplementation, Settings
from cloudseed.store.protocol import EntityKind, Store

if TYPE_CHECKING:
    from cloudseed.dataplane.host import DataplaneHost

# Between store changes, `sync --watch` still re-checks this often, so a
# deleted rule or a killed supervisor is repaired without anyone asking.
WATCH_REPAIR_SECONDS = 10.0
# Change kinds that never alter what the data plane builds.
_NOT_THE_PLANES = frozenset({EntityKind.GUEST_ATTRIBUTES})


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = add_group(
        subparsers,
        "dataplane",
        "namespaces, bridges, rules, dnsmasq and proxies for the metadata path",
    )
    for name, func, text in (
        ("sync", _sync, "make this host match the inventory (twice in a row changes nothing)"),
        ("status", _status, "show what sync would change; exit 1 when out of sync"),
        ("teardown", _teardown, "remove every namespace, link, rule, file and process"),
    ):
        parser = group.add_parser(name, help=text, description=text)
        add_dataplane_options(parser)
        add_format_option(parser)
        parser.set_defaults(func=func)
        if name == "sync":
            parser.add_argument(
                "--watch", action="store_true",
                help="keep running: sync again on every store change, and every "
                f"{WATCH_REPAIR_SECONDS:.0f} s to repair damage")
    plug = group.add_parser(
        "plug",
        help="attach a guest to its network's bridge",
        description="attach a guest (a fresh namespace with a veth, or an "
        "existing tap) to its network's bridge with its port's MAC",
    )
    plug.add_argument("server", metavar="SERVER")
    where = plug.add_mutually_exclusive_group(required=True)
    where.add_argument("--netns", metavar="NAME", help="create namespace NAME with eth0 in it")
    where.add_argument("--tap", metavar="DEV",
                       help="attach tap DEV (a VM's NIC; see docs/GUESTS.md for QEMU and "
                       "libvirt)")
    plug.add_argument("--create", action="store_true",
                      help="with --tap: create the tap (in the bridges' namespace); "
                      "unplug deletes it again")
    plug.add_argument("--tap-user", metavar="USER", default="",
                      help="with --create: the user allowed to open the tap (an "
                      "unprivileged QEMU)")
    plug.add_argument("--tap-netns", metavar="NAME",
                      help="with --tap: the namespace the existing tap is in now (default: "
                      "the host's); it is moved to the bridges' namespace")
    plug.add_argument("--port", metavar="PORT_ID", help="the port to plug (default: the first)")
    add_dataplane_options(plug)
    add_format_option(plug)
    plug.set_defaults(func=_plug)
    unplug = group.add_parser("unplug", help="detach a plugged guest (deletes its namespace)")
    unplug.add_argument("server", metavar="SERVER")
    add_dataplane_options(unplug)
    add_format_option(unplug)
    unplug.set_defaults(func=_unplug)


def add_dataplane_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root-netns",
        metavar="NAME",
        help="parent namespace for bridges and legs (default: the host's own)",
    )
    parser.add_argument("--state-dir", metavar="DIR", help="data plane state directory")
    parser.add_argument("--store-url", metavar="URL", help="store URL (default: settings)")
    parser.add_argument(
        "--proxy",
        choices=[m.value for m in ProxyImplementation],
        dest="proxy_implementation",
        help="metadata proxy implementation",
    )
    parser.add_argument(
        "--force-metadata",
        action="store_true",
        default=None,
        help="serve metadata from the DHCP namespace on every network",
    )


def dataplane_settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {
        "dataplane.root_netns": getattr(args, "root_netns", None),
        "dataplane.state_dir": getattr(args, "state_dir", None),
        "dataplane.proxy_implementation": getattr(args, "proxy_implementation", None),
        "dataplane.force_metadata": getattr(args, "force_metadata", None),
    }
    return load_cli_settings(args, {k: v for k, v in overrides.items() if v is not None})


@contextmanager
def open_host(args: argparse.Namespace) -> Iterator[DataplaneHost]:
    if os.geteuid() != 0:
        raise CliError("the data plane changes namespaces and firewall rules: run it as root")
    from cloudseed.dataplane.host import DataplaneHost
    from cloudseed.dataplane.runner import missing_tools

    missing = missing_tools()
    if missing:
        raise CliError(
            f"missing tools: {', '.join(missing)} (apt-get install iproute2 nftables dnsmasq-base)"
        )
    settings = dataplane_settings(args)
    from cloudseed.store import open_store_from_settings

    store = open_store_from_settings(settings.store)
    try:
        yield DataplaneHost(settings, store)
    finally:
        store.close()


def _sync(args: argparse.Namespace) -> int:
    if getattr(args, "watch", False):
        return _watch(args)
    with open_host(args) as host:
        desired = host.desired()  # planned once: the summary describes what was synced
        actions = host.sync(desired)
    summary = (
        f"{len(desired.bridges)} bridges, {len(desired.namespaces)} namespaces, "
        f"{len(desired.processes)} processes"
    )
    if args.format != "table":
        emit(
            {
                "changed": bool(actions),
                "summary": summary,
                "actions": [{"subject": a.subject, "action": a.description} for a in actions],
            },
            args.format,
        )
    elif not actions:
        print(f"nothing to do: already in sync ({summary})")
    else:
        for action in actions:
            print(f"{action.subject}: {action.description}")
        print(f"{len(actions)} changes applied; in sync ({summary})")
    return 0


def _watch(args: argparse.Namespace) -> int:
    with open_host(args) as host:
        store = cast(Store, host.reader)  # open_host reads from a whole Store
        try:
            while True:
                revision = store.revision()
                for action in host.sync():
                    print(f"r{revision} {action.subject}: {action.description}", flush=True)
                wait_for_plane_change(store, revision, WATCH_REPAIR_SECONDS)
        except KeyboardInterrupt:
            return 0


def wait_for_plane_change(store: Store, revision: int, timeout_seconds: float) -> None:
    """Until a change after ``revision`` the data plane may care about, or the timeout.

    Guests' own writes (guest attributes, up to a few per minute per server)
    change nothing on the host, so they do not cost a sync each.
    """
    deadline = time.monotonic() + timeout_seconds
    while (left := deadline - time.monotonic()) > 0:
        latest = store.wait_for_change(revision, left)
        if latest <= revision:
            return
        if any(c.kind not in _NOT_THE_PLANES for c in store.changes_since(revision)):
            return
        revision = latest


def _status(args: argparse.Namespace) -> int:
    with open_host(args) as host:
        desired, actions = host.pending()
    pending: dict[str, list[str]] = {}
    for action in actions:
        pending.setdefault(action.subject, []).append(action.description)
    rows = []
    subjects = [f"bridge {b.name}" for b in desired.bridges]
    subjects += [f"namespace {n.name}" for n in desired.namespaces]
    subjects += [f"leg {leg.namespace}/{leg.inner}" for leg in desired.legs]
    subjects += [f"firewall {t.namespace}" for t in desired.tables]
    subjects += [f"file {f.path}" for f in desired.files]
    subjects += [f"process {p.name}" for p in desired.processes]
    for subject in subjects:
        todo = pending.pop(subject, [])
        rows.append({"object": subject, "ok": not todo, "pending": "; ".join(todo)})
    for subject, todo in pending.items():  # stale things not in the plan
        rows.append({"object": subject, "ok": False, "pending": "; ".join(todo)})
    if args.format == "table":
        for row in rows:
            mark = "✓" if row["ok"] else "✗"
            print(f"{mark} {row['object']}" + (f"  ← {row['pending']}" if row["pending"] else ""))
        print(
            "in sync"
            if not actions
            else f"{len(actions)} changes pending; run `cloudseed dataplane sync`"
        )
    else:
        emit({"in_sync": not actions, "objects": rows}, args.format)
    return 0 if not actions else EXIT_FAILURE


def _teardown(args: argparse.Namespace) -> int:
    with open_host(args) as host:
        removed = host.teardown()
    if args.format == "table":
        for item in removed:
            print(f"removed {item}")
        print(f"teardown complete ({len(removed)} objects removed)")
    else:
        emit({"removed": removed}, args.format)
    return 0


def _plug(args: argparse.Namespace) -> int:
    if (args.create or args.tap_user or args.tap_netns) and not args.tap:
        raise CliError("--create, --tap-user and --tap-netns go with --tap DEV")
    with open_host(args) as host:
        record = host.plug(args.server, netns=args.netns, tap=args.tap, port_id=args.port,
                           create=args.create, tap_netns=args.tap_netns,
                           tap_user=args.tap_user)
    data = {
        "server_id": record.server_id,
        "port_id": record.port_id,
        "mode": record.mode,
        "netns": record.netns,
        "device": record.device,
        "bridge": record.bridge,
        "mac": record.mac,
    }
    emit(data, args.format)
    return 0


def _unplug(args: argparse.Namespace) -> int:
    with open_host(args) as host:
        record = host.unplug(args.server)
    if args.format == "table":
        print(f"unplugged {record.netns or record.device} ({record.server_id})")
    else:
        emit(
            {"server_id": record.server_id, "unplugged": record.netns or record.device}, args.format
        )
    return 0
