"""A lean HTTP/1.1 front end for the relaying tiers (the agent, the built-in proxy).

``http.server`` serves handlers that take a ``Request`` and return a
``Response``; a relay needs neither. Here a tier sees the request as the
bytes httptools delivered (method, target, lower-cased header names, values,
body), writes its request upstream itself, and answers with a ready header
block and body: no ``Request``/``Response`` values, no task, no per-request
timer handles, no decode/encode round trip of headers it merely passes on.

The wire rules are those of ``http.server`` and hold for every tier:
request-target size → 414, header count/size → 431, body size → 413, slow
headers or body → 408 and close, idle keep-alive → close, too many
connections → 503 and close, malformed (llhttp errors, which include
Content-Length with Transfer-Encoding and duplicate Content-Length) → 400 and
close, upgrades → 400. Pipelined requests are answered in arrival order.

Timeouts are deadlines checked by one sweep per server, a fraction of the
shortest timeout apart, instead of a timer armed and cancelled three times
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import typing
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path

import httptools

from cloudseed.http.server import Limits

# The sweep runs this fraction of the shortest timeout apart, so a deadline
# is noticed at most that late; bounded so an idle server barely wakes.
SWEEP_FRACTION = 0.25
SWEEP_MIN_SECONDS = 0.05
SWEEP_MAX_SECONDS = 1.0
_NEVER = float("inf")

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}
_KEEP_ALIVE_END = b"Connection: keep-alive\r\n\r\n"
_CLOSE_END = b"Connection: close\r\n\r\n"
_GET = b"GET"
_HEAD = b"HEAD"


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode()
        _STATUS_LINES[status] = line
    return line


def response_head(status: int, content_type: bytes, body_length: int, extra: bytes = b"") -> bytes:
    """Status line, Content-Type, Content-Length and ``extra`` (whole header lines).

    The same order as ``http.server.encode_response``; the front adds Connection.
    """
    return b"%sContent-Type: %s\r\nContent-Length: %d\r\n%s" % (
        status_line(status), content_type, body_length, extra)


def text_head(status: int, body: bytes, extra: bytes = b"") -> bytes:
    return response_head(status, b"text/plain; charset=utf-8", len(body), extra)


class _LimitError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class FrontConnection(asyncio.Protocol):
    """One downstream connection. The current request is in the public attributes.

    A tier's ``dispatch`` reads ``method``, ``target``, ``headers``, ``body``
    and ``peer``, and calls ``respond`` exactly once, now or later.
    """

    __slots__ = (
        "_body_bytes", "_body_parts", "_busy", "_closing", "_deadline", "_expires_mid_request",
        "_header_bytes", "_keep_alive", "_parser", "_peer_done", "_pending", "_server",
        "_transport", "body", "headers", "is_head", "method", "peer", "target",
    )

    def __init__(self, server: FrontServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bool]] | None
        self._pending = None
        self._busy = False
        self._closing = False
        self._peer_done = False
        self._deadline = _NEVER
        self._expires_mid_request = False
        self._keep_alive = True
        self._header_bytes = 0
        self._body_bytes = 0
        self._body_parts: list[bytes] = []
        self.peer = ""
        self.method = b""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.is_head = False

    # -- connection lifecycle -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses: cast, do not assert.
        transport = typing.cast(asyncio.Transport, transport)
        self._transport = transport
        server = self._server
        server.connections.add(self)
        if server.wants_peer:
            peername = transport.get_extra_info("peername")
            if isinstance(peername, tuple) and peername:
                self.peer = _unmap_ipv4(str(peername[0]))
        if len(server.connections) > server.limits.max_connections:
            self._fail(503, "too many connections; try again shortly")
            return
        self._deadline = server.now() + server.limits.header_timeout_seconds

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._closing = True

    def eof_received(self) -> bool:
        # A half-closed client still gets the answers it is owed.
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
            # httptools wraps exceptions raised in callbacks: recognise a
            # limit breach by its cause.
            limit = err if isinstance(err, _LimitError) else err.__context__
            if isinstance(limit, _LimitError):
                self._fail(limit.status, limit.message)
            else:
                self._fail(400, f"malformed HTTP request: {err}")

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self.target = b""
        self.headers = []
        self._header_bytes = 0
        self._body_bytes = 0
        self._body_parts = []
        self._expires_mid_request = True
        if not self._busy:
            self._deadline = self._server.now() + self._server.limits.header_timeout_seconds

    def on_url(self, url: bytes) -> None:
        self.target += url
        if len(self.target) > self._server.limits.max_target_bytes:
            raise _LimitError(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._server.limits
        self._header_bytes += len(name) + len(value)
        if len(self.headers) >= limits.max_headers or self._header_bytes > limits.max_header_bytes:
            raise _LimitError(431, "request headers too large")
        self.headers.append((name.lower(), value.strip()))

    def on_headers_complete(self) -> None:
        if not self._busy:
            self._deadline = self._server.now() + self._server.limits.body_timeout_seconds

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._server.limits.max_body_bytes:
            raise _LimitError(
                413, f"request body larger than {self._server.limits.max_body_bytes} bytes"
            )
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        method = parser.get_method()
        body = b"".join(self._body_parts) if self._body_parts else b""
        self._body_parts = []
        self._expires_mid_request = False
        keep_alive = parser.should_keep_alive()
        if self._busy:
            if self._pending is None:
                self._pending = deque()
            self._pending.append((method, self.target, self.headers, body, keep_alive))
            return
        self._start(method, self.target, self.headers, body, keep_alive)

    # -- dispatch -------------------------------------------------------------

    def _start(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self.method = method
        self.target = target
        self.headers = headers
        self.body = body
        self.is_head = method == _HEAD
        self._keep_alive = keep_alive
        self._busy = True
        self._deadline = _NEVER
        try:
            self._server.dispatch(self)
        except Exception:  # a tier bug must not kill the server
            if self._busy:
                body = b"internal error\n"
                self.respond(text_head(500, body), body, close=True)

    def respond(self, head: bytes, body: bytes, *, close: bool = False) -> None:
        """Answer the current request: ``head`` from ``response_head``, then ``body``.

        The body is left out for HEAD, 204 and 304; Content-Length in ``head``
        still describes the whole document.
        """
        if not self._busy:
            return
        self._busy = False
        transport = self._transport
        if transport is None or self._closing:
            return
        keep_alive = self._keep_alive and not close and not self._server.stopping
        end = _KEEP_ALIVE_END if keep_alive else _CLOSE_END
        if self.is_head or head.startswith((b"HTTP/1.1 204", b"HTTP/1.1 304")):
            transport.write(head + end)
        else:
            transport.write(b"".join((head, end, body)))
        if not keep_alive:
            self._close()
            return
        pending = self._pending
        if pending:
            self._start(*pending.popleft())
            return
        if self._peer_done:
            self._close()
        elif not self._expires_mid_request:
            self._deadline = self._server.now() + self._server.limits.keep_alive_timeout_seconds
        else:  # the next request's headers are arriving
            self._deadline = self._server.now() + self._server.limits.header_timeout_seconds

    # -- failure and timers ---------------------------------------------------

    def _fail(self, status: int, message: str) -> None:
        if self._transport is not None and not self._closing:
            body = (message + "\n").encode()
            self._transport.write(text_head(status, body) + _CLOSE_END + body)
        self._close()

    def _close(self) -> None:
        self._closing = True
        self._deadline = _NEVER
        if self._transport is not None:
            self._transport.close()

    def expire(self, now: float) -> None:
        """Called by the sweep: act on a passed deadline."""
        if self._deadline > now or self._busy or self._closing:
            return
        # Mid-request: tell the slow client why; idle keep-alive: just close.
        if self._expires_mid_request:
            self._fail(408, "request not received in time")
        else:
            self._close()

    @property
    def idle(self) -> bool:
        return not self._busy and not self._pending


def _unmap_ipv4(address: str) -> str:
    # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


Dispatch = Callable[[FrontConnection], None]


class FrontServer:
    """Listeners, limits, the deadline sweep and a graceful stop; ``dispatch`` is the tier's.

    ``wants_peer``: the proxy needs the guest's address; the agent's peers
    are local processes, and asking the kernel would cost a call per request.
    """

    def __init__(
        self, dispatch: Dispatch, limits: Limits | None = None, *, wants_peer: bool = False
    ) -> None:
        self.dispatch = dispatch
        self.wants_peer = wants_peer
        self.limits = limits or Limits()
        self.connections: set[FrontConnection] = set()
        self.stopping = False
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        shortest = min(self.limits.header_timeout_seconds, self.limits.body_timeout_seconds,
                       self.limits.keep_alive_timeout_seconds)
        self._sweep_seconds = min(SWEEP_MAX_SECONDS,
                                  max(SWEEP_MIN_SECONDS, shortest * SWEEP_FRACTION))

    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _factory(self) -> FrontConnection:
        return FrontConnection(self)

    def _started(self, server: asyncio.AbstractServer) -> None:
        self._servers.append(server)
        if self._sweeper is None:
            self._loop = asyncio.get_running_loop()
            self._sweeper = self._loop.call_later(self._sweep_seconds, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for conn in list(self.connections):
            if conn._deadline <= now:
                conn.expire(now)
        self._sweeper = self._loop.call_later(self._sweep_seconds, self._sweep)

    async def listen_tcp(
        self, host: str, port: int, *, sock: socket.socket | None = None, backlog: int = 4096
    ) -> tuple[str, int]:
        """Listen on host:port (port 0 picks one); returns the bound address."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        if sock is not None:
            server = await loop.create_server(self._factory, sock=sock, backlog=backlog)
        else:
            server = await loop.create_server(
                self._factory, host, port, backlog=backlog, reuse_address=True
            )
        self._started(server)
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
        self._loop = loop
        server = await loop.create_unix_server(self._factory, str(path), backlog=backlog)
        os.chmod(path, mode)
        self._started(server)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, then close everything."""
        self.stopping = True
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while any(not c.idle for c in self.connections):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn._close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()


__all__ = ["FrontConnection", "FrontServer", "response_head", "status_line", "text_head"]
