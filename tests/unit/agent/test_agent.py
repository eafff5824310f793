"""The agent over its real Unix socket, a real store, and a real HTTP upstream
that stands in for the metadata API and echoes what it received."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.support import world
from tests.support.counting import CountingStore
from tests.support.ports import free_port
from tests.support.proxy import (
    Echo,
    LoopThread,
    echoed,
    header_values,
    http_request,
    loop_thread,
    unix_request,
)
from tests.support.world import LLA_A, SAME_IP, V6_A

from cloudseed.agent import followed as agent_followed
from cloudseed.agent.server import Agent
from cloudseed.auth.signing import sign_instance_id
from cloudseed.model import FixedIp, Port, Router, Subnet
from cloudseed.settings import AgentSettings
from cloudseed.store import SqlStore

SECRET = b"shared-secret"


class Rig:
    def __init__(self, lt: LoopThread, store: SqlStore, api: Echo, agent: Agent) -> None:
        self.lt, self.store, self.api, self.agent = lt, store, api, agent

    def ask(
        self,
        scope: tuple[str, str] | list[tuple[str, str]],
        xff: str | list[str] = SAME_IP,
        path: str = "/openstack/latest/meta_data.json",
        headers: list[tuple[str, str]] | None = None,
        method: str = "GET",
    ) -> tuple[int, dict[str, str], bytes]:
        scopes = scope if isinstance(scope, list) else [scope]
        xffs = xff if isinstance(xff, list) else [xff]
        sent = [*scopes, *(("X-Forwarded-For", x) for x in xffs), *(headers or [])]
        return unix_request(self.agent.settings.socket_path, method, path, sent)

    def instance(self, scope: tuple[str, str], xff: str = SAME_IP) -> str:
        status, _, body = self.ask(scope, xff)
        assert status == 200, body
        values = header_values(echoed(body), "x-instance-id")
        assert len(values) == 1
        return values[0]

    def settle(self) -> None:
        """Wait until the agent's cache reflects everything written so far."""
        self.lt.run(self.agent.wait_for_revision(self.store.revision()))

    def metric(self, name: str, *labels: str) -> float:
        for metric in self.agent.metrics.registry.metrics:
            if metric.name == name:
                return metric.get(*labels)  # type: ignore[union-attr]
        raise KeyError(name)


def router(rid: str) -> tuple[str, str]:
    return ("X-Neutron-Router-ID", rid)


def network(nid: str) -> tuple[str, str]:
    return ("X-Neutron-Network-ID", nid)


def make_rig(store: SqlStore, tmp_path: Path, agent_store: Any = None, loaded: bool = True,
             build_world: bool = True, **overrides: Any) -> Iterator[Rig]:
    """The world, an echoing API and a started agent (on ``agent_store`` if given; waits for
    its address map unless ``loaded`` is False)."""
    if build_world:
        world.build(store)
    with loop_thread() as lt:
        api = Echo("api")
        api_port = lt.run(api.listen_tcp())
        settings = AgentSettings(
            socket_path=str(tmp_path / "run" / "agent.sock"),
            api_url=f"http://127.0.0.1:{api_port}",
            metrics_port=0,
        )
        settings = replace(settings, **overrides)
        agent = Agent(agent_store or store, settings, SECRET)
        lt.run(agent.start())
        if loaded:
            lt.run(agent.wait_loaded())
        try:
            yield Rig(lt, store, api, agent)
        finally:
            lt.run(agent.stop())
            lt.run(api.stop())


