"""HTTP/1.1 on the wire for every cloudseed server: the one place its rules live.

A tier sees each request as httptools delivered it -- method, target,
lower-cased header names, values and body, all bytes -- on the
``WireConnection`` handed to its ``dispatch``, and answers once with
``respond(head, body)``: a ready header block (``http.encoding``) and the
body, now or later. The agent and the built-in proxy relay these bytes as
they are; ``http.server`` adapts them to ``Request``/``Response`` handlers.

The rules, the same for every tier: request-target size → 414, header
count/size → 431, body size → 413, slow headers or body → 408 and close, idle
keep-alive → close, too many connections → 503 and close, upgrades → 400; per source address
(``http.fairness``, when the tier asks): too many connections → 429 and
close, too many requests in flight → 429.
Malformed requests (llhttp errors, which include Content-Length together with
Transfer-Encoding and duplicate Content-Length -- the classic smuggling
shapes) get 400 and the connection is closed, because after a framing error
nothing later on the connection can be trusted. Pipelined requests are
answered in arrival order; a client that half-closes still gets the answers
it is owed.

Timeouts are deadlines: arming one is an attribute store, and one sweep per
server (``http.listeners``) acts on those that have passed, where a timer per
connection cost a heap insert and a cancel per phase of every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import typing
from collections import deque
from dataclasses import dataclass

import httptools

from cloudseed.http.encoding import frame, text_head
from cloudseed.http.fairness import RETRY_AFTER_SECONDS

if typing.TYPE_CHECKING:
    from cloudseed.http.listeners import WireServer


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
    # Per source address (``http.fairness``); 0 = off. Only for servers whose
    # peers are guests: behind an agent every request comes from one address.
    max_connections_per_source: int = 0
    max_requests_per_source: int = 0


# Requests a client may queue behind one still being answered before the
# connection stops reading: pipelining is legal, an unbounded queue is not.
MAX_QUEUED_REQUESTS = 64
# Header names are lower-cased once each, not once per request (and the
# adapters' own tables then find the same object); the table stops growing
# here because a hostile client can send endless junk.
MAX_MEMOISED_NAMES = 512
_LOWER_NAMES: dict[bytes, bytes] = {}
_NEVER = float("inf")
_HEAD = b"HEAD"
_RETRY_SOON = b"Retry-After: %d\r\n" % RETRY_AFTER_SECONDS

# method, target, headers, body, keep-alive, HTTP version
_Queued = tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes, bool, str]


Answer = tuple[bytes, bytes]  # a ready (head, body)


class _LimitError(Exception):
    def __init__(self, status: int, message: str, answer: Answer | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.answer = answer  # a tier's own (head, body), from its screen


class WireConnection(asyncio.Protocol):
    """One client connection. The request being answered is in the public attributes.

    A tier's ``dispatch`` reads ``method``, ``target``, ``headers``, ``body``
    and ``peer``, and calls ``respond`` exactly once, now or later; the
    attributes keep describing that request until it is answered.
    """

    __slots__ = (
        "_body_bytes", "_body_parts", "_busy", "_closing", "_counted", "_deadline", "_dispatching",
        "_fresh", "_header_bytes", "_headers", "_limits", "_mid_request", "_parser", "_paused",
        "_peer_done", "_pending", "_server", "_target", "_transport",
        "body", "headers", "http_version", "is_head", "keep_alive", "method", "peer", "target",
    )

    def __init__(self, server: WireServer) -> None:
        self._server = server
        self._limits = server.limits
        server.start_sweeping()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._pending: deque[_Queued] | None = None
        self._busy = False  # a request is dispatched and not yet answered
        self._dispatching = False  # inside the tier's dispatch call
        self._closing = False
        self._paused = False
        self._peer_done = False
        self._deadline = _NEVER
        self._mid_request = False  # part of a request has arrived
        self._fresh = True  # accepted, and no request has begun yet
        self._counted = False  # the request being answered counts against its source
        self._target = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._body_bytes = 0
        self._body_parts: list[bytes] | None = None
        self.peer = ""
        self.method = b""
        self.target = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.is_head = False
        self.keep_alive = True
        self.http_version = "1.1"

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
        fair = server.fairness
        if fair is not None:
            if not fair.admit(self):
                self._fail(429, "too many connections from your address; close some first",
                           _RETRY_SOON)
                return
            if len(server.connections) > self._limits.max_connections and (
                    not fair.make_room(self)):
                self._fail(503, "too many connections; try again shortly", _RETRY_SOON)
                return
        elif len(server.connections) > self._limits.max_connections:
            self._fail(503, "too many connections; try again shortly")
            return
        self._deadline = server.now + self._limits.header_timeout_seconds

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        server.connections.discard(self)
        if server.fairness is not None:
            server.fairness.release(self)
            if self._counted:
                self._counted = False
                server.fairness.end_request(self.peer)
        self._deadline = _NEVER
        self._transport = None
        self._closing = True

    def eof_received(self) -> bool:
        # The client half-closed (shutdown(SHUT_WR)) after its requests: keep
        # the transport open so answers still being computed reach it, and
        # close once nothing is left to answer.
        self._peer_done = True
        if self.idle:
            self.close()
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
                self._fail(limit.status, limit.message, answer=limit.answer)
            else:
                self._fail(400, f"malformed HTTP request: {err}")

    # -- httptools callbacks --------------------------------------------------

    def on_message_begin(self) -> None:
        self._fresh = False
        self._target = b""
        self._headers = []
        self._header_bytes = 0
        self._body_bytes = 0
        self._mid_request = True
        if not self._busy:
            self._deadline = self._server.now + self._limits.header_timeout_seconds

    def on_url(self, url: bytes) -> None:
        self._target += url
        if len(self._target) > self._limits.max_target_bytes:
            raise _LimitError(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        limits = self._limits
        self._header_bytes += len(name) + len(value)
        if len(self._headers) >= limits.max_headers or self._header_bytes > limits.max_header_bytes:
            raise _LimitError(431, "request headers too large")
        lower = _LOWER_NAMES.get(name)
        if lower is None:
            lower = name.lower()
            if len(_LOWER_NAMES) < MAX_MEMOISED_NAMES:
                _LOWER_NAMES[name] = lower
        self._headers.append((lower, value.strip()))

    def on_headers_complete(self) -> None:
        if not self._busy:
            self._deadline = self._server.now + self._limits.body_timeout_seconds
        # Refuse before reading a body byte: a declared size over the limit,
        # or whatever the tier's screen refuses from the head (a bad token).
        declared = _declared_length(self._headers)
        if declared > self._limits.max_body_bytes:
            raise _LimitError(413, f"request body larger than {self._limits.max_body_bytes} bytes")
        screen = self._server.screen
        if screen is not None:
            answer = screen(self._parser.get_method(), self._target, self._headers)
            if answer is not None:
                raise _LimitError(0, "refused by the screen", answer)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self._limits.max_body_bytes:
            raise _LimitError(413, f"request body larger than {self._limits.max_body_bytes} bytes")
        if self._body_parts is None:
            self._body_parts = []
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        parts = self._body_parts
        body = b"".join(parts) if parts else b""
        self._body_parts = None
        self._mid_request = False
        request = (parser.get_method(), self._target, self._headers, body,
                   parser.should_keep_alive(), parser.get_http_version())
        if self._busy or self._pending:
            if self._pending is None:
                self._pending = deque()
            self._pending.append(request)
            pending = len(self._pending)
            if pending >= MAX_QUEUED_REQUESTS and not self._paused and self._transport is not None:
                self._paused = True
                self._transport.pause_reading()
            return
        self._start(request)
        if not self._busy and not self._closing:
            self._answered_all()

    # -- dispatch -------------------------------------------------------------

    def _start(self, request: _Queued) -> None:
        (self.method, self.target, self.headers, self.body, self.keep_alive,
         self.http_version) = request
        self.is_head = self.method == _HEAD
        self._busy = True
        self._deadline = _NEVER
        fair = self._server.fairness
        if fair is not None:
            if not fair.start_request(self.peer):
                body = b"too many requests in flight from your address\n"
                # As if answered inside dispatch: our caller moves on to the queue.
                self._dispatching = True
                self.respond(text_head(429, body, _RETRY_SOON), body)
                self._dispatching = False
                return
            self._counted = True
        self._dispatching = True
        try:
            self._server.dispatch(self)
        except Exception as exc:  # a tier bug must not kill the server, nor go unseen
            self._server.failures.record(exc, self.method, self.target)
            if self._busy:
                body = b"internal error\n"
                self.respond(text_head(500, body), body, close=True)
        finally:
            self._dispatching = False

    def respond(self, head: bytes, body: bytes, *, close: bool = False) -> None:
        """Answer the current request: ``head`` from ``http.encoding``, then ``body``.

        The body is left out for HEAD, 204 and 304 (see ``encoding.frame``).
        """
        if not self._busy:
            return
        self._busy = False
        if self._counted:
            self._counted = False
            self._server.fairness.end_request(self.peer)  # type: ignore[union-attr]
        transport = self._transport
        if transport is None or self._closing:
            return
        keep_alive = self.keep_alive and not close and not self._server.stopping
        transport.write(frame(head, body, keep_alive=keep_alive, head_only=self.is_head))
        if not keep_alive:
            self.close()
        elif not self._dispatching:
            # An answer that came later: queued requests go now. (An answer
            # given inside dispatch returns there, and its caller goes on,
            # so a long pipeline is a loop, not a recursion.)
            self._serve_queued()

    def _serve_queued(self) -> None:
        pending = self._pending
        while pending and not self._busy and not self._closing:
            self._start(pending.popleft())
        if self._busy or self._closing:
            return
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        self._answered_all()

    def _answered_all(self) -> None:
        if self._peer_done:
            self.close()
        elif self._mid_request:  # the next request's headers are arriving
            self._deadline = self._server.now + self._limits.header_timeout_seconds
        else:
            self._deadline = self._server.now + self._limits.keep_alive_timeout_seconds

    # -- failure and timeouts -------------------------------------------------

    def _fail(
        self, status: int, message: str, extra: bytes = b"", answer: Answer | None = None
    ) -> None:
        if self._transport is not None and not self._closing:
            head, body = answer or self._server.refusal(status, message, extra)
            self._transport.write(frame(head, body, keep_alive=False, head_only=False))
        self.close()

    def close(self) -> None:
        self._closing = True
        self._deadline = _NEVER
        if self._transport is not None:
            self._transport.close()

    def expire(self, now: float) -> None:
        """Called by the server's sweep: act on a deadline that has passed."""
        if self._deadline > now or self._busy or self._closing:
            return
        # Mid-request: tell the slow client why; idle keep-alive: just close.
        if self._mid_request:
            if self._server.fairness is not None:
                self._server.fairness.timed_out()
            self._fail(408, "request not received in time")
        else:
            self.close()

    def limit_hops(self, hops: int) -> None:
        """Give this connection's packets from now on an IP TTL / IPv6 hop limit of ``hops``.

        Set before the reply is written and never restored: a TCP
        retransmission of the reply would otherwise leave with the default TTL
        and reach the client the limit is meant to stop. Later replies on the
        connection go to the same peer, which the limit already reaches.
        """
        sock = None if self._transport is None else self._transport.get_extra_info("socket")
        if sock is None:
            return
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, hops)
            # An IPv4 client on a dual-stack socket: Linux takes IP_TTL there too.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)
        elif sock.family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, hops)

    @property
    def idle(self) -> bool:
        return not self._busy and not self._pending

    @property
    def quiet(self) -> bool:
        """Idle with no request half-received: a graceful stop may close it."""
        return self.idle and not self._mid_request

    @property
    def fresh(self) -> bool:
        """Accepted, and its first request has not begun: a client that connected
        just before a graceful stop is about to send it."""
        return self._fresh


def _declared_length(headers: list[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else 0  # llhttp refuses malformed ones
    return 0


def text_refusal(status: int, message: str, extra: bytes = b"") -> tuple[bytes, bytes]:
    """The default answer to a request the wire refuses: a short text body.

    ``extra``: ready header lines (``Retry-After``) for the head.
    """
    body = (message + "\n").encode()
    return text_head(status, body, extra), body


def _unmap_ipv4(address: str) -> str:
    # An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


__all__ = ["Limits", "WireConnection", "text_refusal"]
