"""A small HTTP/1.1 server on asyncio + httptools, shared by every tier.

It owns the wire: parsing, keep-alive, pipelining order, and the limits that
keep an untrusted client from holding memory or connections (request-target
size → 414, header count/size → 431, body size → 413, slow headers or body →
408 and close, too many connections → 503 and close). Handlers see whole
``Request`` values and return ``Response`` values, synchronously (the fast
path: no task per request) or as awaitables.

Malformed requests (httptools/llhttp errors, which include Content-Length
together with Transfer-Encoding and duplicate Content-Length — the classic
smuggling shapes) get 400 and the connection is closed, because after a
framing error nothing later on the connection can be trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import socket
import stat
import typing
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import httptools

from cloudseed.http.message import Handler, Request, Response


@dataclass(frozen=True)
class Limits:
    # A metadata path is short; 8 KiB leaves room for long query strings
    # while refusing junk early (414).
    max_target_bytes: int = 8192
    # cloud-init sends < 10 headers; 64 is generous for any client (431).
    max_headers: int = 64
    max_header_bytes: int = 16384
    # The largest legitimate guest body is a 1020-byte password POST; control
    # API servers raise this for imports.
    max_body_bytes: int = 65536
    # A client gets this long to send its whole header block (slow-loris guard).
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 10.0
    keep_alive_timeout_seconds: float = 30.0
    max_connections: int = 4096


_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}
_KEEP_ALIVE = b"Connection: keep-alive\r\n\r\n"
_CLOSE = b"Connection: close\r\n\r\n"
_NO_BODY_STATUSES = (204, 304)
# Header names and methods are decoded once each, not once per request; the
# tables stop growing here because a hostile client can send endless junk.
MAX_MEMOISED_NAMES = 512
_HEADER_NAMES: dict[bytes, str] = {}
_METHODS: dict[bytes, str] = {}
# How often the server looks for connections past their deadline: a quarter of
# the shortest timeout, so a timeout fires at most this much early or late,
# bounded because one sweep a second is plenty for timeouts of seconds.
MIN_SWEEP_SECONDS = 0.01
MAX_SWEEP_SECONDS = 1.0
_NEVER = float("inf")


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        _STATUS_LINES[status] = line
    return line


def _encode_head(response: Response) -> bytes:
    parts = [
        _status_line(response.status),
        b"Content-Type: ",
        response.content_type.encode("latin-1"),
        b"\r\nContent-Length: ",
        str(len(response.body)).encode(),
        b"\r\n",
    ]
    for name, value in response.headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    return b"".join(parts)


@dataclass(slots=True)
class PreparedResponse(Response):
    """A response whose head -- the status line and every header except
    ``Connection`` -- is encoded once, for answers sent over and over (the
    metadata API's documents). Build it with ``prepare_response``."""

    head: bytes = b""

    def with_body(self, body: bytes) -> PreparedResponse:
        """The same answer with another body; the head is reused when the
        length is the same (the random seed of ``meta_data.json``)."""
        if len(body) != len(self.body):
            return prepare_response(
                Response(self.status, body, self.headers, self.content_type, self.close)
            )
        return PreparedResponse(
            self.status, body, self.headers, self.content_type, self.close, self.head
        )


def prepare_response(response: Response) -> PreparedResponse:
    return PreparedResponse(
        response.status,
        response.body,
        response.headers,
        response.content_type,
        response.close,
        _encode_head(response),
    )


def encode_response(response: Response, *, head: bool = False, keep_alive: bool = True) -> bytes:
    """Serialise a response. ``head`` keeps Content-Length but drops the body."""
    prefix = response.head if type(response) is PreparedResponse else _encode_head(response)
    connection = _KEEP_ALIVE if keep_alive else _CLOSE
    if head or response.status in _NO_BODY_STATUSES:
        return prefix + connection
    return b"".join((prefix, connection, response.body))


def _plain(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode(), close=True)


def _header_name(raw: bytes) -> str:
    name = raw.decode("latin-1").lower()
    if len(_HEADER_NAMES) < MAX_MEMOISED_NAMES:
        _HEADER_NAMES[raw] = name
    return name


def _method(raw: bytes) -> str:
    method = _METHODS.get(raw)
    if method is None:
        method = raw.decode("latin-1")
        if len(_METHODS) < MAX_MEMOISED_NAMES:
            _METHODS[raw] = method
    return method


class HttpProtocol(asyncio.Protocol):
    """One connection. Requests are answered strictly in arrival order.

    Timeouts are deadlines that the server's periodic sweep checks (see
    ``HttpServer``), not a timer per connection: arming one is an attribute
    store, where ``call_later`` cost a heap insert and a cancel per phase of
    every request.
    """

    __slots__ = (
        "_body",
        "_body_bytes",
        "_closing",
        "_deadline",
        "_header_bytes",
        "_headers",
        "_in_flight",
        "_limits",
        "_loop",
        "_parser",
        "_peer_done",
        "_pending",
        "_server",
        "_target",
        "_transport",
        "peer",
    )

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = asyncio.get_running_loop()
        server.start_sweeping(self._loop)
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[Request] | None = None
        self._in_flight = False
        self._closing = False
        self._peer_done = False
        self._deadline = _NEVER
        self.peer = ""
        self._reset_message()

    # -- connection lifecycle -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses: cast, do not assert.
        transport = typing.cast(asyncio.Transport, transport)
        self._transport = transport
        server = self._server
        server.connections.add(self)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and peername:
            self.peer = _unmap_ipv4(str(peername[0]))
        if len(server.connections) > self._limits.max_connections:
            self._fail(503, "too many connections; try again shortly")
            return
        self._deadline = server.now + self._limits.header_timeout_seconds

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._deadline = _NEVER
        self._transport = None
        self._closing = True

    def eof_received(self) -> bool:
        # The client half-closed (shutdown(SHUT_WR)) after its request: keep
        # the transport open so answers still being computed reach it, and
        # close once nothing is left to answer.
        self._peer_done = True
        if self.idle:
            self._close()
        return True

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrades are not supported")
        except (httptools.HttpParserError, _LimitError) as err:
            # httptools wraps exceptions raised in callbacks, so a limit
            # breach is recognised by its cause, not by the caught type.
            limit = err if isinstance(err, _LimitError) else err.__context__
            if isinstance(limit, _LimitError):
                self._fail(limit.status, limit.message)
            else:
                self._fail(400, f"malformed HTTP request: {err}")

    # -- httptools callbacks --------------------------------------------------

    def _reset_message(self) -> None:
        self._target = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body: list[bytes] | None = None
        self._body_bytes = 0

    def on_message_begin(self) -> None:
        self._deadline = self._server.now + self._limits.header_timeout_seconds

    def on_url(self, url: bytes) -> None:
        target = self._target + url if self._target else url
        self._target = target
        if len(target) > self._limits.max_target_bytes:
            raise _LimitError(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        headers = self._headers
        self._header_bytes += len(name) + len(value)
        if len(headers) >= limits.max_headers or self._header_bytes > limits.max_header_bytes:
            raise _LimitError(431, "request headers too large")
        key = _HEADER_NAMES.get(name)
        headers.append((key or _header_name(name), value.decode("latin-1").strip()))

    def on_headers_complete(self) -> None:
        self._deadline = self._server.now + self._limits.body_timeout_seconds

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise _LimitError(413, f"request body larger than {self._limits.max_body_bytes} bytes")
        if self._body is None:
            self._body = []
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        path, _, query = self._target.partition(b"?")
        body = self._body
        request = Request(
            _method(parser.get_method()),
            path.decode("latin-1"),
            query.decode("latin-1"),
            self._headers,
            b"".join(body) if body else b"",
            self.peer,
            parser.get_http_version(),
            parser.should_keep_alive(),
        )
        self._reset_message()
        self._deadline = _NEVER
        if self._in_flight or self._pending:
            if self._pending is None:
                self._pending = deque()
            self._pending.append(request)
            return
        self._answer(request)
        if not self._in_flight:
            self._after_answers()

    # -- dispatch -------------------------------------------------------------

    def _answer(self, request: Request) -> None:
        """Answer one request now, or start answering it (``_in_flight``)."""
        server = self._server
        try:
            result = server.handler(request)
        except Exception as exc:  # a handler bug must not kill the server
            result = server.on_handler_error(request, exc)
        if isinstance(result, Response):
            self._send(request, result)
        elif inspect.isawaitable(result):
            self._in_flight = True
            self._loop.create_task(self._finish_async(request, result))
        else:
            self._send(request, result)

    def _after_answers(self) -> None:
        if self._closing:
            return
        if self._peer_done:
            self._close()
        else:
            self._deadline = self._server.now + self._limits.keep_alive_timeout_seconds

    def _drain(self) -> None:
        pending = self._pending
        while pending and not self._closing and not self._in_flight:
            self._answer(pending.popleft())
        if not self._in_flight:
            self._after_answers()

    async def _finish_async(self, request: Request, pending: Awaitable[Response]) -> None:
        try:
            response = await pending
        except Exception as exc:
            response = self._server.on_handler_error(request, exc)
        self._in_flight = False
        self._send(request, response)
        self._drain()

    def _send(self, request: Request, response: Response) -> None:
        transport = self._transport
        if transport is None or self._closing:
            return
        keep_alive = request.keep_alive and not response.close and not self._server.stopping
        transport.write(
            encode_response(response, head=request.method == "HEAD", keep_alive=keep_alive)
        )
        if not keep_alive:
            self._close()

    # -- failure and timeouts -------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None and not self._closing:
            self._transport.write(encode_response(_plain(status, message), keep_alive=False))
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._deadline = _NEVER
        if self._transport is not None:
            self._transport.close()

    def check_deadline(self, now: float) -> None:
        """Called by the server's sweep: act on a deadline that has passed."""
        if self._deadline > now:
            return
        self._deadline = _NEVER
        if self._in_flight or self._pending:
            return
        # Mid-request: tell the slow client why; idle keep-alive: just close.
        if self._target or self._headers or self._body_bytes:
            self._fail(408, "request not received in time")
        else:
            self._close()

    @property
    def idle(self) -> bool:
        return not self._in_flight and not self._pending


class _LimitError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _unmap_ipv4(address: str) -> str:
    # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


ErrorHook = Callable[[Request, Exception], Response]


def _default_error_hook(request: Request, exc: Exception) -> Response:
    return Response(500, b"internal error\n", close=True)


class HttpServer:
    """Listeners sharing one handler, limits and a graceful stop."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits | None = None,
        on_handler_error: ErrorHook = _default_error_hook,
    ) -> None:
        self.handler = handler
        self.limits = limits or Limits()
        self.on_handler_error = on_handler_error
        self.connections: set[HttpProtocol] = set()
        self.stopping = False
        self._servers: list[asyncio.Server] = []
        # The loop's clock as of the last sweep: deadlines are set from it,
        # so reading it costs nothing on the per-request path.
        self.now = 0.0
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_seconds = min(
            MAX_SWEEP_SECONDS,
            max(
                MIN_SWEEP_SECONDS,
                min(
                    self.limits.header_timeout_seconds,
                    self.limits.body_timeout_seconds,
                    self.limits.keep_alive_timeout_seconds,
                )
                / 4,
            ),
        )

    def start_sweeping(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the periodic deadline check (once; every connection calls this)."""
        if self._sweeper is None:
            self.now = loop.time()
            self._sweeper = loop.call_later(self._sweep_seconds, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = now = loop.time()
        for connection in list(self.connections):
            connection.check_deadline(now)
        self._sweeper = loop.call_later(self._sweep_seconds, self._sweep, loop)

    def _factory(self) -> HttpProtocol:
        return HttpProtocol(self)

    async def listen_tcp(
        self, host: str, port: int, *, sock: socket.socket | None = None, backlog: int = 4096
    ) -> tuple[str, int]:
        """Listen on host:port (port 0 picks one); returns the bound address."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(self._factory, sock=sock, backlog=backlog)
        else:
            server = await loop.create_server(
                self._factory, host, port, backlog=backlog, reuse_address=True
            )
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def listen_unix(
        self, path: str | Path, *, mode: int = 0o660, backlog: int = 4096
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.stat().st_mode):
                path.unlink()
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self._factory, str(path), backlog=backlog)
        os.chmod(path, mode)
        self._servers.append(server)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, then close everything."""
        self.stopping = True
        for server in self._servers:
            server.close()
        deadline = asyncio.get_running_loop().time() + grace_seconds
        while any(not c.idle for c in self.connections):
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn._close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def install_uvloop() -> None:
    """Use uvloop when available: it roughly doubles small-request throughput."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


__all__ = [
    "HttpServer",
    "Limits",
    "PreparedResponse",
    "encode_response",
    "install_uvloop",
    "prepare_response",
]
