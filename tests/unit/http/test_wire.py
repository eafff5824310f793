"""The wire core itself, with raw-bytes tiers (as the agent and the proxy use it)."""

from __future__ import annotations

import asyncio
import dataclasses
import socket

import pytest
from tests.support.exchange import OVER_THE_LIMITS, SMALL_LIMITS, read_response, run, send

from cloudseed.http.encoding import response_head, text_head
from cloudseed.http.listeners import Dispatch, WireServer
from cloudseed.http.wire import MAX_QUEUED_REQUESTS, Limits, WireConnection


def describe(conn: WireConnection) -> bytes:
    """What the tier saw: method, target, body length and the x-tag header."""
    tag = b",".join(value for name, value in conn.headers if name == b"x-tag")
    return b"%s %s %d %s" % (conn.method, conn.target, len(conn.body), tag)


def echo(conn: WireConnection) -> None:
    body = describe(conn)
    conn.respond(text_head(200, body), body)


def later(seconds: float) -> Dispatch:
    """A dispatch that answers after ``seconds``, reading the request only then."""

    def dispatch(conn: WireConnection) -> None:
        def answer() -> None:
            body = describe(conn)
            conn.respond(text_head(200, body), body)

        asyncio.get_running_loop().call_later(seconds, answer)

    return dispatch


async def serve(dispatch: Dispatch, limits: Limits | None = None) -> tuple[WireServer, int]:
    server = WireServer(dispatch, limits, wants_peer=True)
    _, port = await server.listen_tcp("127.0.0.1", 0)
    return server, port


def test_pipelined_requests_are_answered_in_order_behind_a_slow_answer() -> None:
    async def scenario() -> None:
        server, port = await serve(later(0.05))
        reader, writer = await send(
            port,
            b"GET /a HTTP/1.1\r\nX-Tag: one\r\n\r\n"
            b"POST /b HTTP/1.1\r\nX-Tag: two\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /c HTTP/1.1\r\nX-Tag: three\r\n\r\n",
        )
        # Each answer describes its own request, though the next ones were
        # parsed while it was still being answered.
        bodies = [(await read_response(reader))[2] for _ in range(3)]
        assert bodies == [b"GET /a 0 one", b"POST /b 3 two", b"GET /c 0 three"]
        writer.close()
        await server.stop(1)

    run(scenario())


def test_a_long_pipeline_is_answered_without_recursion_or_an_unbounded_queue() -> None:
    count = MAX_QUEUED_REQUESTS * 40
    first = [True]

    def dispatch(conn: WireConnection) -> None:
        if first[0]:  # the first answer comes later, so everything else queues
            first[0] = False
            asyncio.get_running_loop().call_later(0.05, echo, conn)
        else:
            echo(conn)

    async def scenario() -> None:
        server, port = await serve(dispatch)
        raw = b"".join(b"GET /%d HTTP/1.1\r\n\r\n" % i for i in range(count))
        reader, writer = await send(port, raw)
        for i in range(count):
            code, _, body = await read_response(reader)
            assert (code, body) == (200, b"GET /%d 0 " % i)
        writer.close()
        await server.stop(1)

    run(scenario())


@pytest.mark.parametrize(("raw", "expected"), OVER_THE_LIMITS)
def test_limits_and_malformed_requests_get_an_error_and_close(raw: bytes, expected: int) -> None:
    seen: list[bytes] = []

    def dispatch(conn: WireConnection) -> None:
        seen.append(conn.target)
        echo(conn)

    async def scenario() -> None:
        server, port = await serve(dispatch, SMALL_LIMITS)
        reader, writer = await send(port, raw)
        code, headers, body = await read_response(reader)
        assert code == expected
        assert headers["connection"] == "close"
        assert body  # a human-readable reason
        assert await asyncio.wait_for(reader.read(), 5) == b""
        assert seen == []  # the tier never saw it
        writer.close()
        await server.stop(1)

    run(scenario())


def test_nothing_after_a_smuggled_request_is_answered() -> None:
    async def scenario() -> None:
        server, port = await serve(echo, SMALL_LIMITS)
        reader, writer = await send(
            port,
            b"GET /ok HTTP/1.1\r\n\r\n"
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"
            b"GET /smuggled HTTP/1.1\r\n\r\n",
        )
        assert (await read_response(reader))[2] == b"GET /ok 0 "
        assert (await read_response(reader))[0] == 400
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    run(scenario())


def test_an_upgrade_never_switches_protocols() -> None:
    async def scenario() -> None:
        server, port = await serve(echo, SMALL_LIMITS)
        reader, writer = await send(
            port, b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
            b"\x81\x05hello")
        # llhttp reports the upgrade once the request is complete: the request
        # itself is answered as plain HTTP, then the connection ends with 400.
        assert (await read_response(reader))[0] == 200
        code, headers, _ = await read_response(reader)
        assert (code, headers["connection"]) == (400, "close")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    run(scenario())


