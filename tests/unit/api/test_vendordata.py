"""Dynamic vendordata against real HTTP targets on loopback: good, slow, failing, dead."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
from tests.support.api import FakeClock, api_settings, identity, running_api, store_view
from tests.support.samples import RICH

from cloudseed.api.vendordata import (
    VendordataClient,
    cache_max_age,
    parse_targets,
    server_facts,
)
from cloudseed.http.message import Request, Response
from cloudseed.http.server import HttpServer
from cloudseed.store import SqlStore


class Target:
    """A vendordata service: records what it was sent, answers as told."""

    def __init__(
        self, status: int = 200, body: Any = None, headers: list[tuple[str, str]] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.status, self.body, self.headers, self.delay = status, body, headers or [], delay
        self.received: list[dict[str, Any]] = []
        self.user_agents: list[str | None] = []

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        self.received.append(json.loads(request.body))
        self.user_agents.append(request.header("user-agent"))
        raw = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        response = Response(self.status, raw, list(self.headers), "application/json")
        if not self.delay:
            return response

        async def later() -> Response:
            await asyncio.sleep(self.delay)
            return response

        return later()


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(target: Target) -> tuple[HttpServer, int]:
    server = HttpServer(target.handle)
    _, port = await server.listen_tcp("127.0.0.1", 0)
    return server, port


def client(urls: dict[str, str], clock: FakeClock, **kw: Any) -> VendordataClient:
    targets = parse_targets(tuple(f"{name}@{url}" for name, url in urls.items()))
    options: dict[str, Any] = {
        "connect_timeout_seconds": 2.0,
        "read_timeout_seconds": 0.3,
        "breaker_failures": 3,
        "breaker_reset_seconds": 30.0,
    }
    options.update(kw)
    return VendordataClient(targets, clock=clock, **options)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def test_good_target_gets_the_server_facts_and_its_reply_is_used() -> None:
    async def scenario() -> None:
        good = Target(body={"rack": "r12"})
        server, port = await serve(good)
        result = await client({"inv": f"http://127.0.0.1:{port}/vd"}, FakeClock()).fetch(RICH)
        assert dict(result.data) == {"inv": {"rack": "r12"}}
        assert result.failures == ()
        assert good.received == [server_facts(RICH)]
        assert set(good.received[0]) == {
            "project-id", "instance-id", "image-id", "user-data", "hostname", "metadata"
        }
        assert good.user_agents == ["openstack-nova-vendordata"]
        await server.stop(1)

    run(scenario)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (Target(status=500, body={"error": 1}), "status"),
        (Target(body=b"not json"), "invalid_json"),
        (Target(body={"late": True}, delay=2.0), "timeout"),
    ],
)
def test_failing_targets_are_left_out_with_a_reason(target: Target, reason: str) -> None:
    async def scenario() -> None:
        good = Target(body={"ok": 1})
        bad_server, bad_port = await serve(target)
        good_server, good_port = await serve(good)
        urls = {"bad": f"http://127.0.0.1:{bad_port}/", "good": f"http://127.0.0.1:{good_port}/"}
        result = await client(urls, FakeClock()).fetch(RICH)
        assert dict(result.data) == {"good": {"ok": 1}}
        assert [(f.target, f.reason) for f in result.failures] == [("bad", reason)]
        await bad_server.stop(0.1)
        await good_server.stop(1)

    run(scenario)


def test_dead_target_trips_its_breaker_then_is_skipped_then_retried() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        vd = client({"dead": f"http://127.0.0.1:{dead_port()}/"}, clock)
        reasons = []
        for revision in range(5):
            result = await vd.fetch(dataclasses.replace(RICH, revision=revision))
            reasons.append(result.failures[0].reason)
        assert reasons == ["connect"] * 3 + ["circuit_open"] * 2
        clock.advance(31)
        result = await vd.fetch(dataclasses.replace(RICH, revision=99))
        assert result.failures[0].reason == "connect"  # the one trial after the pause
        result = await vd.fetch(dataclasses.replace(RICH, revision=100))
        assert result.failures[0].reason == "circuit_open"

    run(scenario)


def test_breaker_closes_again_when_the_target_recovers() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        flaky = Target(status=503, body={})
        server, port = await serve(flaky)
        vd = client({"flaky": f"http://127.0.0.1:{port}/"}, clock)
        for revision in range(3):
            await vd.fetch(dataclasses.replace(RICH, revision=revision))
        assert vd.breakers["flaky"].is_open
        sent = len(flaky.received)
        await vd.fetch(dataclasses.replace(RICH, revision=10))
        assert len(flaky.received) == sent  # skipped: no request reached it
        flaky.status = 200
        clock.advance(31)
        result = await vd.fetch(dataclasses.replace(RICH, revision=11))
        assert dict(result.data) == {"flaky": {}}
        assert not vd.breakers["flaky"].is_open
        await server.stop(1)

    run(scenario)


def test_replies_are_cached_per_revision_for_the_targets_max_age() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        good = Target(body={"v": 1}, headers=[("Cache-Control", "public, max-age=60")])
        server, port = await serve(good)
        vd = client({"inv": f"http://127.0.0.1:{port}/"}, clock)
        first = await vd.fetch(RICH)
        assert first.refresh_at == clock.now + 60
        await vd.fetch(RICH)
        assert len(good.received) == 1
        clock.advance(61)
        await vd.fetch(RICH)
        assert len(good.received) == 2
        await vd.fetch(dataclasses.replace(RICH, revision=RICH.revision + 1))
        assert len(good.received) == 3
        await server.stop(1)

    run(scenario)


def test_reply_without_cache_control_is_kept_until_the_server_changes() -> None:
    async def scenario() -> None:
        clock = FakeClock()
        good = Target(body={"v": 1})
        server, port = await serve(good)
        vd = client({"inv": f"http://127.0.0.1:{port}/"}, clock)
        assert (await vd.fetch(RICH)).refresh_at == float("inf")
        clock.advance(86400)
        await vd.fetch(RICH)
        assert len(good.received) == 1
        await server.stop(1)

    run(scenario)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("max-age=30", 30.0), ("no-store", 0.0), ("private, no-cache", 0.0), ("", None),
     ("s-maxage=5", None), ('max-age="7"', 7.0)],
)
def test_cache_control_parsing(header: str, seconds: float | None) -> None:
    assert cache_max_age(header) == seconds


def test_vendor_data2_over_http_has_static_good_and_leaves_out_failing(
    store: SqlStore, tmp_path: Any
) -> None:
    good = Target(body={"rack": "r1"})
    failing = Target(status=500, body={})
    loop = asyncio.new_event_loop()
    servers = [loop.run_until_complete(serve(t)) for t in (good, failing)]
    import threading

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        static = tmp_path / "vendor.json"
        static.write_text('{"cloud-init": "#cloud-config\\npackages: [htop]\\n"}')
        settings = api_settings(
            vendordata_static_file=str(static),
            vendordata_dynamic_targets=(
                f"good@http://127.0.0.1:{servers[0][1]}/",
                f"failing@http://127.0.0.1:{servers[1][1]}/",
                f"dead@http://127.0.0.1:{dead_port()}/",
            ),
        )
        store_view(store, RICH)
        who = identity(RICH.server.id, RICH.server.project_id)
        with running_api(store, settings) as api:
            reply = api.request("/openstack/latest/vendor_data2.json", who)
            assert reply.status == 200
            data = json.loads(reply.body)
            assert data["static"] == {"cloud-init": "#cloud-config\npackages: [htop]\n"}
            assert data["good"] == {"rack": "r1"}
            assert "failing" not in data
            assert "dead" not in data
            v1 = json.loads(api.request("/openstack/latest/vendor_data.json", who).body)
            assert v1 == data["static"]
            metrics = api.request("/metrics", admin=True).body.decode()
            assert 'cloudseed_api_vendordata_failures_total{target="failing",reason="status"} 1' in metrics
            assert 'cloudseed_api_vendordata_failures_total{target="dead",reason="connect"} 1' in metrics
    finally:
        for server, _ in servers:
            asyncio.run_coroutine_threadsafe(server.stop(1), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
