"""Many namespaces: the shared front beside one proxy per namespace (built-in, haproxy).

    sudo .venv/bin/python -m bench.namespaces --n 1000 --implementation shared
    sudo .venv/bin/python -m bench.namespaces --n 50 --implementation builtin haproxy

For each implementation: N routers (each with its own network, all on the same
overlapping 10.1.0.0/24) and N isolated networks (10.2.0.0/24, DHCP off so no
dnsmasq runs: dnsmasq's cost is the same whatever serves metadata), in a
parent namespace of their own. It measures, with the real ``cloudseed
dataplane sync`` and the real proxies:

- ``sync_empty_s``: sync from nothing (namespaces, legs, rules, proxies);
- processes serving metadata (supervisors included) and their total RSS and PSS;
- ``sync_change_s``: sync after one isolated network is added;
- ``answer_s``: from the start of that sync until the new DHCP namespace
  answers ``GET http://169.254.169.254/`` with 200 (a client thread inside the
  namespace polls every 5 ms; the agent is a stand-in that answers 200), and
  ``answer_after_write_s``: the part after sync wrote what starts serving it
  (the front's listener file, or the new proxy's spec);
- ``sync_noop_s``: a sync that finds nothing to do; ``teardown_s``.

Everything is torn down afterwards (and swept by prefix on the way in). Needs
root, ip, nft. Prints one JSON object per implementation and a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from bench.procfs import process_tree, tree_rss_bytes
from cloudseed.dataplane import supervise
from cloudseed.dataplane.desired import Names
from cloudseed.errors import ConfigError
from cloudseed.http.message import Request, Response
from cloudseed.http.server import HttpServer
from cloudseed.model import Network, Router, Subnet
from cloudseed.proxy.listen import NETNS_DIR, enter_netns
from cloudseed.store import open_store

STATE_BASE = Path("/run/cloudseed-bench")
POLL_SECONDS = 0.005
ANSWER_TIMEOUT_SECONDS = 120.0


def _env(root: str, state_dir: Path, tmp: Path, implementation: str) -> dict[str, str]:
    return {**os.environ,
            "CLOUDSEED_STORE_URL": f"sqlite:///{tmp / 'store.db'}",
            "CLOUDSEED_DATAPLANE_ROOT_NETNS": root,
            "CLOUDSEED_DATAPLANE_STATE_DIR": str(state_dir),
            "CLOUDSEED_DATAPLANE_PROXY_IMPLEMENTATION": implementation,
            "CLOUDSEED_DATAPLANE_STOP_GRACE_SECONDS": "2",
            "CLOUDSEED_AGENT_SOCKET_PATH": str(tmp / "agent.sock")}


def _cli(env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "cloudseed.cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=7200, check=False)
    if result.returncode != 0:
        raise SystemExit(f"cloudseed {' '.join(args)} failed:\n{result.stdout[-2000:]}\n"
                         f"{result.stderr[-3000:]}")
    return time.monotonic() - started


def _subnet(network_id: str, cidr: str, gateway: str, dhcp: bool) -> Subnet:
    return Subnet(f"s-{network_id}", network_id, cidr, 4, gateway_ip=gateway, enable_dhcp=dhcp)


def _inventory(store_url: str, n: int) -> None:
    store = open_store(store_url)
    try:
        with store.write() as w:
            for i in range(n):
                net = f"rnet-{i}"
                w.put_network(Network(net, net))
                w.put_subnet(_subnet(net, "10.1.0.0/24", "10.1.0.1", False))
                w.put_router(Router(f"r-{i}", f"r-{i}", (f"s-{net}",)))
                iso = f"inet-{i}"
                w.put_network(Network(iso, iso))
                w.put_subnet(_subnet(iso, "10.2.0.0/24", "10.2.0.1", False))
    finally:
        store.close()


def _add_network(store_url: str, network_id: str) -> None:
    store = open_store(store_url)
    try:
        with store.write() as w:
            w.put_network(Network(network_id, network_id))
            w.put_subnet(_subnet(network_id, "10.3.0.0/24", "10.3.0.1", False))
    finally:
        store.close()


class StandInAgent:
    """Answers 200 on the agent's socket, in a thread: the proxies' upstream."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = HttpServer(self.handle)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.listen_unix(path, mode=0o666),
                                         self.loop).result(10)

    @staticmethod
    def handle(request: Request) -> Response:
        return Response(200, b"ok\n")

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(0.5), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def _poll_answer(namespace: str, started: list[float], answered: list[float]) -> None:
    """In a thread of its own: wait for the namespace, enter it, poll until a 200."""
    deadline = time.monotonic() + ANSWER_TIMEOUT_SECONDS
    while not os.path.exists(os.path.join(NETNS_DIR, namespace)):
        if time.monotonic() > deadline:
            return
        time.sleep(POLL_SECONDS)
    while True:  # `ip netns add` creates the file before it mounts the namespace on it
        try:
            enter_netns(namespace)  # this thread only; it ends with the measurement
            break
        except ConfigError:
            if time.monotonic() > deadline:
                return
            time.sleep(POLL_SECONDS)
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("169.254.169.254", 80), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    answered.extend((time.monotonic() - started[0], time.time()))
                    return
        except OSError:
            pass
        time.sleep(POLL_SECONDS)


