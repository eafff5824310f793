"""A bug in any tier's handler is answered 500, logged with its traceback, and counted."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.api import api_settings, running_api
from tests.support.logs import JsonLines, json_logs
from tests.support.proxy import Echo, http_request, loop_thread, unix_request
from tests.unit.agent.test_agent import Rig, make_rig, router

from cloudseed.http.failures import HandlerFailures
from cloudseed.http.listeners import WireServer
from cloudseed.http.message import Request, Response
from cloudseed.http.metrics import Registry
from cloudseed.http.server import HttpServer
from cloudseed.http.wire import WireConnection
from cloudseed.proxy.listen import ListenAddress
from cloudseed.proxy.relay import ProxyScope, Relay
from cloudseed.store import SqlStore


class Bug(RuntimeError):
    pass


def _assert_logged(logs: JsonLines, tier: str, path: str) -> None:
    lines = logs.events("request handler failed")
    assert len(lines) == 1, logs.lines
    line = lines[0]
    assert line["level"] == "error"
    assert line["tier"] == tier
    assert line["path"] == path  # without the query string
    assert "Traceback" in line["exception"]
    assert "Bug: planted" in line["exception"]


def _errors(tier: str) -> str:
    return f'cloudseed_handler_errors_total{{tier="{tier}"}} 1'


def test_wire_dispatch_exception_is_logged_counted_and_answered_500() -> None:
    registry = Registry()

    def dispatch(conn: WireConnection) -> None:
        raise Bug("planted")

    with loop_thread() as lt, json_logs() as logs:
        server = WireServer(dispatch, wants_peer=True,
                            failures=HandlerFailures("edge", registry))
        _, port = lt.run(server.listen_tcp("127.0.0.1", 0))
        try:
            status, _, _ = http_request("127.0.0.1", port, "GET", "/p?token=secret")
            assert status == 500
        finally:
            lt.run(server.stop(1))
    _assert_logged(logs, "edge", "/p")
    assert "secret" not in str(logs.lines)
    assert _errors("edge") in registry.render().decode()


@pytest.mark.parametrize("later", [False, True])
def test_http_handler_exception_is_logged_and_counted(later: bool) -> None:
    registry = Registry()

    async def fail_later(request: Request) -> Response:
        await asyncio.sleep(0)
        raise Bug("planted")

    def handler(request: Request) -> Response:
        if later:
            return fail_later(request)  # type: ignore[return-value]
        raise Bug("planted")

    with loop_thread() as lt, json_logs() as logs:
        server = HttpServer(handler, failures=HandlerFailures("unit", registry))
        _, port = lt.run(server.listen_tcp("127.0.0.1", 0))
        try:
            assert http_request("127.0.0.1", port, "GET", "/x")[0] == 500
        finally:
            lt.run(server.stop(1))
    _assert_logged(logs, "unit", "/x")
    assert _errors("unit") in registry.render().decode()


@pytest.fixture
def rig(store: SqlStore, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(store, tmp_path)


def test_an_agent_bug_leaves_a_log_line_and_a_counter(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(headers: object) -> object:
        raise Bug("planted")

    monkeypatch.setattr("cloudseed.agent.server.parse_identity", broken)
    with json_logs() as logs:
        status, _, _ = rig.ask(router("rtr-a"), path="/latest/meta-data/")
    assert status == 500
    _assert_logged(logs, "agent", "/latest/meta-data/")
    listener = rig.agent.status_server._servers[0]
    assert isinstance(listener, asyncio.Server)
    host, port = listener.sockets[0].getsockname()[:2]
    text = http_request(host, port, "GET", "/metrics")[2].decode()
    assert _errors("agent") in text


def test_a_proxy_bug_leaves_a_log_line_and_a_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise Bug("planted")

    with loop_thread() as lt:
        agent = Echo("agent")
        lt.run(agent.listen_unix(tmp_path / "a.sock"))
        relay = Relay(ProxyScope(network_id="net-1"), str(tmp_path / "a.sock"))
        (host, port), = lt.run(relay.start([ListenAddress("127.0.0.1", 0)],
                                           status_socket=str(tmp_path / "status.sock")))
        try:
            assert http_request(host, port, "GET", "/ok")[0] == 200
            monkeypatch.setattr("cloudseed.proxy.relay.guest_headers", broken)
            with json_logs() as logs:
                assert http_request(host, port, "GET", "/latest/user-data")[0] == 500
            text = unix_request(tmp_path / "status.sock", "GET", "/metrics")[2].decode()
        finally:
            lt.run(relay.stop())
            lt.run(agent.stop())
    _assert_logged(logs, "proxy", "/latest/user-data")
    assert _errors("proxy") in text


def test_an_api_bug_leaves_a_log_line_and_a_counter(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_api(store, api_settings()) as api:
        def broken(*args: object) -> object:
            raise Bug("planted")

        monkeypatch.setattr(api.app, "_dispatch", broken)
        with json_logs() as logs:
            reply = api.request("/openstack/latest/meta_data.json")
        assert reply.status == 500
        assert b"unknown error" in reply.body  # Nova's words, not the exception
        text = api.request("/metrics", admin=True).body.decode()
    _assert_logged(logs, "api", "/openstack/latest/meta_data.json")
    assert _errors("api") in text