@pytest.fixture
def rig(store: SqlStore, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(store, tmp_path)


# -- resolution ---------------------------------------------------------------


def test_same_ip_behind_different_routers_resolves_to_each_tenant(rig: Rig) -> None:
    assert rig.instance(router("rtr-a")) == "srv-a"
    assert rig.instance(router("rtr-b")) == "srv-b"


def test_same_ip_on_different_networks_resolves_to_each_tenant(rig: Rig) -> None:
    assert rig.instance(network("net-a")) == "srv-a"
    assert rig.instance(network("net-b")) == "srv-b"
    assert rig.instance(network("net-c")) == "srv-c"


def test_forwarded_request_carries_nova_identity_headers(rig: Rig) -> None:
    status, _, body = rig.ask(router("rtr-b"), path="/latest/meta-data/?x=1")
    assert status == 200
    echo = echoed(body)
    assert (echo["path"], echo["query"]) == ("/latest/meta-data/", "x=1")
    assert header_values(echo, "x-instance-id") == ["srv-b"]
    assert header_values(echo, "x-tenant-id") == ["proj-b"]
    assert header_values(echo, "x-instance-id-signature") == [sign_instance_id(SECRET, "srv-b")]
    assert header_values(echo, "x-forwarded-for") == [SAME_IP]
    assert not [k for k, _ in echo["headers"] if k.startswith("x-neutron-")]


def test_guest_token_and_conditional_headers_pass_and_others_do_not(rig: Rig) -> None:
    sent = [("X-aws-ec2-metadata-token", "tok"), ("X-Metadata-Token-Ttl-Seconds", "60"),
            ("If-None-Match", '"v1"'), ("Cookie", "c=1"), ("X-Custom", "x")]
    status, _, body = rig.ask(network("net-a"), headers=sent, method="PUT")
    assert status == 200
    echo = echoed(body)
    assert echo["method"] == "PUT"
    assert header_values(echo, "x-aws-ec2-metadata-token") == ["tok"]
    assert header_values(echo, "x-metadata-token-ttl-seconds") == ["60"]
    assert header_values(echo, "if-none-match") == ['"v1"']
    assert not header_values(echo, "cookie")
    assert not header_values(echo, "x-custom")


def test_ipv4_mapped_ipv6_source_is_the_ipv4_address(rig: Rig) -> None:
    assert rig.instance(router("rtr-a"), "::ffff:10.0.0.5") == "srv-a"


def test_ipv6_source_matches_registered_address(rig: Rig) -> None:
    assert rig.instance(router("rtr-a"), V6_A) == "srv-a"


def test_link_local_source_matches_port_by_eui64_mac(rig: Rig) -> None:
    assert rig.instance(network("net-a"), LLA_A) == "srv-a"
    assert rig.instance(network("net-a"), f"{LLA_A}%tap0") == "srv-a"


def test_link_local_source_matches_registered_link_local_address(rig: Rig) -> None:
    with rig.store.write() as w:
        w.put_subnet(Subnet("sub-c6", "net-c", "fe80::/64", 6))
        w.put_port(Port("port-c", "net-c", "fa:16:3e:00:00:0c",
                        (FixedIp("sub-c", SAME_IP), FixedIp("sub-c6", "fe80::1234")),
                        server_id="srv-c"))
    rig.settle()
    assert rig.instance(network("net-c"), "fe80::1234") == "srv-c"


def test_link_local_without_matching_mac_is_404(rig: Rig) -> None:
    status, _, _body = rig.ask(network("net-b"), LLA_A)
    assert status == 404


def test_unknown_ip_is_404_naming_ip_and_network(rig: Rig) -> None:
    status, _, body = rig.ask(network("net-b"), "10.0.0.99")
    assert status == 404
    assert b"10.0.0.99" in body
    assert b"net-b" in body
    status, _, body = rig.ask(router("rtr-a"), "10.0.0.99")
    assert status == 404
    assert b"10.0.0.99" in body
    assert b"rtr-a" in body


def test_unknown_router_is_404(rig: Rig) -> None:
    status, _, body = rig.ask(router("rtr-nope"))
    assert status == 404
    assert b"rtr-nope" in body


@pytest.mark.parametrize(
    ("scopes", "xffs"),
    [
        ([router("rtr-a"), network("net-a")], [SAME_IP]),
        ([], [SAME_IP]),
        ([router("rtr-a"), router("rtr-b")], [SAME_IP]),
        ([router("")], [SAME_IP]),
        ([router("rtr-a")], []),
        ([router("rtr-a")], [SAME_IP, "10.0.0.6"]),
        ([router("rtr-a")], ["10.0.0.5, 10.0.0.6"]),
        ([router("rtr-a")], ["not-an-ip"]),
    ],
    ids=["both", "neither", "two-routers", "empty-id", "no-xff", "two-xff", "xff-list", "junk"],
)
def test_malformed_identity_headers_are_400(
    rig: Rig, scopes: list[tuple[str, str]], xffs: list[str]
) -> None:
    status, _, _ = rig.ask(scopes, xffs)
    assert status == 400
    assert rig.api.seen == []


# -- statuses from the API ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "header", "value"),
    [(304, "etag", '"v1"'), (401, "x-aws-ec2-metadata-token-ttl-seconds", "21600"),
     (403, "etag", '"v1"'), (405, "allow", "GET, HEAD"), (409, "etag", '"v1"'),
     (429, "retry-after", "7"), (500, "etag", '"v1"'), (200, "etag", '"v1"')],
)
def test_every_api_status_passes_through_with_its_headers(
    rig: Rig, status: int, header: str, value: str
) -> None:
    got, headers, _ = rig.ask(router("rtr-a"), path=f"/status/{status}")
    assert got == status
    assert headers[header] == value
    assert "x-unrelated" not in headers


def test_head_is_answered_with_length_and_no_body(rig: Rig) -> None:
    status, headers, body = rig.ask(router("rtr-a"), method="HEAD")
    assert status == 200
    assert body == b""
    assert int(headers["content-length"]) > 0


