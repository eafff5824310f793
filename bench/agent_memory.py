"""The agent's address map at fleet scale: RSS, bytes per port, build time, change latency.

    python -m bench.agent_memory --ports 100000 [--ports 1000000] [--store-url URL]

For each size: a store holding N servers with one port each (one IPv4 fixed
IP and a MAC, on one network behind one router; the rows are written with
bulk INSERTs into the migrated schema, which takes seconds instead of the
control API's minutes), then a fresh ``cloudseed agent`` process -- the real
``Agent``, on a Unix socket -- that builds its map and reports:

- ``rss_before_mib``: the process with every module imported, before building;
- ``rss_mib`` / ``peak_rss_mib``: VmRSS after the build, and VmHWM (the high
  water mark, which includes the build's transient rows);
- ``bytes_per_port``: (rss - rss_before) / N;
- ``build_s``: start to map built; ``change_visible_ms``: this process commits
  a port move (the writer, one transaction), the agent's map answers the new
  server (polled every millisecond on the agent's loop).

``measure(ports, store_url=None)`` returns the same dict, for ``bench/run --scale``.
Without ``--store-url`` the store is a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.procfs import own_status_mib

NETWORK_ID = "b1a0c0de-0000-4000-8000-000000000001"
SUBNET_ID = "b1a0c0de-0000-4000-8000-000000000002"
ROUTER_ID = "b1a0c0de-0000-4000-8000-000000000003"
CIDR = "10.0.0.0/8"
FIRST_HOST = int(ipaddress.ip_address("10.0.1.0"))
_NS = uuid.UUID("b1a0c0de-0000-4000-8000-0000000000ff")
ROWS_PER_INSERT = 10_000
# The budget the issue sets for the agent at a million servers.
BUDGET_MIB = 256


def server_id(i: int) -> str:
    return str(uuid.uuid5(_NS, f"server-{i}"))


def port_id(i: int) -> str:
    return str(uuid.uuid5(_NS, f"port-{i}"))


def address(i: int) -> str:
    return str(ipaddress.ip_address(FIRST_HOST + i))


def _mac(i: int) -> str:
    v = i + 1
    return "fa:16:" + ":".join(f"{v >> s & 0xFF:02x}" for s in (24, 16, 8, 0))


def fill(store_url: str, ports: int) -> None:
    """Migrate and write the fleet (bulk INSERTs into the real schema)."""
    from sqlalchemy import insert

    from cloudseed.model import Network, Router, Subnet
    from cloudseed.store import open_store
    from cloudseed.store.schema import port_fixed_ips, servers
    from cloudseed.store.schema import ports as port_table

    with open_store(store_url) as store:
        with store.write() as w:
            w.put_network(Network(NETWORK_ID, "bench-agent-net"))
            w.put_subnet(Subnet(SUBNET_ID, NETWORK_ID, CIDR, 4, gateway_ip="10.0.0.1"))
            w.put_router(Router(ROUTER_ID, "bench-agent-router", (SUBNET_ID,)))
        with store.engine.begin() as conn:
            for start in range(0, ports, ROWS_PER_INSERT):
                chunk = range(start, min(start + ROWS_PER_INSERT, ports))
                conn.execute(insert(servers), [_server_row(i) for i in chunk])
                conn.execute(insert(port_table), [
                    {"id": port_id(i), "network_id": NETWORK_ID, "name": "",
                     "mac_address": _mac(i), "server_id": server_id(i), "seq": i + 1}
                    for i in chunk])
                conn.execute(insert(port_fixed_ips), [
                    {"port_id": port_id(i), "position": 0, "network_id": NETWORK_ID,
                     "subnet_id": SUBNET_ID, "ip_address": address(i)} for i in chunk])


def _server_row(i: int) -> dict[str, Any]:
    return {"id": server_id(i), "name": f"vm-{i:07d}", "hostname": f"vm-{i:07d}",
            "project_id": "bench-project", "user_id": "", "ec2_id": i + 1,
            "availability_zone": "nova", "flavor_name": "m1.small", "image_id": "",
            "launch_index": 0, "reservation_id": "", "metadata": "{}", "files": "[]",
            "config_drive": False, "imds_tokens": "optional", "imds_endpoint": "enabled",
            "created_at": "2026-01-01T00:00:00Z"}


def _stored_ports(store_url: str) -> int:
    from sqlalchemy import func, select

    from cloudseed.store import open_store
    from cloudseed.store.schema import ports as port_table

    with open_store(store_url) as store, store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(port_table)).scalar_one())


def _child(store_url: str, socket_dir: str) -> None:
    """In the measured process: start the real agent, report, then time one change."""
    import gc

    from cloudseed.agent.resolve import Scope, ScopeKind
    from cloudseed.agent.server import Agent
    from cloudseed.settings import AgentSettings
    from cloudseed.store import open_store

    store = open_store(store_url, upgrade=False)
    settings = replace(AgentSettings(), socket_path=f"{socket_dir}/agent.sock",
                       api_url="http://127.0.0.1:9", metrics_port=-1)

    async def main() -> None:
        gc.collect()
        before = own_status_mib("VmRSS")
        agent = Agent(store, settings, b"bench")
        started = time.perf_counter()
        await agent.start()
        await agent.wait_loaded(timeout_seconds=600)
        built = time.perf_counter() - started
        gc.collect()
        assert agent.map is not None
        report = {"ports": len(agent.map), "build_s": round(built, 2),
                  "rss_before_mib": round(before, 1), "rss_mib": round(own_status_mib("VmRSS"), 1),
                  "peak_rss_mib": round(own_status_mib("VmHWM"), 1),
                  "packed_bytes": agent.map.nbytes()}
        print(json.dumps(report), flush=True)
        # The parent now moves port 0 to another server and says which.
        line = await asyncio.to_thread(sys.stdin.readline)
        wanted = line.strip()
        scope = Scope(ScopeKind.ROUTER, ROUTER_ID)
        guest = ipaddress.ip_address(address(0))
        while True:
            found = agent.map.resolve(scope, guest)
            if getattr(found, "server_id", None) == wanted:
                break
            await asyncio.sleep(0.001)
        print(json.dumps({"seen_at": time.time()}), flush=True)
        await agent.stop()

    asyncio.run(main())
    store.close()


def measure(ports: int, store_url: str | None = None) -> dict[str, Any]:
    """Fill a store with ``ports`` servers (one port each) and measure a fresh agent on it."""
    from cloudseed.model import Server
    from cloudseed.store import open_store

    with tempfile.TemporaryDirectory(prefix="cloudseed-agent-memory-") as tmp:
        url = store_url or f"sqlite:///{tmp}/cloudseed.db"
        started = time.perf_counter()
        if _stored_ports(url) != ports:  # a store given by URL may hold the fleet already
            fill(url, ports)
        fill_s = time.perf_counter() - started
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.agent_memory", "--child", url, tmp],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        assert child.stdin is not None
        assert child.stdout is not None
        report: dict[str, Any] = json.loads(child.stdout.readline())
        moved_to = str(uuid.uuid5(_NS, f"moved-{time.time()}"))
        with open_store(url, upgrade=False) as store:
            port = store.get_port(port_id(0))
            with store.write() as w:
                w.put_server(Server(moved_to, f"moved-{moved_to}", "moved", "bench-project"))
            child.stdin.write(moved_to + "\n")
            child.stdin.flush()
            time.sleep(0.2)  # the child is polling before the change commits
            with store.write() as w:
                w.put_port(replace(port, server_id=moved_to), move=True)
            committed = time.time()
        seen = json.loads(child.stdout.readline())["seen_at"]
        child.wait(timeout=60)
        grown = report["rss_mib"] - report["rss_before_mib"]
        report.update({
            "store": "postgresql" if url.startswith("postgres") else "sqlite",
            "fill_s": round(fill_s, 1),
            "bytes_per_port": round(grown * 2**20 / ports),
            "change_visible_ms": round((seen - committed) * 1000, 1),
            "within_budget": report["peak_rss_mib"] <= BUDGET_MIB,
        })
        return report


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ports", type=int, action="append",
                        help="fleet size (repeatable; default 100000 and 1000000)")
    parser.add_argument("--store-url", default=os.environ.get("CLOUDSEED_BENCH_STORE_URL"),
                        help="an empty store to fill (default: SQLite in a temporary directory)")
    args = parser.parse_args()
    for n in args.ports or [100_000, 1_000_000]:
        print(json.dumps(measure(n, args.store_url)), flush=True)


if __name__ == "__main__":
    main()