@pytest.mark.parametrize(
    "partial",
    [b"GET / HTTP/1.1\r\nHost: slo", b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"],
    ids=["headers", "body"],
)
def test_slow_headers_or_body_get_408_and_close(partial: bytes) -> None:
    async def scenario() -> None:
        limits = Limits(header_timeout_seconds=0.2, body_timeout_seconds=0.2)
        server, port = await serve(echo, limits)
        reader, writer = await send(port, partial)
        code, headers, _ = await read_response(reader)
        assert (code, headers["connection"]) == (408, "close")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    run(scenario())


def test_idle_keep_alive_closes_quietly_but_a_slow_answer_is_not_timed_out() -> None:
    async def scenario() -> None:
        limits = Limits(keep_alive_timeout_seconds=0.2, header_timeout_seconds=0.2)
        server, port = await serve(later(0.5), limits)
        reader, writer = await send(port, b"GET /slow HTTP/1.1\r\n\r\n")
        code, headers, body = await read_response(reader)  # 0.5 s > every timeout
        assert (code, headers["connection"], body) == (200, "keep-alive", b"GET /slow 0 ")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then idle: closed, no 408
        writer.close()
        await server.stop(1)

    run(scenario())


def test_connections_over_the_limit_get_503_and_close() -> None:
    async def scenario() -> None:
        server, port = await serve(echo, Limits(max_connections=2))
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        code, headers, _ = await read_response(reader)
        assert (code, headers["connection"]) == (503, "close")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        for _, w in [*held, (reader, writer)]:
            w.close()
        await server.stop(1)

    run(scenario())


def test_half_closed_client_gets_every_answer_then_the_close() -> None:
    async def scenario() -> None:
        server, port = await serve(later(0.05))
        reader, writer = await send(port, b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        writer.write_eof()
        assert (await read_response(reader))[2] == b"GET /1 0 "
        assert (await read_response(reader))[2] == b"GET /2 0 "
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    run(scenario())


def test_head_and_204_send_no_body_and_keep_content_length() -> None:
    def dispatch(conn: WireConnection) -> None:
        if conn.target == b"/empty":
            conn.respond(response_head(204, b"text/plain", 0), b"")
        else:
            conn.respond(text_head(200, b"document"), b"document")

    async def scenario() -> None:
        server, port = await serve(dispatch)
        reader, writer = await send(
            port, b"HEAD /d HTTP/1.1\r\n\r\nGET /empty HTTP/1.1\r\n\r\nGET /d HTTP/1.1\r\n\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b"Content-Length: 8\r\n" in head
        assert (await read_response(reader))[0] == 204
        assert (await read_response(reader))[2] == b"document"  # framing held
        writer.close()
        await server.stop(1)

    run(scenario())


def test_http_10_and_connection_close_are_honoured() -> None:
    async def scenario() -> None:
        server, port = await serve(echo)
        for raw in (b"GET /old HTTP/1.0\r\n\r\n", b"GET /c HTTP/1.1\r\nConnection: close\r\n\r\n"):
            reader, writer = await send(port, raw)
            _, headers, _ = await read_response(reader)
            assert headers["connection"] == "close"
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        await server.stop(1)

    run(scenario())


def test_a_tier_bug_is_a_500_and_the_server_lives_on() -> None:
    def dispatch(conn: WireConnection) -> None:
        if conn.target == b"/boom":
            raise RuntimeError("bug")
        echo(conn)

    async def scenario() -> None:
        server, port = await serve(dispatch)
        reader, writer = await send(port, b"GET /boom HTTP/1.1\r\n\r\n")
        code, headers, _ = await read_response(reader)
        assert (code, headers["connection"]) == (500, "close")
        writer.close()
        reader, writer = await send(port, b"GET /fine HTTP/1.1\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()
        await server.stop(1)

    run(scenario())


def test_graceful_stop_finishes_answers_in_progress_then_refuses() -> None:
    async def scenario() -> None:
        server, port = await serve(later(0.2))
        reader, writer = await send(port, b"GET /last HTTP/1.1\r\n\r\n")
        idle_reader, idle_writer = await send(port, b"")
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(server.stop(5))
        code, headers, body = await read_response(reader)
        await stopping
        assert (code, body) == (200, b"GET /last 0 ")
        assert headers["connection"] == "close"
        assert await asyncio.wait_for(idle_reader.read(), 5) == b""
        assert not server.connections
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        writer.close()
        idle_writer.close()

    run(scenario())


def test_peer_address_only_when_asked() -> None:
    peers: list[str] = []

    def dispatch(conn: WireConnection) -> None:
        peers.append(conn.peer)
        echo(conn)

    async def scenario() -> None:
        for wants_peer in (True, False):
            server = WireServer(dispatch, wants_peer=wants_peer)
            _, port = await server.listen_tcp("127.0.0.1", 0)
            reader, writer = await send(port, b"GET / HTTP/1.1\r\n\r\n")
            await read_response(reader)
            writer.close()
            await server.stop(1)

    run(scenario())
    assert peers == ["127.0.0.1", ""]


def test_wire_works_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")

    async def scenario() -> None:
        server, port = await serve(later(0.01), Limits(keep_alive_timeout_seconds=0.2))
        reader, writer = await send(port, b"GET /uv HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n")
        assert (await read_response(reader))[2] == b"GET /uv 0 "
        assert (await read_response(reader))[2] == b"GET /2 0 "
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    uvloop.run(scenario())


def test_declared_oversize_body_is_413_before_any_body_byte() -> None:
    # Only the head is sent: a server waiting for the body would answer 408
    # after the body timeout instead, so 413 here proves it did not wait.
    async def scenario() -> None:
        server, port = await serve(echo, dataclasses.replace(SMALL_LIMITS, body_timeout_seconds=60))
        reader, writer = await send(port, b"POST / HTTP/1.1\r\nContent-Length: 300000000\r\n\r\n")
        code, headers, _ = await asyncio.wait_for(read_response(reader), 10)
        assert code == 413
        assert headers["connection"] == "close"
        writer.close()
        await server.stop(1)

    run(scenario())
