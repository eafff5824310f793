"""The built-in namespace proxy: guest → (header hygiene) → agent's Unix socket.

One process serves one router or network, on one or more listeners
(``Relay``); the shared front (``proxy.front``) serves every namespace from
one process with the same ``RelayCore``. For each
request it removes every identity header the guest sent (``proxy.hygiene``),
sets ``X-Forwarded-For`` to the peer address and its own
``X-Neutron-Router-ID`` or ``X-Neutron-Network-ID``, and forwards over a
keep-alive pool to the agent. The HTTP core bounds what a guest can send
(414/431/413/408, malformed → 400 and close); the agent down is a 502 at
once, and the next request after it returns is served again.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cloudseed.errors import ConfigError, UpstreamTimeout
from cloudseed.http.client import HttpClient, Outcome, UpstreamResponse
from cloudseed.http.encoding import response_head, text_head
from cloudseed.http.failures import HandlerFailures
from cloudseed.http.health import status_handler
from cloudseed.http.inherit import take
from cloudseed.http.listeners import WireServer
from cloudseed.http.metrics import Registry
from cloudseed.http.server import HttpServer
from cloudseed.http.wire import Limits, WireConnection
from cloudseed.log import get_logger
from cloudseed.proxy.hygiene import guest_headers, header_lines, relayed_response_lines
from cloudseed.proxy.listen import ListenAddress, bind_sockets
from cloudseed.settings import ProxySettings

log = get_logger("proxy")

# Limits suited to guests: metadata paths are short, cloud-init sends fewer
# than ten headers, the largest body is a 1020-byte password.
MAX_TARGET_BYTES = 4096
MAX_HEADERS = 32
MAX_HEADER_BYTES = 8192
MAX_BODY_BYTES = 16384
KEEP_ALIVE_SECONDS = 30.0  # Neutron's timeout_http_keep_alive
# Unix-socket connect either works at once or fails at once; a slow one is a
# wedged agent, and the guest should hear 502 quickly.
AGENT_CONNECT_TIMEOUT_SECONDS = 0.5
# Methods that carry a body, so Content-Length goes even when it is 0.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}")


def guest_limits(settings: ProxySettings) -> Limits:
    for name in ("max_connections_per_source", "max_requests_per_source"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"proxy.{name} must be 0 (off) or more")
    return Limits(
        max_target_bytes=MAX_TARGET_BYTES,
        max_headers=MAX_HEADERS,
        max_header_bytes=MAX_HEADER_BYTES,
        max_body_bytes=MAX_BODY_BYTES,
        header_timeout_seconds=settings.header_timeout_seconds,
        body_timeout_seconds=settings.body_timeout_seconds,
        keep_alive_timeout_seconds=KEEP_ALIVE_SECONDS,
        max_connections=settings.max_connections,
        max_connections_per_source=settings.max_connections_per_source,
        max_requests_per_source=settings.max_requests_per_source,
    )


@dataclass(frozen=True)
class ProxyScope:
    """Which header the proxy sets: its router's or its network's id."""

    router_id: str = ""
    network_id: str = ""

    def __post_init__(self) -> None:
        if bool(self.router_id) == bool(self.network_id):
            raise ConfigError("a proxy serves exactly one router or one network")
        # Ids go into a header and into haproxy's config and file names.
        if not _ID.fullmatch(self.router_id or self.network_id):
            raise ConfigError(f"{self.router_id or self.network_id!r} is not a valid id")

    @property
    def header(self) -> tuple[str, str]:
        if self.router_id:
            return ("X-Neutron-Router-ID", self.router_id)
        return ("X-Neutron-Network-ID", self.network_id)


class RelayCore:
    """What every built-in proxy shares: the agent pool, hygiene, relaying, metrics, status.

    ``forward`` relays one guest request with a scope line that the caller
    took from the listener the connection arrived on — never from the
    request. ``Relay`` (one scope) and ``proxy.front.Front`` (one scope per
    namespace, in one process) are the two callers.
    """

    def __init__(self, agent_socket: str, settings: ProxySettings | None = None) -> None:
        self.settings = settings or ProxySettings()
        self.client = HttpClient(
            f"unix:{agent_socket}",
            connect_timeout_seconds=AGENT_CONNECT_TIMEOUT_SECONDS,
            read_timeout_seconds=self.settings.agent_timeout_seconds,
        )
        self.limits = guest_limits(self.settings)
        self.registry = registry = Registry()
        self.failures = HandlerFailures("proxy", registry)
        self._status_labels: dict[int, str] = {}
        self.requests = registry.counter(
            "cloudseed_proxy_requests_total", "Guest requests received."
        )
        self.responses = registry.counter(
            "cloudseed_proxy_responses_total", "Responses by HTTP status.", ("status",)
        )
        self.stripped = registry.counter(
            "cloudseed_proxy_identity_headers_removed_total",
            "Identity headers sent by guests and removed.",
        )
        self.agent_errors = registry.counter(
            "cloudseed_proxy_agent_errors_total",
            "Requests the agent did not answer (unavailable, timeout).",
            ("kind",),
        )
        registry.gauge(
            "cloudseed_proxy_connections", "Open guest connections.",
            read=lambda: float(self.connection_count()),
        )
        # The proxy holds no store: it is degraded only by what the subclass says.
        self.status_server = HttpServer(
            status_handler(registry, self.problems, self.health, ready=self.serving),
            failures=self.failures)

    def guest_server(self, scope: ProxyScope) -> WireServer:
        """A listener set for one scope: its own per-source accounting, our answering."""
        return WireServer(self.dispatch_for(scope), self.limits, wants_peer=True,
                          failures=self.failures)

    def dispatch_for(self, scope: ProxyScope) -> Callable[[WireConnection], None]:
        """How a request on ``scope``'s listeners is answered: relayed to the agent
        with the scope's header (the co-located front answers itself)."""
        return functools.partial(self.forward, scope_line=scope_line(scope))

    def connection_count(self) -> int:
        raise NotImplementedError

    def problems(self) -> list[str]:
        return []

    def serving(self) -> bool:
        """False while what the proxy answers from is still loading (/healthz: starting)."""
        return True

    def health(self) -> dict[str, object]:
        raise NotImplementedError

    async def close(self) -> None:
        await self.status_server.stop(grace_seconds=1.0)
        await self.client.close()

    def admit(self, conn: WireConnection) -> list[tuple[bytes, bytes]] | None:
        """Count a guest request and apply the hygiene: the headers to pass on, or
        None when it was refused (and answered)."""
        self.requests.inc()
        kept, removed, refused = guest_headers(conn.headers, is_put=conn.method == b"PUT")
        if refused:
            self._answer(conn, 400, b"X-Forwarded-For is not allowed on a PUT request\n")
            return None
        if removed:
            self.stripped.inc(amount=removed)
        return kept

    def forward(self, conn: WireConnection, *, scope_line: bytes) -> None:
        """One guest request: hygiene, the listener's identity, then the agent."""
        kept = self.admit(conn)
        if kept is None:
            return
        lines = header_lines(kept)
        method = conn.method
        # HEAD travels as GET so that our front can answer with the real
        # Content-Length (and no body), as the agent does towards the API.
        if method == b"HEAD":
            method = b"GET"
        body = conn.body
        framing = b""
        if body or method in _BODY_METHODS:
            framing = b"Content-Length: %d\r\n" % len(body)
        # The zone (fe80::1%tap0) names our interface, not the guest's address.
        forwarded = b"X-Forwarded-For: %s\r\n" % conn.peer.partition("%")[0].encode("latin-1")
        payload = b"".join((method, b" ", conn.target, b" HTTP/1.1\r\n", self.client.host_line,
                            *lines, forwarded, scope_line, framing, b"\r\n", body))
        self.client.send(payload, functools.partial(self._relay, conn))

    def _relay(self, conn: WireConnection, outcome: Outcome) -> None:
        if not isinstance(outcome, UpstreamResponse):
            if isinstance(outcome, UpstreamTimeout):
                self.agent_errors.inc("timeout")
                self._answer(conn, 504, b"the metadata agent did not answer in time\n")
            else:
                self.agent_errors.inc("unavailable")
                self._answer(conn, 502, b"the metadata agent is not reachable\n")
            return
        content_type, lines, hop_limit = relayed_response_lines(outcome.raw_headers)
        body = outcome.body
        self.count_status(outcome.status)
        if hop_limit:
            conn.limit_hops(hop_limit)
        conn.respond(response_head(outcome.status, content_type, len(body), lines), body)

    def _answer(self, conn: WireConnection, status: int, body: bytes) -> None:
        self.count_status(status)
        conn.respond(text_head(status, body), body)

    def count_status(self, status: int) -> None:
        label = self._status_labels.get(status)
        if label is None:
            label = self._status_labels[status] = str(status)
        self.responses.inc(label)


