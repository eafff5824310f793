"""Fair to every guest: one source's crowd, slowloris or burst costs other guests nothing.

Real sockets on loopback; each 127.0.0.x address is one guest. The built-in
proxy (in front of an agent stand-in) and the metadata API in direct mode
hold per-source caps, so while one guest holds 1,100 connections, trickles
headers, or floods requests, another guest's requests are all answered at
once -- well inside a socket timeout far shorter than the header deadline.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.api import api_settings, running_api, store_view
from tests.support.crowd import close_all, first_status, hold, read_all, wait_until
from tests.support.proxy import (
    HAPROXY,
    Echo,
    LoopThread,
    http_request,
    loop_thread,
    start_proxy,
)
from tests.support.samples import RICH

from cloudseed.http.metrics import Registry
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import ProxyScope, Relay
from cloudseed.settings import ProxySettings
from cloudseed.store import open_store, upgrade

HOG, GUEST, SLOW, BURST = "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"
PROBES = 78  # as many as the starvation run that found the problem
# Far below the header deadline: a probe that waited for a deadline fails.
PROBE_TIMEOUT = 5.0
HEADER_DEADLINE = 60.0


async def _render(registry: Registry) -> str:
    return registry.render().decode()


def metric(lt: LoopThread, registry: Registry, series: str) -> float:
    text = lt.run(_render(registry))
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def proxy(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[LoopThread, Relay, int]]:
    settings: ProxySettings = getattr(request, "param", ProxySettings(
        header_timeout_seconds=HEADER_DEADLINE))
    with loop_thread() as lt:
        agent = Echo("agent")
        lt.run(agent.listen_unix(tmp_path / "a.sock"))
        relay = Relay(ProxyScope(network_id="net-1"), str(tmp_path / "a.sock"), settings)
        (_, port), = lt.run(relay.start([ListenAddress("127.0.0.1", 0)]))
        try:
            yield lt, relay, port
        finally:
            lt.run(relay.stop())
            lt.run(agent.stop())


def _open(sock: socket.socket) -> bool:
    """Whether the server still holds this connection (it has sent nothing, closed nothing)."""
    try:
        sock.setblocking(False)
        return sock.recv(1, socket.MSG_PEEK) == b"x"
    except BlockingIOError:
        return True
    except OSError:
        return False


def probe(port: int, path: str = "/latest/meta-data/") -> int:
    return http_request("127.0.0.1", port, "GET", path, timeout=PROBE_TIMEOUT, source=GUEST)[0]


def test_one_guest_holding_1100_connections_costs_another_nothing(
    proxy: tuple[LoopThread, Relay, int],
) -> None:
    lt, relay, port = proxy
    refused = 'cloudseed_connections_refused_total{tier="proxy",reason="source"}'
    hog = hold(HOG, "127.0.0.1", port, 1100)
    try:
        wait_until(lambda: metric(lt, relay.registry, refused) == 1100 - 64)
        answers = [probe(port) for _ in range(PROBES)]
        assert answers.count(200) == PROBES, answers
        # The hog's own excess was answered 429 with Retry-After and closed.
        refusals = [read_all(s, 0.2) for s in hog[-10:]]
        assert all(first_status(r) == 429 and b"Retry-After: 1" in r for r in refusals)
        print(f"\n1,100-connection hog: {1100 - 64} refused, 64 held; "
              f"other guest {answers.count(200)}/{PROBES} answered 200")
    finally:
        close_all(hog)


@pytest.mark.parametrize("proxy", [ProxySettings(header_timeout_seconds=2.0)], indirect=True)
def test_a_slowloris_is_capped_then_timed_out_while_others_are_served(
    proxy: tuple[LoopThread, Relay, int],
) -> None:
    lt, relay, port = proxy
    slow = hold(SLOW, "127.0.0.1", port, 200, send=b"GET /x HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    try:
        answers = [probe(port) for _ in range(20)]
        assert answers.count(200) == 20, answers
        # Past the header deadline every held slowloris connection hears 408 and is closed.
        statuses = [first_status(read_all(s)) for s in slow]
        assert statuses.count(429) == 200 - 64
        assert statuses.count(408) == 64
        assert metric(lt, relay.registry, 'cloudseed_request_timeouts_total{tier="proxy"}') == 64
    finally:
        close_all(slow)


def test_a_burst_of_requests_in_flight_is_refused_beyond_the_cap(
    proxy: tuple[LoopThread, Relay, int],
) -> None:
    lt, relay, port = proxy
    burst = hold(BURST, "127.0.0.1", port, 40, send=b"GET /slow/3 HTTP/1.1\r\nHost: a\r\n\r\n")
    try:
        wait_until(lambda: metric(
            lt, relay.registry, 'cloudseed_requests_refused_total{tier="proxy"}') == 40 - 16)
        answers = [probe(port) for _ in range(20)]
        assert answers.count(200) == 20, answers
        # The first bytes of each answer: 429 at once, or 200 when /slow/3 is done.
        statuses = [first_status(s.recv(65536)) for s in burst]
        assert statuses.count(429) == 24
        assert statuses.count(200) == 16
    finally:
        close_all(burst)


@pytest.mark.parametrize("proxy", [ProxySettings(max_connections=40,
                                                 header_timeout_seconds=HEADER_DEADLINE)],
                         indirect=True)
def test_at_the_global_cap_the_heaviest_source_makes_room(
    proxy: tuple[LoopThread, Relay, int],
) -> None:
    lt, relay, port = proxy
    # Four guests fill the proxy (40 connections, 10 = a quarter each), idle after a request.
    crowd = []
    for n in range(10, 14):
        crowd += hold(f"127.0.0.{n}", "127.0.0.1", port, 10,
                      send=b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    try:
        for sock in crowd:
            sock.settimeout(5.0)
            assert first_status(sock.recv(65536)) == 200
        assert probe(port) == 200
        assert metric(lt, relay.registry, 'cloudseed_connections_evicted_total{tier="proxy"}') == 1
    finally:
        close_all(crowd)


def test_haproxy_holds_the_same_per_source_cap(tmp_path: Path) -> None:
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy is not installed")
    with loop_thread() as lt:
        agent = Echo("agent")
        lt.run(agent.listen_unix(tmp_path / "a.sock"))
        settings = ProxySettings(header_timeout_seconds=HEADER_DEADLINE)
        with start_proxy("haproxy", lt, ProxyScope(network_id="net-1"), str(tmp_path / "a.sock"),
                         tmp_path / "haproxy", settings=settings) as running:
            hog = hold(HOG, "127.0.0.1", running.port, 1100)
            try:
                # haproxy closes (resets) the connections over the cap without a word.
                answers = [probe(running.port) for _ in range(PROBES)]
                assert answers.count(200) == PROBES, answers
                still_open = [s for s in hog if _open(s)]
                assert len(still_open) <= 64
            finally:
                close_all(hog)
        lt.run(agent.stop())


def test_direct_mode_api_holds_per_source_limits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    upgrade(url)
    with open_store(url) as store:
        store_view(store, RICH, guest_ip=GUEST)
        with running_api(store, api_settings(mode="direct")) as api:
            hog = hold(HOG, "127.0.0.1", api.port, 1100)
            try:
                series = 'cloudseed_connections_refused_total{tier="api",reason="source"}'

                def refused() -> float:
                    text = api.request("/metrics", admin=True).body.decode()
                    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
                    return float(match.group(1)) if match else 0.0

                wait_until(lambda: refused() == 1100 - 64)
                answers = [api.request("/openstack/latest/meta_data.json", source=GUEST).status
                           for _ in range(PROBES)]
                assert answers.count(200) == PROBES, answers
            finally:
                close_all(hog)