def _pss_bytes(pids: set[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) * 1024
    return total


def run_one(n: int, implementation: str) -> dict[str, object]:
    root = f"bn{uuid.uuid4().hex[:6]}"
    state_dir = STATE_BASE / root
    tmp = Path(tempfile.mkdtemp(prefix="cloudseed-bench-ns-"))
    env = _env(root, state_dir, tmp, implementation)
    agent = StandInAgent(tmp / "agent.sock")
    row: dict[str, object] = {"implementation": implementation, "routers": n,
                              "isolated_networks": n}
    try:
        _inventory(env["CLOUDSEED_STORE_URL"], n)
        row["sync_empty_s"] = round(_cli(env, "dataplane", "sync"), 2)
        states = supervise.observe(str(state_dir))
        roots = [s.supervisor_pid for name, s in states.items()
                 if name.startswith("proxy-") and s.supervisor_pid]
        pids = process_tree(roots)
        row["namespaces"] = 2 * n
        row["processes"] = len(pids)
        row["rss_mib"] = round(tree_rss_bytes(roots) / 2**20, 1)
        row["pss_mib"] = round(_pss_bytes(pids) / 2**20, 1)
        row["sync_noop_s"] = round(_cli(env, "dataplane", "sync"), 2)
        _add_network(env["CLOUDSEED_STORE_URL"], "new-net")
        namespace = Names(root).dhcp_namespace("new-net")
        started: list[float] = []
        answered: list[float] = []
        started.append(time.monotonic())
        poller = threading.Thread(target=_poll_answer, args=(namespace, started, answered),
                                  daemon=True)
        poller.start()
        row["sync_change_s"] = round(_cli(env, "dataplane", "sync"), 2)
        poller.join(ANSWER_TIMEOUT_SECONDS)
        row["answer_s"] = round(answered[0], 3) if answered else None
        # From the moment sync wrote what serves the new namespace (the front's
        # listener file, or the new proxy's spec) to the first 200: the proxy's
        # own part of answer_s; the rest is the reconciler's work before it.
        planned = (state_dir / "front" / "listeners.json" if implementation == "shared"
                   else state_dir / "proc" / "proxy-network-new-net" / "spec.json")
        with contextlib.suppress(OSError):
            if answered:
                row["answer_after_write_s"] = round(answered[1] - planned.stat().st_mtime, 3)
    finally:
        try:
            row["teardown_s"] = round(_cli(env, "dataplane", "teardown"), 2)
        finally:
            agent.close()
            _sweep(root)
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(state_dir, ignore_errors=True)
    return row


def _sweep(prefix: str) -> None:
    for name in os.listdir(NETNS_DIR) if os.path.isdir(NETNS_DIR) else ():
        if name.startswith(prefix):
            subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


COLUMNS = ("implementation", "namespaces", "processes", "rss_mib", "pss_mib", "sync_empty_s",
           "sync_noop_s", "sync_change_s", "answer_s", "answer_after_write_s", "teardown_s")


def table(rows: list[dict[str, object]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.namespaces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100,
                        help="routers, and as many isolated networks (default 100)")
    parser.add_argument("--implementation", nargs="+", default=["shared", "builtin", "haproxy"],
                        choices=["shared", "builtin", "haproxy"])
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("bench.namespaces creates namespaces: run it as root")
    rows = []
    for implementation in args.implementation:
        row = run_one(args.n, implementation)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
