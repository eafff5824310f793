"""``cloudseed demo``: a whole sample cloud on this machine, then how to query it.

As root it builds a sandbox — a parent namespace, one routed and one isolated
network, two guests plugged as namespaces that take their addresses from
dnsmasq with a real DHCP client — starts the stack on embedded SQLite, fetches
each guest's meta_data.json from inside the guest to prove the path works, and
prints the commands to do the same. Without root it runs the loopback-only
stack (control API, metadata API, agent, one proxy on 127.0.0.1) and says
what it skipped. Ctrl-C stops everything; ``--down`` removes what a killed
demo left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudseed import demo
from cloudseed.cli.context import CliError, load_cli_settings
from cloudseed.cli.serve import prepare
from cloudseed.settings import Settings, default_data_dir
from cloudseed.supervisor import Child, Supervisor

READY_TIMEOUT_SECONDS = 60.0
# How often the demo re-runs the data plane's sync, which restarts a crashed
# proxy or dnsmasq and repairs deleted rules.
RESYNC_SECONDS = 5.0
# How long the demo's own check waits for a guest's first answer.
GUEST_FETCH_SECONDS = 20.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="build a sample cloud on this machine and show a guest querying it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--down", action="store_true", help="remove a demo left behind, then exit")
    parser.add_argument(
        "--loopback", action="store_true", help="loopback-only stack even as root (no namespaces)"
    )
    parser.add_argument(
        "--data-dir", help="where the demo keeps its state (default: <data dir>/demo)"
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="build, verify every guest gets its own metadata, tear down, exit 0 on success",
    )
    parser.set_defaults(func=run)


def demo_settings(args: argparse.Namespace) -> Settings:
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir() / "demo"
    socket_path = data_dir / "run" / "metadata_proxy"
    return load_cli_settings(
        args,
        {
            "store.url": f"sqlite:///{data_dir / 'cloudseed.db'}",
            "store.data_dir": str(data_dir),
            "agent.socket_path": str(socket_path),
            "proxy.agent_socket": str(socket_path),
            "dataplane.root_netns": demo.ROOT_NETNS,
            "dataplane.state_dir": str(data_dir / "dataplane"),
            "agent.metrics_port": -1,
        },
    )


def uses_namespaces(args: argparse.Namespace) -> str | None:
    """None when the namespace demo can run, else why not."""
    if args.loopback:
        return "--loopback was given"
    if os.geteuid() != 0:
        return "not root (namespaces, nftables and dnsmasq need root)"
    from cloudseed.dataplane.runner import missing_tools

    missing = list(missing_tools())
    if shutil.which("dhclient") is None:
        missing.append("dhclient")
    return f"missing tools: {', '.join(missing)}" if missing else None


def load_inventory(settings: Settings, document: dict[str, Any]) -> dict[str, str]:
    """Apply the sample document; return server name → id."""
    from cloudseed.control.bodies import parse_body
    from cloudseed.control.bulk import apply_document
    from cloudseed.control.document import Document
    from cloudseed.store import open_store_from_settings

    store = open_store_from_settings(settings.store)
    try:
        apply_document(store, parse_body(Document, document))
        return {s.name: s.id for s in store.list_servers()}
    finally:
        store.close()


def stack_children(
    args: argparse.Namespace, env: dict[str, str], loopback: str | None
) -> list[Child]:
    base = [sys.executable, "-m", "cloudseed", "--log-level", "warning"]
    children = [Child(tier, [*base, tier], env) for tier in ("control", "api", "agent")]
    if loopback:
        children.append(
            Child(
                "proxy",
                [
                    *base,
                    "proxy",
                    "--listen",
                    demo.LOOPBACK_PROXY,
                    "--network-id",
                    loopback,
                    "--agent-socket",
                    env["CLOUDSEED_AGENT_SOCKET_PATH"],
                ],
                env,
            )
        )
    return children


def wait_ready(settings: Settings, env: dict[str, str], supervisor: Supervisor) -> None:
    """Until the control API, the API's admin listener and the agent's socket answer."""
    checks = {
        "control API": f"http://{settings.control.host}:{settings.control.port}/healthz",
        "metadata API": f"http://{settings.api.admin_host}:{settings.api.admin_port}/healthz",
    }
    socket_path = Path(env["CLOUDSEED_AGENT_SOCKET_PATH"])
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    waiting = [*checks, "agent"]
    while waiting:
        supervisor.poll()
        waiting = [name for name, url in checks.items() if not _healthy(url)]
        if not socket_path.is_socket():
            waiting.append("agent")
        if time.monotonic() > deadline:
            raise CliError(f"the stack did not come up: {', '.join(waiting)} not answering")
        if waiting:
            time.sleep(0.2)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback only
            return bool(resp.status == 200)
    except OSError:
        return False


def run(args: argparse.Namespace) -> int:
    settings = demo_settings(args)
    if args.down:
        down(settings)
        return 0
    why_not = uses_namespaces(args)
    document = demo.loopback_inventory() if why_not else demo.namespace_inventory()
    env = prepare(settings)
    servers = load_inventory(settings, document)
    loopback_network = None
    if why_not:
        loopback_network = _network_id(settings, "demo-loopback")
    supervisor = Supervisor(stack_children(args, env, loopback_network))
    supervisor.start()
    try:
        wait_ready(settings, env, supervisor)
        if why_not:
            print(f"cloudseed demo: loopback-only stack; skipped namespaces: {why_not}")
            ok = loopback_walkthrough(servers)
        else:
            ok = namespace_walkthrough(settings, servers, supervisor, args.check)
        print_operator_help(settings, env)
        if args.check:
            return 0 if ok else 1
        print("\nThe stack is running; Ctrl-C stops it.", flush=True)
        if why_not:
            supervisor.run_forever()
        else:
            keep_synced(settings, supervisor)
        return 0
    finally:
        supervisor.stop()
        if not why_not:
            down(settings, keep_store=True)


def _network_id(settings: Settings, name: str) -> str:
    from cloudseed.store import open_store_from_settings

    store = open_store_from_settings(settings.store)
    try:
        return store.get_network(name).id
    finally:
        store.close()


def loopback_walkthrough(servers: dict[str, str]) -> bool:
    guest_ip = "127.0.90.11"
    url = f"http://{demo.LOOPBACK_PROXY}/openstack/latest/meta_data.json"
    body = _fetch_from(guest_ip, url)
    ok = body is not None and body.get("uuid") == servers["demo-vm-1"]
    _report("demo-vm-1", body)
    print("\nQuery it as the guest would (its address is its identity):")
    print(f"  curl --interface {guest_ip} {url}")
    print(f"  curl --interface {guest_ip} http://{demo.LOOPBACK_PROXY}/latest/meta-data/")
    return ok


def _fetch_from(source_ip: str, url: str) -> dict[str, Any] | None:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "", parts.port or 80, timeout=5, source_address=(source_ip, 0)
    )
    try:
        conn.request("GET", parts.path)
        response = conn.getresponse()
        data = response.read()
        return json.loads(data) if response.status == 200 else None
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def namespace_walkthrough(
    settings: Settings, servers: dict[str, str], supervisor: Supervisor, check: bool
) -> bool:
    from cloudseed.dataplane.guest import acquire_lease, fetch_in_netns
    from cloudseed.dataplane.host import DataplaneHost
    from cloudseed.store import open_store_from_settings

    store = open_store_from_settings(settings.store)
    try:
        host = DataplaneHost(settings, store)
        print(f"cloudseed demo: building namespaces under {demo.ROOT_NETNS} …", flush=True)
        host.sync()
        ok = True
        for name in demo.GUESTS:
            netns = demo.guest_netns(name)
            host.plug(servers[name], netns=netns)
            lease = acquire_lease(netns, settings.data_dir / "guests" / name)
            print(f"  {name}: namespace {netns}, DHCP gave {', '.join(lease.addresses)}")
        url = "http://169.254.169.254/openstack/latest/meta_data.json"
        for name in demo.GUESTS:
            document = _guest_fetch(demo.guest_netns(name), url, fetch_in_netns)
            ok = ok and document is not None and document.get("uuid") == servers[name]
            _report(name, document)
        print("\nQuery it as a guest would, from inside each guest's namespace:")
        # A root shell (minimal Debian) has no sudo; a user whom sudo ran here needs it.
        sudo = "sudo " if os.environ.get("SUDO_USER") else ""
        for name in demo.GUESTS:
            print(f"  {sudo}ip netns exec {demo.guest_netns(name)} curl -s {url}")
        print(
            f"  {sudo}ip netns exec {demo.guest_netns(demo.GUESTS[0])} "
            "curl -s http://169.254.169.254/latest/meta-data/"
        )
        return ok
    finally:
        store.close()


def _guest_fetch(
    netns: str, url: str, fetch: Callable[[str, str], tuple[int, str]]
) -> dict[str, Any] | None:
    """The guest's document, retried briefly: freshly started proxies need a moment."""
    deadline = time.monotonic() + GUEST_FETCH_SECONDS
    while True:
        with contextlib.suppress(Exception):
            status, body = fetch(netns, url)
            if status == 200:
                document: dict[str, Any] = json.loads(body)
                return document
        if time.monotonic() > deadline:
            return None
        time.sleep(0.5)


