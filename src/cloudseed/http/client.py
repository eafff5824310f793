"""An asyncio HTTP/1.1 client with a keep-alive pool, for one upstream.

The agent uses it to reach the metadata API (TCP, optionally TLS, or a Unix
socket) and the proxy to reach the agent's Unix socket. Each hop keeps warm
connections to the next, so a request costs one write and one read, never a
connect.

Failures become domain errors the caller maps with ``http.status``:
cannot connect (refused, no socket file, connect timeout, TLS failure) or the
peer hung up → ``UpstreamUnavailable``; no whole response within the read
timeout → ``UpstreamTimeout``. A connection that timed out is closed, never
reused: a late answer would be read as the reply to the next request.

A GET or HEAD that got *no byte* back before its connection closed is sent
again, once, on a fresh connection: that covers the idle-close race every
pooled client meets and a server that died mid-request (its replacement
accepts from the same inherited socket). A POST is never re-sent: the dead
server may have applied it (a guest's password), and applying it twice is
worse than one honest 502.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import typing
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import httptools

from cloudseed.errors import ConfigError, UpstreamTimeout, UpstreamUnavailable
from cloudseed.http.tls import tls_context

# Metadata documents are small; user-data is at most 64 KiB, vendor data a
# few KiB. 8 MiB refuses a runaway upstream long before memory is at risk.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# Idle connections kept per upstream: enough for a boot storm's concurrency
# on one host without holding hundreds of sockets in quiet times.
MAX_IDLE_CONNECTIONS = 64
# Drop idle connections before the peer's keep-alive timeout (30 s in our
# server, haproxy's timeout_http_keep_alive) would close them under us.
IDLE_SECONDS = 20.0
# The read-timeout sweep runs this fraction of the timeout apart, so a
# timeout is noticed at most a quarter late.
SWEEP_FRACTION = 0.25
SWEEP_MIN_SECONDS = 0.01
SWEEP_MAX_SECONDS = 1.0
# Requests safe to send twice (RFC 9110 §9.2.2) that we re-send once.
RETRY_SAFE = (b"GET ", b"HEAD ")


@dataclass(frozen=True)
class Upstream:
    """Where to connect: ``http://host:port``, ``https://host:port`` or ``unix:/path``."""

    scheme: str
    host: str = ""
    port: int = 0
    socket_path: str = ""

    @classmethod
    def parse(cls, url: str) -> Upstream:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == "unix":
            path = parsed.path or parsed.netloc
            if not path.startswith("/"):
                raise ConfigError(f"{url!r}: a Unix socket URL is unix:/absolute/path")
            return cls("unix", socket_path=path)
        if parsed.scheme in {"http", "https"} and parsed.hostname:
            default = 443 if parsed.scheme == "https" else 80
            try:
                port = parsed.port or default
            except ValueError:
                raise ConfigError(f"{url!r}: the port is not a number") from None
            return cls(parsed.scheme, host=parsed.hostname, port=port)
        raise ConfigError(
            f"{url!r} is not an upstream URL; use http://HOST:PORT, https://HOST:PORT "
            "or unix:/path/to/socket"
        )

    @property
    def host_header(self) -> str:
        if self.scheme == "unix":
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix:{self.socket_path}"
        return f"{self.scheme}://{self.host_header}"


@dataclass(slots=True)
class UpstreamResponse:
    status: int
    # Names lower-cased, values stripped, both as the bytes that arrived, in
    # arrival order. Relays re-emit them without a decode/encode round trip.
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    @property
    def headers(self) -> list[tuple[str, str]]:
        """The headers as text (names lower-case), in arrival order."""
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.raw_headers]

    def header(self, name: str) -> str | None:
        wanted = name.encode("latin-1")
        for key, value in self.raw_headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


# What an exchange ends with: the response, or the domain error that ended it.
Outcome = UpstreamResponse | UpstreamUnavailable | UpstreamTimeout
DoneCallback = Callable[[Outcome], None]


class _PeerClosed(Exception):
    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection closed by the upstream")
        self.got_bytes = got_bytes


