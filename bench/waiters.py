"""Idle long-polls on one API worker: what each costs, and how fast a change reaches all.

    bench/waiters.py [--waiters 10000]

Starts `cloudseed api` (one worker, proxy mode, a one-server SQLite store) on
loopback, opens N connections that each send
``GET /openstack/latest/meta_data.json?wait_for_change=true`` as the agent
would (signed identity headers), waits until the worker reports N waiting
requests (``cloudseed_api_waiting_requests``), reads the worker's RSS before
and after, then changes the server in the store and times the responses: from
the write's commit to the last of the N answers (issue #15: ≤ 1 s). Prints one
JSON object. Loopback only; everything it starts stops with it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.support.ports import free_port

from bench.procfs import rss_by_process
from cloudseed.auth.signing import sign_instance_id
from cloudseed.model import FixedIp, Network, Port, Server, Subnet
from cloudseed.store import open_store, upgrade

SECRET = "waiters-bench-secret"
SERVER_ID = "0a0a0a0a-0000-4000-8000-00000000000a"
PATH = "/openstack/latest/meta_data.json?wait_for_change=true&timeout_sec=300"
CONNECT_BATCH = 500


def _store(url: str) -> None:
    upgrade(url)
    with open_store(url) as store, store.write() as writer:
        writer.put_network(Network("net", "net"))
        writer.put_subnet(Subnet("sub", "net", "10.9.0.0/24", 4))
        writer.put_server(Server(SERVER_ID, "vm", "vm", "proj"))
        writer.put_port(Port("port", "net", "fa:16:3e:00:00:01", (FixedIp("sub", "10.9.0.5"),),
                             server_id=SERVER_ID))


def _change(url: str) -> float:
    with open_store(url) as store:
        server = store.get_server(SERVER_ID)
        with store.write() as writer:
            writer.put_server(dataclasses.replace(server, metadata={"changed": "yes"}))
        return time.monotonic()


def _metric(admin: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_pid(master: int) -> int:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return int(children[0])


async def _open(port: int, request: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    writer.write(request)
    return reader, writer


async def _answer(reader: asyncio.StreamReader) -> tuple[int, float]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    await reader.readexactly(length)
    return int(head.split(b" ", 2)[1]), time.monotonic()


async def _run(port: int, admin: int, master: int, url: str, waiters: int) -> dict[str, object]:
    request = (
        f"GET {PATH} HTTP/1.1\r\nHost: 169.254.169.254\r\nX-Instance-ID: {SERVER_ID}\r\n"
        f"X-Tenant-ID: proj\r\nX-Instance-ID-Signature: "
        f"{sign_instance_id(SECRET.encode(), SERVER_ID)}\r\nX-Forwarded-For: 10.9.0.5\r\n\r\n"
    ).encode()
    worker = _worker_pid(master)
    before = rss_by_process([worker])[worker]
    connections = []
    started = time.monotonic()
    for first in range(0, waiters, CONNECT_BATCH):
        batch = range(first, min(first + CONNECT_BATCH, waiters))
        connections += await asyncio.gather(*(_open(port, request) for _ in batch))
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 120
    while (await loop.run_in_executor(None, _metric, admin, "cloudseed_api_waiting_requests")
           < waiters):
        if time.monotonic() > deadline:
            raise SystemExit("the waiters did not all arrive within 120 s")
        await asyncio.sleep(0.2)
    set_up = time.monotonic() - started
    after = rss_by_process([worker])[worker]
    answers = [asyncio.ensure_future(_answer(reader)) for reader, _ in connections]
    cpu_before, client_before = _cpu_seconds(worker), time.process_time()
    changed_at = await loop.run_in_executor(None, _change, url)
    results = await asyncio.gather(*answers)
    worker_cpu = _cpu_seconds(worker) - cpu_before
    client_cpu = time.process_time() - client_before
    for _, writer in connections:
        writer.close()
    statuses = {status for status, _ in results}
    last = max(at for _, at in results)
    return {
        "waiters": waiters,
        "set_up_seconds": round(set_up, 2),
        "worker_rss_before_mib": round(before / 2**20, 1),
        "worker_rss_with_waiters_mib": round(after / 2**20, 1),
        "bytes_per_waiter": round((after - before) / waiters),
        "change_to_last_answer_seconds": round(last - changed_at, 3),
        "change_to_median_answer_seconds": round(
            sorted(at for _, at in results)[len(results) // 2] - changed_at, 3),
        # The worker's own CPU to answer all of them, and this client's to read
        # them (both on the same machine, so they compete for its cores).
        "worker_cpu_seconds_for_the_change": round(worker_cpu, 3),
        "client_cpu_seconds_for_the_answers": round(client_cpu, 3),
        "statuses": sorted(statuses),
        "within_1_s": last - changed_at <= 1.0 and statuses == {200},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiters", type=int, default=10000)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < args.waiters + 256:
        raise SystemExit(f"open files hard limit {hard} < {args.waiters + 256}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with tempfile.TemporaryDirectory(prefix="cloudseed-waiters-") as tmp:
        url = f"sqlite:///{tmp}/store.db"
        _store(url)
        port, admin = free_port(), free_port()
        env = {**os.environ, "CLOUDSEED_STORE_URL": url, "CLOUDSEED_SHARED_SECRET": SECRET,
               "CLOUDSEED_API_HOST": "127.0.0.1", "CLOUDSEED_API_PORT": str(port),
               "CLOUDSEED_API_ADMIN_PORT": str(admin), "CLOUDSEED_API_WORKERS": "1",
               "CLOUDSEED_API_MODE": "proxy", "CLOUDSEED_API_ACCESS_LOG": "false",
               "CLOUDSEED_API_WAIT_FOR_CHANGE_MAX_SECONDS": "300",
               "CLOUDSEED_STORE_DATA_DIR": tmp}
        api = subprocess.Popen([sys.executable, "-m", "cloudseed", "--log-level", "warning",
                                "api"], env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    _metric(admin, "cloudseed_api_waiting_requests")
                    break
                except OSError:
                    if time.monotonic() > deadline or api.poll() is not None:
                        raise SystemExit("cloudseed api did not start") from None
                    time.sleep(0.2)
            figures = asyncio.run(_run(port, admin, api.pid, url, args.waiters))
        finally:
            api.send_signal(signal.SIGTERM)
            api.wait(30)
    print(json.dumps(figures, indent=2))
    return 0 if figures["within_1_s"] else 1


if __name__ == "__main__":
    sys.exit(main())
