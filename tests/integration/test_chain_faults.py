"""Faults along the chain: a guest always gets an answer, and quickly.

The agent is killed for real (SIGKILL of a ``cloudseed agent`` process); the
API is stopped or made slow; and 10,000 requests leave no file descriptors or
memory behind.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support import world
from tests.support.chain import GUEST_IP, SECRET, chain
from tests.support.proxy import (
    Echo,
    echoed,
    header_values,
    loop_thread,
    start_proxy,
    unix_request,
)
from tests.support.world import UUIDS

from cloudseed.proxy.relay import ProxyScope
from cloudseed.store import SqlStore, open_store

IMPLEMENTATIONS = ["builtin", "haproxy", "shared"]


def _spawn_agent(store_url: str, socket_path: Path, api_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CLOUDSEED_SHARED_SECRET": SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudseed.cli.main", "--log-level", "warning", "agent",
         "--store-url", store_url, "--socket", str(socket_path), "--api-url", api_url,
         "--metrics-port", "-1"],
        env=env, stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while True:
        try:
            status, _, _ = unix_request(socket_path, "GET", "/", [
                ("X-Neutron-Router-ID", "rtr-a"), ("X-Forwarded-For", GUEST_IP)])
            if status == 200:
                return process
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("cloudseed agent did not start")
        time.sleep(0.05)


@pytest.fixture
def agent_process_setup(store_url: str, tmp_path: Path) -> tuple[str, Path]:
    with contextlib.closing(open_store(store_url)) as store:
        world.build(store, ip=GUEST_IP, cidr="127.0.0.0/24", uuids=True)
    return store_url, tmp_path / "agent.sock"


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_agent_killed_proxy_answers_within_one_second_and_recovers(
    agent_process_setup: tuple[str, Path], tmp_path: Path, kind: str
) -> None:
    store_url, socket_path = agent_process_setup
    with loop_thread() as lt:
        api = Echo("api")
        api_url = f"http://127.0.0.1:{lt.run(api.listen_tcp())}"
        agent = _spawn_agent(store_url, socket_path, api_url)
        try:
            with start_proxy(kind, lt, ProxyScope(router_id="rtr-a"), str(socket_path),
                             tmp_path) as proxy:
                status, _, body = proxy.request("GET", "/x", source=GUEST_IP)
                assert status == 200
                assert header_values(echoed(body), "x-instance-id") == [UUIDS["a"]]

                agent.send_signal(signal.SIGKILL)
                agent.wait()
                started = time.monotonic()
                status, _, _ = proxy.request("GET", "/x", source=GUEST_IP)
                assert time.monotonic() - started < 1.0
                assert status in (502, 503)

                agent = _spawn_agent(store_url, socket_path, api_url)
                status, _, body = proxy.request("GET", "/x", source=GUEST_IP)
                assert status == 200
                assert header_values(echoed(body), "x-instance-id") == [UUIDS["a"]]
        finally:
            agent.kill()
            agent.wait()
            lt.run(api.stop())


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_api_down_is_503_at_once(store: SqlStore, tmp_path: Path, kind: str) -> None:
    with chain(store, tmp_path, kind) as c:
        assert c.ask("a", "/x")[0] == 200
        assert c.echo is not None
        c.lt.run(c.echo.stop())
        started = time.monotonic()
        status, _, body = c.ask("a", "/x")
        assert time.monotonic() - started < 1.0
        assert status == 503, body


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
def test_api_slow_is_504_after_the_agent_timeout(
    store: SqlStore, tmp_path: Path, kind: str
) -> None:
    with chain(store, tmp_path, kind, api_timeout_seconds=0.5) as c:
        started = time.monotonic()
        status, _, _ = c.ask("b", "/slow/5")
        elapsed = time.monotonic() - started
        assert status == 504
        assert 0.5 <= elapsed < 3.0
        assert c.ask("b", "/x")[0] == 200


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _requests(host: str, port: int, count: int) -> None:
    conn: http.client.HTTPConnection | None = None
    for i in range(count):
        if conn is None or i % 100 == 0:  # a mix of new and kept-alive connections
            if conn is not None:
                conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=5,
                                              source_address=(GUEST_IP, 0))
        conn.request("GET", f"/latest/meta-data/{i % 30}",
                     headers={"X-Instance-ID": "spoof"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
    if conn is not None:
        conn.close()


@pytest.mark.slow
def test_no_fd_or_memory_growth_over_10000_requests(sqlite_url: str, tmp_path: Path) -> None:
    store = open_store(sqlite_url)
    with contextlib.closing(store), chain(store, tmp_path, "builtin",
                                          rate_limit_enabled=False) as c:
        proxy = c.proxies["a"]
        _requests(proxy.host, proxy.port, 500)  # warm caches, pools, allocator
        fds, rss = _fd_count(), _rss_bytes()
        _requests(proxy.host, proxy.port, 10_000)
        time.sleep(0.2)  # let closed connections finish closing
        assert _fd_count() - fds <= 8
        assert _rss_bytes() - rss < 32 * 1024 * 1024
        assert c.echo is not None
        assert len(c.echo.seen) == 10_500
        assert all(r.header("x-instance-id") == UUIDS["a"] for r in c.echo.seen[-100:])