def test_api_unreachable_is_503_at_once(store: SqlStore, tmp_path: Path) -> None:
    dead_port = free_port()
    for rig in make_rig(store, tmp_path, api_url=f"http://127.0.0.1:{dead_port}"):
        started = time.monotonic()
        status, _, _ = rig.ask(router("rtr-a"))
        assert status == 503
        assert time.monotonic() - started < 1.0


def test_api_slow_is_504_after_the_timeout(store: SqlStore, tmp_path: Path) -> None:
    for rig in make_rig(store, tmp_path, api_timeout_seconds=0.3):
        started = time.monotonic()
        status, _, _ = rig.ask(router("rtr-a"), path="/slow/3")
        elapsed = time.monotonic() - started
        assert status == 504
        assert 0.3 <= elapsed < 2.0
        # The connection that timed out is not reused for the next guest.
        assert rig.instance(router("rtr-a")) == "srv-a"


# -- cache and change feed ------------------------------------------------------


def test_guest_path_reads_no_store_and_hands_off_to_no_thread(
    store: SqlStore, tmp_path: Path
) -> None:
    counting = CountingStore(store)
    for rig in make_rig(store, tmp_path, agent_store=counting):
        counting.calls.clear()
        # First requests ever for these guests: cold, resolved, "not found" too.
        assert rig.instance(router("rtr-a")) == "srv-a"
        assert rig.instance(network("net-c")) == "srv-c"
        assert rig.instance(router("rtr-a"), V6_A) == "srv-a"
        assert rig.ask(network("net-b"), "10.0.0.99")[0] == 404
        for _ in range(10):
            assert rig.instance(router("rtr-b")) == "srv-b"
        # Only the change follower talks to the store, on its own thread.
        assert {thread for _, thread in counting.calls} <= {"change-follower"}, counting.calls
        assert rig.metric("cloudseed_agent_resolutions_total", "hit") >= 9


def test_requests_wait_for_the_map_and_healthz_says_starting(
    store: SqlStore, tmp_path: Path
) -> None:
    counting = CountingStore(store)
    counting.hold.clear()  # the build blocks until released
    for rig in make_rig(store, tmp_path, agent_store=counting, loaded=False):
        host, port = status_address(rig)
        status, _, body = http_request(host, port, "GET", "/healthz")
        assert (status, json.loads(body)["status"]) == (503, "starting")
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(rig.instance, router("rtr-b"))
            time.sleep(0.3)
            assert not waiting.done()  # parked, not refused
            counting.hold.set()
            assert waiting.result(timeout=10) == "srv-b"
        status, _, body = http_request(host, port, "GET", "/healthz")
        assert (status, json.loads(body)["status"]) == (200, "ok")


def test_requests_get_503_when_the_map_is_not_built_in_time(
    store: SqlStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_followed, "LOAD_WAIT_SECONDS", 0.3)
    counting = CountingStore(store)
    counting.hold.clear()
    for rig in make_rig(store, tmp_path, agent_store=counting, loaded=False):
        status, headers, body = rig.ask(router("rtr-a"))
        assert (status, headers.get("retry-after")) == (503, "1"), body
        assert rig.api.seen == []
        counting.hold.set()
        rig.lt.run(rig.agent.wait_loaded())
        assert rig.instance(router("rtr-a")) == "srv-a"


def test_restarted_agent_rebuilds_with_what_changed_while_it_was_down(
    store: SqlStore, tmp_path: Path
) -> None:
    for rig in make_rig(store, tmp_path):
        assert rig.instance(router("rtr-a")) == "srv-a"
    with store.write() as w:
        w.put_server(world.server("d", "proj-d"))
        w.put_port(replace(store.get_port("port-a"), server_id="srv-d"), move=True)
    with loop_thread() as lt:
        api = Echo("api")
        settings = AgentSettings(socket_path=str(tmp_path / "run2" / "agent.sock"),
                                 api_url=f"http://127.0.0.1:{lt.run(api.listen_tcp())}",
                                 metrics_port=-1)
        agent = Agent(store, settings, SECRET)
        lt.run(agent.start())
        lt.run(agent.wait_loaded())
        try:
            assert agent.revision == store.revision()
            _, _, body = unix_request(settings.socket_path, "GET", "/", [
                router("rtr-a"), ("X-Forwarded-For", SAME_IP)])
            assert header_values(echoed(body), "x-instance-id") == ["srv-d"]
        finally:
            lt.run(agent.stop())
            lt.run(api.stop())


def status_address(rig: Rig) -> tuple[str, int]:
    listener = rig.agent.status_server._servers[0]
    assert isinstance(listener, asyncio.Server)
    host, port = listener.sockets[0].getsockname()[:2]
    return host, port