class _Connection(asyncio.Protocol):
    """One upstream connection; at most one request in flight.

    The exchange completes through a callback, not a future: a relay hands
    the response on from inside ``data_received``, with no task, future or
    extra trip round the event loop per request.
    """

    __slots__ = (
        "_body",
        "_done",
        "_got_bytes",
        "_head",
        "_headers",
        "_loop",
        "_may_retry",
        "_parser",
        "_payload",
        "_pool",
        "_size",
        "_timeout",
        "closed",
        "deadline",
        "idle_since",
        "transport",
    )

    def __init__(self, pool: HttpClient) -> None:
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._done: DoneCallback | None = None
        self._timeout = 0.0
        self.deadline = 0.0
        self._payload = b""
        self._may_retry = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self._got_bytes = False
        self._head = False

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop transports are not asyncio.Transport subclasses: cast, do not assert.
        self.transport = typing.cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.transport = None
        if self._done is not None:
            if self._may_retry and not self._got_bytes:
                # An idempotent request with no answer yet: the server closed
                # an idle connection under us, or died. Once more, on a fresh one.
                timeout = self._timeout
                done, payload, head = self._finish()
                self._pool._retry(payload, head, done, timeout)
            else:
                self._fail(UpstreamUnavailable(f"{self._pool.upstream} closed the connection"))

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._done is None:
            self.close()  # unsolicited bytes: the stream cannot be trusted
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.close()
            self._fail(UpstreamUnavailable(f"malformed response from upstream: {err}"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._size += len(name) + len(value)
        self._headers.append((name.lower(), value.strip()))

    def on_headers_complete(self) -> None:
        if self._head:
            # httptools cannot be told that a HEAD reply has no body; finish
            # here and retire the connection rather than misparse the next reply.
            self._complete(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            raise httptools.HttpParserError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._head:
            self._complete(keep_alive=self._parser.should_keep_alive())

    # client side

    def send(
        self, payload: bytes, head: bool, done: DoneCallback, timeout: float, *,
        may_retry: bool,
    ) -> None:
        assert self.transport is not None
        self._done = done
        self._payload = payload
        self._may_retry = may_retry
        self._headers = []
        self._body = []
        self._size = 0
        self._got_bytes = False
        self._head = head
        self._timeout = timeout
        self.deadline = self._loop.time() + timeout
        self._pool._track(self)
        self.transport.write(payload)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _finish(self) -> tuple[DoneCallback, bytes, bool]:
        done = self._done
        assert done is not None
        self._done = None
        self._pool._busy.discard(self)
        payload, self._payload = self._payload, b""
        return done, payload, self._head

    def _complete(self, *, keep_alive: bool) -> None:
        if self._done is None:
            return
        response = UpstreamResponse(
            self._parser.get_status_code(), self._headers, b"".join(self._body)
        )
        self._body = []
        done, _, _ = self._finish()
        if keep_alive and not self.closed:
            self.idle_since = time.monotonic()
            self._pool._release(self)
        else:
            self.close()
        done(response)

    def _fail(self, error: UpstreamUnavailable | UpstreamTimeout) -> None:
        if self._done is None:
            return
        done, _, _ = self._finish()
        done(error)

    def time_out(self) -> None:
        """Called by the pool's sweep once ``deadline`` has passed."""
        if self._done is None:
            return
        timeout = self._timeout
        # A late answer would be read as the reply to the next request.
        self.close()
        self._fail(UpstreamTimeout(f"{self._pool.upstream} did not answer within {timeout:g} s"))


class HttpClient:
    """Requests to one upstream over a pool of keep-alive connections."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_seconds: float = 2.0,
        read_timeout_seconds: float = 10.0,
        tls: ssl.SSLContext | None = None,
        max_idle: int = MAX_IDLE_CONNECTIONS,
    ) -> None:
        self.upstream = Upstream.parse(url)
        self.connect_timeout_seconds = connect_timeout_seconds
        self.read_timeout_seconds = read_timeout_seconds
        if self.upstream.scheme == "https" and tls is None:
            tls = tls_context()
        self._tls = tls if self.upstream.scheme == "https" else None
        self._max_idle = max_idle
        self._idle: deque[_Connection] = deque()
        self._busy: set[_Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None  # bound on first use
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_seconds = min(SWEEP_MAX_SECONDS, max(SWEEP_MIN_SECONDS,
                                                         read_timeout_seconds * SWEEP_FRACTION))
        self.host_line = f"Host: {self.upstream.host_header}\r\n".encode("latin-1")

    async def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        read_timeout_seconds: float | None = None,
    ) -> UpstreamResponse:
        """Send one request and read the whole response.

        ``target`` is the path with its query. ``headers`` must not include
        Host, Content-Length, Connection or Transfer-Encoding: the client owns
        the framing.
        """
        payload = self._encode(method, target, headers or [], body)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()

        def done(outcome: Outcome) -> None:
            if not future.done():
                future.set_result(outcome)

        self.send(payload, done, head=method == "HEAD", read_timeout_seconds=read_timeout_seconds)
        outcome = await future
        if isinstance(outcome, UpstreamResponse):
            return outcome
        raise outcome

    def send(
        self,
        payload: bytes,
        done: DoneCallback,
        *,
        head: bool = False,
        read_timeout_seconds: float | None = None,
    ) -> None:
        """Send an encoded request; ``done`` gets the response or the error, exactly once.

        On a warm pool this writes at once and ``done`` runs from the
        connection's own callback. ``payload`` is a whole HTTP/1.1 request
        whose framing the caller owns (see ``request_head``).
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        timeout = read_timeout_seconds
        if timeout is None:
            timeout = self.read_timeout_seconds
        elif timeout * SWEEP_FRACTION < self._sweep_seconds:
            self._sweep_seconds = max(SWEEP_MIN_SECONDS, timeout * SWEEP_FRACTION)
        conn = self._take_idle()
        if conn is not None:
            conn.send(payload, head, done, timeout, may_retry=payload.startswith(RETRY_SAFE))
            return
        self._spawn(self._connect_and_send(payload, head, done, timeout))

    def request_head(self, method: bytes, target: bytes) -> bytes:
        """The request line and Host header, for callers that encode their own requests."""
        return b"%s %s HTTP/1.1\r\n%s" % (method, target, self.host_line)

    async def close(self) -> None:
        for conn in [*self._idle, *self._busy]:
            conn.close()
        self._idle.clear()
        for task in list(self._connecting):
            task.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        # Let the transports run their close callbacks (no fd left behind).
        await asyncio.sleep(0)

    @property
    def idle_connections(self) -> int:
        return len(self._idle)

    # internals

    def _spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    def _track(self, conn: _Connection) -> None:
        # Read timeouts are deadlines checked by one sweep while anything is
        # in flight, not a timer armed and cancelled per request.
        self._busy.add(conn)
        if self._sweeper is None and self._loop is not None:
            self._sweeper = self._loop.call_later(self._sweep_seconds, self._sweep)

    def _sweep(self) -> None:
        assert self._loop is not None
        now = self._loop.time()
        for conn in [c for c in self._busy if c.deadline <= now]:
            conn.time_out()
        self._sweeper = (
            self._loop.call_later(self._sweep_seconds, self._sweep) if self._busy else None
        )

    def _retry(self, payload: bytes, head: bool, done: DoneCallback, timeout: float) -> None:
        self._spawn(self._connect_and_send(payload, head, done, timeout, retry=True))

    async def _connect_and_send(
        self, payload: bytes, head: bool, done: DoneCallback, timeout: float, *,
        retry: bool = False,
    ) -> None:
        try:
            conn = await self._connect()
        except UpstreamUnavailable as exc:
            done(exc)
            return
        except asyncio.CancelledError:
            done(UpstreamUnavailable(f"{self.upstream}: the client is closing"))
            raise
        if conn.closed or conn.transport is None:
            done(UpstreamUnavailable(f"{self.upstream} closed the connection"))
            return
        conn.send(payload, head, done, timeout,
                  may_retry=not retry and payload.startswith(RETRY_SAFE))

    def _take_idle(self) -> _Connection | None:
        idle = self._idle
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # most recently used: the warmest
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        if len(self._idle) >= self._max_idle:
            conn.close()
            return
        self._idle.append(conn)

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        upstream = self.upstream
        try:
            async with asyncio.timeout(self.connect_timeout_seconds):
                if upstream.scheme == "unix":
                    _, conn = await loop.create_unix_connection(
                        lambda: _Connection(self), upstream.socket_path
                    )
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(self),
                        upstream.host,
                        upstream.port,
                        ssl=self._tls,
                        server_hostname=upstream.host if self._tls else None,
                    )
        except TimeoutError:
            raise UpstreamUnavailable(
                f"cannot connect to {upstream} within {self.connect_timeout_seconds:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamUnavailable(f"TLS with {upstream} failed: {exc.reason}") from None
        except OSError as exc:
            raise UpstreamUnavailable(
                f"cannot connect to {upstream}: {exc.strerror or exc}"
            ) from None
        return conn

    def _encode(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes
    ) -> bytes:
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.upstream.host_header}"]
        for name, value in headers:
            # Values come from parsed requests, which cannot hold CR or LF; the
            # check keeps any future caller from injecting a header.
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                continue
            lines.append(f"{name}: {value}")
        if body or method in {"POST", "PUT", "PATCH"}:
            lines.append(f"Content-Length: {len(body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("latin-1") + body


async def close_quietly(client: HttpClient) -> None:
    with contextlib.suppress(Exception):
        await client.close()


__all__ = [
    "DoneCallback", "HttpClient", "Outcome", "Upstream", "UpstreamResponse", "close_quietly",
    "tls_context",
]
