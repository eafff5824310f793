"""Listeners for the wire core: dispatch, limits, the deadline sweep, graceful stop.

``WireServer`` accepts connections on TCP and Unix sockets and hands each
one's requests, as ``http.wire.WireConnection``, to the tier's ``dispatch``.
It owns the clock that deadlines are set from and the sweep that acts on
them, and stops by refusing new connections, letting answers in progress
finish, then closing the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

from cloudseed.http.failures import HandlerFailures
from cloudseed.http.fairness import SourceLimits
from cloudseed.http.inherit import open_unix
from cloudseed.http.wire import Limits, WireConnection, text_refusal

# The sweep runs this fraction of the shortest timeout apart, so a timeout
# fires at most that much early or late; bounded so an idle server barely wakes.
SWEEP_FRACTION = 0.25
SWEEP_MIN_SECONDS = 0.05
SWEEP_MAX_SECONDS = 1.0
# On a graceful stop, how long a just-accepted connection may take to begin
# its first request.
FRESH_GRACE_SECONDS = 2.0

Dispatch = Callable[[WireConnection], None]
# (method, target, headers) → a ready (head, body) to refuse with before the
# body is read, or None to read it and dispatch.
Screen = Callable[[bytes, bytes, list[tuple[bytes, bytes]]], tuple[bytes, bytes] | None]
# (status, message, extra header lines) → the (head, body) a tier answers
# wire-level refusals with.
Refusal = Callable[[int, str, bytes], tuple[bytes, bytes]]


class WireServer:
    """Listeners sharing one ``dispatch``, limits, the deadline sweep and a graceful stop.

    ``wants_peer``: whether each connection asks the kernel for the client's
    address (the agent's peers are local processes, and do not need it).
    ``failures``: the tier's record of handler bugs (logged and counted).
    """

    def __init__(
        self,
        dispatch: Dispatch,
        limits: Limits | None = None,
        *,
        wants_peer: bool = False,
        failures: HandlerFailures | None = None,
        screen: Screen | None = None,
        refusal: Refusal = text_refusal,
    ) -> None:
        self.dispatch = dispatch
        self.screen = screen
        self.refusal = refusal
        self.limits = limits or Limits()
        self.failures = failures or HandlerFailures("")
        limits = self.limits
        # Per-source limits need the peer's address and count in the tier's registry.
        self.fairness: SourceLimits | None = None
        if wants_peer and (limits.max_connections_per_source or limits.max_requests_per_source):
            self.fairness = SourceLimits(limits, self.failures.tier, self.failures.registry)
        self.wants_peer = wants_peer
        self.connections: set[WireConnection] = set()
        self.stopping = False
        # The loop's clock as of the last sweep: deadlines are set from it,
        # so reading it costs nothing on the per-request path.
        self.now = 0.0
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        limits = self.limits
        shortest = min(limits.header_timeout_seconds, limits.body_timeout_seconds,
                       limits.keep_alive_timeout_seconds)
        self._sweep_seconds = min(SWEEP_MAX_SECONDS,
                                  max(SWEEP_MIN_SECONDS, shortest * SWEEP_FRACTION))

    def connection_factory(self) -> WireConnection:
        """A protocol for ``loop.create_server`` (the listeners below use it)."""
        return WireConnection(self)

    def start_sweeping(self) -> None:
        """Start the periodic deadline check (once; every connection calls this)."""
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self.now = loop.time()
            self._sweeper = loop.call_later(self._sweep_seconds, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = now = loop.time()
        for conn in list(self.connections):
            conn.expire(now)
        # An idle server does not wake: the next connection starts the sweep
        # again (the shared front holds thousands of mostly idle listeners).
        self._sweeper = (loop.call_later(self._sweep_seconds, self._sweep, loop)
                         if self.connections else None)

    async def listen_tcp(
        self,
        host: str,
        port: int,
        *,
        sock: socket.socket | None = None,
        backlog: int = 4096,
        tls: ssl.SSLContext | None = None,
    ) -> tuple[str, int]:
        """Listen on host:port (port 0 picks one), over TLS if given; returns the bound address."""
        loop = asyncio.get_running_loop()
        if sock is not None:
            server = await loop.create_server(
                self.connection_factory, sock=sock, backlog=backlog, ssl=tls
            )
        else:
            server = await loop.create_server(
                self.connection_factory, host, port, backlog=backlog, reuse_address=True,
                ssl=tls,
            )
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        return str(bound[0]), int(bound[1])

    async def listen_unix(
        self, path: str | Path, *, mode: int = 0o660, backlog: int = 4096,
        sock: socket.socket | None = None,
    ) -> None:
        """Serve on a Unix socket: ``sock`` if handed over, else bind ``path``.

        Binding never unlinks a live socket (``http.inherit.open_unix``).
        """
        if sock is None:
            sock = open_unix(path, mode=mode, backlog=backlog)
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(self.connection_factory, sock=sock,
                                               backlog=backlog)
        self._servers.append(server)

    def stop_listening(self) -> None:
        """Close the listening sockets now (``stop`` then drains the connections)."""
        self.stopping = True
        for server in self._servers:
            server.close()

    async def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish, then close everything."""
        self.stop_listening()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        # A connection accepted just before the stop gets a moment to send its
        # request (closing it unanswered would fail a request a restart must
        # not lose); an idle client cannot hold the stop longer than that.
        fresh_until = loop.time() + min(grace_seconds, FRESH_GRACE_SECONDS)
        while any(not c.quiet or (c.fresh and loop.time() < fresh_until)
                  for c in self.connections):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        for conn in list(self.connections):
            conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()


__all__ = ["Dispatch", "WireServer"]
