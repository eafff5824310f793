"""The shared HTTP core over real loopback sockets: framing, limits, keep-alive."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from tests.support.exchange import OVER_THE_LIMITS, SMALL_LIMITS, read_response, run, send

from cloudseed import errors
from cloudseed.http import status
from cloudseed.http.message import Request, Response
from cloudseed.http.server import HttpServer, Limits


def echo(request: Request) -> Response:
    body = f"{request.method} {request.path}?{request.query} {len(request.body)}".encode()
    return Response(200, body)


def test_keep_alive_and_pipelined_requests_answer_in_order() -> None:
    async def scenario() -> None:
        server = HttpServer(echo)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(
            port,
            b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"HEAD /c HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        first = await read_response(reader)
        second = await read_response(reader)
        # HEAD: headers with the length of the body that GET would send, no body.
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert first[0] == 200
        assert first[2] == b"GET /a?x=1 0"
        assert second[2] == b"POST /b? 3"
        assert b"Content-Length: 10" in head
        writer.write(b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n")
        fourth = await read_response(reader)
        assert fourth[2] == b"GET /d? 0"
        writer.close()
        await server.stop(1)

    run(scenario())


@pytest.mark.parametrize(("raw", "expected"), OVER_THE_LIMITS)
def test_limits_and_malformed_requests_get_clear_errors_and_close(
    raw: bytes, expected: int
) -> None:
    async def scenario() -> None:
        server = HttpServer(echo, SMALL_LIMITS)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, raw)
        code, headers, body = await read_response(reader)
        assert code == expected
        assert headers["connection"] == "close"
        assert body  # a human-readable reason
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the error
        writer.close()
        await server.stop(1)

    run(scenario())


def test_slow_client_gets_408_and_the_connection_closes() -> None:
    async def scenario() -> None:
        server = HttpServer(echo, Limits(header_timeout_seconds=0.2))
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, b"GET / HTTP/1.1\r\nHost: slo")
        code, _, _ = await read_response(reader)
        assert code == 408
        writer.close()
        await server.stop(1)

    run(scenario())


def test_idle_keep_alive_connection_is_closed_quietly() -> None:
    async def scenario() -> None:
        server = HttpServer(echo, Limits(keep_alive_timeout_seconds=0.2))
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, b"GET / HTTP/1.1\r\n\r\n")
        await read_response(reader)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    run(scenario())


def test_connections_over_the_limit_get_503() -> None:
    async def scenario() -> None:
        server = HttpServer(echo, Limits(max_connections=2))
        _, port = await server.listen_tcp("127.0.0.1", 0)
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        code, _, _ = await read_response(reader)
        assert code == 503
        for _, w in [*held, (reader, writer)]:
            w.close()
        await server.stop(1)

    run(scenario())


def test_async_handler_and_handler_errors() -> None:
    async def handler(request: Request) -> Response:
        await asyncio.sleep(0.01)
        if request.path == "/boom":
            raise RuntimeError("bug")
        return Response(201, b"later")

    async def scenario() -> None:
        server = HttpServer(handler)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, b"GET /ok HTTP/1.1\r\n\r\nGET /boom HTTP/1.1\r\n\r\n")
        assert (await read_response(reader))[:1] == (201,)
        assert (await read_response(reader))[0] == 500
        writer.close()
        await server.stop(1)

    run(scenario())


def test_unix_socket_listener_sets_mode_and_serves(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "sub" / "sock"
        server = HttpServer(echo)
        await server.listen_unix(path, mode=0o600)
        assert path.stat().st_mode & 0o777 == 0o600
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(b"GET /u HTTP/1.1\r\n\r\n")
        code, _, body = await read_response(reader)
        assert (code, body) == (200, b"GET /u? 0")
        writer.close()
        await server.stop(1)

    run(scenario())


def test_graceful_stop_finishes_in_flight_requests() -> None:
    async def handler(request: Request) -> Response:
        await asyncio.sleep(0.2)
        return Response(200, b"done")

    async def scenario() -> None:
        server = HttpServer(handler)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, b"GET / HTTP/1.1\r\n\r\n")
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(server.stop(5))
        code, headers, body = await read_response(reader)
        await stopping
        assert (code, body) == (200, b"done")
        assert headers["connection"] == "close"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
        writer.close()

    run(scenario())


def test_every_error_class_has_a_status() -> None:
    classes = [
        obj
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.CloudseedError)
    ]
    assert set(classes) <= set(status.STATUS_BY_ERROR)
    assert status.status_for(errors.RateLimited(3)) == 429
    response = status.error_response_text(errors.MethodNotAllowed("DELETE", ("GET", "HEAD")))
    assert response.status == 405
    assert ("Allow", "GET, HEAD") in response.headers


def test_half_closed_client_still_gets_its_answer() -> None:
    async def handler(request: Request) -> Response:
        await asyncio.sleep(0.05)
        return Response(200, b"answer")

    async def scenario() -> None:
        server = HttpServer(handler)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, b"GET / HTTP/1.1\r\n\r\n")
        writer.write_eof()
        code, _, body = await read_response(reader)
        assert (code, body) == (200, b"answer")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await server.stop(1)

    run(scenario())


def test_server_works_under_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed")

    async def scenario() -> None:
        server = HttpServer(echo)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await send(port, b"GET /uv HTTP/1.1\r\n\r\n")
        assert (await read_response(reader))[2] == b"GET /uv? 0"
        writer.close()
        await server.stop(1)

    uvloop.run(scenario())


def test_prepared_response_encodes_as_the_plain_one() -> None:
    from cloudseed.http.server import encode_response, prepare_response

    plain = Response(200, b"body", [("ETag", '"x"')], "application/json")
    prepared = prepare_response(plain)
    for head in (True, False):
        for keep_alive in (True, False):
            assert encode_response(prepared, head=head, keep_alive=keep_alive) == encode_response(
                plain, head=head, keep_alive=keep_alive
            )
    longer = prepared.with_body(b"longer body")
    assert encode_response(longer) == encode_response(
        Response(200, b"longer body", [("ETag", '"x"')], "application/json")
    )


@pytest.mark.parametrize("before_stop", [b"", b"GET /late HTTP/1.1\r\nHost: x"])
def test_graceful_stop_answers_a_connection_accepted_just_before_it(before_stop: bytes) -> None:
    # Accepted before the stop, its request (or the rest of it) arrives after:
    # a worker being replaced must answer it, not close it unanswered.
    async def scenario() -> None:
        server = HttpServer(echo)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(before_stop)
        await asyncio.sleep(0.05)
        stopping = asyncio.create_task(server.stop(5))
        await asyncio.sleep(0.2)
        writer.write(b"\r\n\r\n" if before_stop else b"GET /late HTTP/1.1\r\n\r\n")
        code, _, body = await read_response(reader)
        await stopping
        assert code == 200
        assert body.startswith(b"GET /late")
        writer.close()

    run(scenario())


def test_graceful_stop_does_not_wait_long_for_a_client_that_never_sends() -> None:
    async def scenario() -> None:
        server = HttpServer(echo)
        _, port = await server.listen_tcp("127.0.0.1", 0)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await server.stop(30)
        assert loop.time() - started < 10  # the fresh-connection grace, not the 30 s
        writer.close()

    run(scenario())