def scope_line(scope: ProxyScope) -> bytes:
    name, value = scope.header
    return f"{name}: {value}\r\n".encode("latin-1")


class Relay(RelayCore):
    """One router's or network's proxy: every listener carries the same scope."""

    def __init__(
        self, scope: ProxyScope, agent_socket: str, settings: ProxySettings | None = None
    ) -> None:
        super().__init__(agent_socket, settings)
        self.scope = scope
        self.server = self.guest_server(scope)
        self.bound: list[tuple[str, int]] = []

    async def start(
        self, listeners: Sequence[ListenAddress], status_socket: str = ""
    ) -> list[tuple[str, int]]:
        """Bind every listener (all or none) and serve; returns the bound addresses."""
        # Handed over by our supervisor (they outlive us), or bound here.
        sockets = take("proxy") or bind_sockets(listeners)
        for sock in sockets:
            self.bound.append(await self.server.listen_tcp("", 0, sock=sock, backlog=1024))
        if status_socket:
            await self.status_server.listen_unix(status_socket, mode=0o660)
        name, value = self.scope.header
        log.info("proxy listening", extra={"fields": {
            "listen": ",".join(str(a) for a in listeners), name: value,
            "agent": str(self.client.upstream)}})
        return self.bound

    async def stop(self) -> None:
        await self.server.stop(grace_seconds=5.0)
        await self.close()

    def connection_count(self) -> int:
        return len(self.server.connections)

    def health(self) -> dict[str, object]:
        name, value = self.scope.header
        return {name: value, "connections": len(self.server.connections)}


async def run_relay(
    scope: ProxyScope,
    agent_socket: str,
    listeners: Sequence[ListenAddress],
    settings: ProxySettings,
    status_socket: str = "",
) -> None:
    relay = Relay(scope, agent_socket, settings)
    await relay.start(listeners, status_socket)
    try:
        await asyncio.Event().wait()
    finally:
        await relay.stop()


__all__ = ["ProxyScope", "Relay", "RelayCore", "guest_limits", "run_relay", "scope_line"]