def test_reused_ip_is_never_served_stale(rig: Rig) -> None:
    assert rig.instance(network("net-b")) == "srv-b"
    with rig.store.write() as w:
        w.delete_port("port-b")
        w.put_server(world.server("d", "proj-d"))
        w.put_port(Port("port-d", "net-b", "fa:16:3e:00:00:0d",
                        (FixedIp("sub-b", SAME_IP),), server_id="srv-d"))
    rig.settle()
    assert rig.instance(network("net-b")) == "srv-d"
    assert rig.instance(router("rtr-b")) == "srv-d"


def test_port_moved_to_another_server_is_never_served_stale(rig: Rig) -> None:
    assert rig.instance(router("rtr-a")) == "srv-a"
    with rig.store.write() as w:
        w.put_server(world.server("e", "proj-a"))
        port = rig.store.get_port("port-a")
        w.put_port(replace(port, server_id="srv-e"), move=True)
    rig.settle()
    assert rig.instance(router("rtr-a")) == "srv-e"
    assert rig.instance(router("rtr-a"), V6_A) == "srv-e"


def test_deleted_server_is_never_served_stale(rig: Rig) -> None:
    assert rig.instance(network("net-c")) == "srv-c"
    with rig.store.write() as w:
        w.delete_server("srv-c")
    rig.settle()
    status, _, _ = rig.ask(network("net-c"))
    assert status == 404


def test_cached_not_found_is_dropped_when_the_ip_appears(rig: Rig) -> None:
    status, _, _ = rig.ask(network("net-c"), "10.0.0.77")
    assert status == 404
    with rig.store.write() as w:
        w.put_port(Port("port-f", "net-c", "fa:16:3e:00:00:0f",
                        (FixedIp("sub-c", "10.0.0.77"),), server_id="srv-c"))
    rig.settle()
    assert rig.instance(network("net-c"), "10.0.0.77") == "srv-c"


def test_router_detached_from_a_subnet_stops_resolving_it(rig: Rig) -> None:
    assert rig.instance(router("rtr-b")) == "srv-b"
    with rig.store.write() as w:
        w.put_router(Router("rtr-b", "router-b", ()))
    rig.settle()
    status, _, _ = rig.ask(router("rtr-b"))
    assert status == 404


def test_project_change_is_never_served_stale(rig: Rig) -> None:
    rig.instance(network("net-a"))
    with rig.store.write() as w:
        w.put_server(replace(rig.store.get_server("srv-a"), project_id="proj-z"))
    rig.settle()
    _, _, body = rig.ask(network("net-a"))
    assert header_values(echoed(body), "x-tenant-id") == ["proj-z"]


# -- rate limiting ----------------------------------------------------------------


def test_rate_limit_is_per_server_across_ipv4_and_ipv6(store: SqlStore, tmp_path: Path) -> None:
    for rig in make_rig(store, tmp_path, rate_limit_burst=6, rate_limit_per_second=0.01):
        answers = [rig.ask(router("rtr-a"), ip)[0] for ip in [SAME_IP, V6_A] * 3]
        assert answers == [200] * 6
        status, headers, _ = rig.ask(router("rtr-a"), V6_A)
        assert status == 429
        assert int(headers["retry-after"]) >= 1
        status, _, _ = rig.ask(router("rtr-a"), SAME_IP)
        assert status == 429
        # Another server behind another router has its own bucket.
        assert rig.ask(router("rtr-b"))[0] == 200
        assert rig.metric("cloudseed_agent_rate_limited_total") == 2


def test_default_rate_limit_lets_a_boot_through(rig: Rig) -> None:
    answers = {rig.ask(router("rtr-a"), path=f"/p/{i}")[0] for i in range(60)}
    assert answers == {200}


# -- observability ----------------------------------------------------------------


def test_healthz_and_metrics_on_the_status_listener(rig: Rig) -> None:
    rig.instance(router("rtr-a"))
    rig.ask(network("net-b"), "10.0.0.99")
    listener = rig.agent.status_server._servers[0]
    assert isinstance(listener, asyncio.Server)
    host, port = listener.sockets[0].getsockname()[:2]
    status, _, body = http_request(host, port, "GET", "/healthz")
    assert status == 200
    assert b'"status": "ok"' in body
    status, _, body = http_request(host, port, "GET", "/metrics")
    text = body.decode()
    assert 'cloudseed_agent_requests_total{scope="router",scope_id="rtr-a"} 1' in text
    assert 'cloudseed_agent_requests_total{scope="network",scope_id="net-b"} 1' in text
    assert 'cloudseed_agent_resolutions_total{result="miss"}' in text
    assert "cloudseed_agent_upstream_seconds_count 1" in text
    assert 'cloudseed_agent_responses_total{status="404"} 1' in text


def test_socket_mode_is_applied(rig: Rig) -> None:
    mode = Path(rig.agent.settings.socket_path).stat().st_mode & 0o777
    assert mode == 0o660