def _report(name: str, document: dict[str, Any] | None) -> None:
    if document is None:
        print(f"  ✗ {name}: no metadata (run `cloudseed doctor {name}`)")
        return
    keys = ", ".join(sorted(document.get("public_keys", {})))
    print(f"  ✓ {name}: uuid {document['uuid']}, hostname {document['hostname']}, keys {keys}")


def keep_synced(settings: Settings, supervisor: Supervisor) -> None:
    """Supervise the tiers and re-sync the data plane until Ctrl-C."""
    import signal

    from cloudseed.dataplane.host import DataplaneHost
    from cloudseed.store import open_store_from_settings

    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    store = open_store_from_settings(settings.store)
    try:
        host = DataplaneHost(settings, store)
        next_sync = time.monotonic() + RESYNC_SECONDS
        while not stopping:
            supervisor.poll()
            if time.monotonic() >= next_sync:
                with contextlib.suppress(Exception):
                    host.sync()
                next_sync = time.monotonic() + RESYNC_SECONDS
            time.sleep(0.2)
    finally:
        store.close()


def down(settings: Settings, keep_store: bool = False) -> None:
    """Unplug guests and tear the sandbox down; leave nothing behind."""
    if os.geteuid() == 0 and Path(settings.data_dir / "cloudseed.db").exists():
        from cloudseed.dataplane.guest import release_lease
        from cloudseed.dataplane.host import DataplaneHost
        from cloudseed.store import open_store_from_settings

        store = open_store_from_settings(settings.store)
        try:
            host = DataplaneHost(settings, store)
            for name in demo.GUESTS:
                release_lease(settings.data_dir / "guests" / name)
            host.teardown()
        finally:
            store.close()
        subprocess.run(["ip", "netns", "del", demo.ROOT_NETNS], capture_output=True, check=False)
    if not keep_store:
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    print(
        f"cloudseed demo: removed{' the sandbox' if keep_store else ' ' + str(settings.data_dir)}"
    )


def print_operator_help(settings: Settings, env: dict[str, str]) -> None:
    token_file = env.get("CLOUDSEED_CONTROL_TOKENS_FILE", "")
    print(
        "\nAs the operator (control API on "
        f"http://{settings.control.host}:{settings.control.port}):"
    )
    if token_file:
        print(f"  export CLOUDSEED_TOKEN=$(cat {token_file})")
    print("  .venv/bin/cloudseed server list")
    # Guests see a change at once: the API's cache follows the store.
    print("  .venv/bin/cloudseed server set --property role=changed demo-vm-1")
