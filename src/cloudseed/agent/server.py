"""The metadata agent: Unix-socket HTTP server between the proxies and the API.

A request from a namespace proxy carries ``X-Forwarded-For`` (the guest's
address) and exactly one of ``X-Neutron-Router-ID`` / ``X-Neutron-Network-ID``.
The agent resolves that pair to a server from its address map (built in bulk
at start-up, kept current from the change feed: no store query and no thread
hand-off per request), applies the server's rate limit, signs the server's
identity and forwards the request to the metadata API. Until the map is
built, requests wait up to ``agent.followed.LOAD_WAIT_SECONDS`` for it, then get 503 with
``Retry-After`` (at once while the store is unreachable), and ``/healthz``
says ``starting`` (503). The proxy has already removed anything the
guest sent under those names; the agent trusts them because only local
processes with the socket's permissions can connect.
"""

from __future__ import annotations

import asyncio
import functools
import grp
import os
import pwd
import time
from dataclasses import dataclass

from cloudseed.agent import forward
from cloudseed.agent.addressmap import AddressMap
from cloudseed.agent.followed import FollowedMap
from cloudseed.agent.metrics import AgentMetrics
from cloudseed.agent.ratelimit import RateLimiter
from cloudseed.agent.resolve import Identity, Scope, ScopeKind, parse_source
from cloudseed.errors import (
    CloudseedError,
    ConfigError,
    Invalid,
    NotFound,
    RateLimited,
    UpstreamTimeout,
)
from cloudseed.http.client import HttpClient, UpstreamResponse, tls_context
from cloudseed.http.client import Outcome as Exchange
from cloudseed.http.encoding import encode_head, response_head
from cloudseed.http.failures import HandlerFailures
from cloudseed.http.health import status_handler
from cloudseed.http.inherit import take
from cloudseed.http.listeners import WireServer
from cloudseed.http.message import Response
from cloudseed.http.server import HttpServer
from cloudseed.http.status import error_response_text
from cloudseed.http.wire import Limits, WireConnection
from cloudseed.log import get_logger
from cloudseed.settings import AgentSettings
from cloudseed.store.protocol import Store

log = get_logger("agent")

# Requests come from our proxies, which already bound them for guests; the
# body limit still backs up a haproxy that forwards a chunked body.
AGENT_LIMITS = Limits(max_body_bytes=65536, max_connections=16384)

_FORWARDED_FOR = b"x-forwarded-for"
_ROUTER_ID = b"x-neutron-router-id"
_NETWORK_ID = b"x-neutron-network-id"
# (scope kind, scope id, X-Forwarded-For) exactly as the proxy sent them.
WireKey = tuple[ScopeKind, bytes, bytes]
# Prepared answers (signed identity blocks) kept for guests seen recently: a
# boot storm's working set. Past it they start over; a guest not in it costs
# one map lookup and one HMAC, still no store query.
PREPARED_ANSWERS = 16_384


def parse_identity(headers: list[tuple[bytes, bytes]]) -> tuple[ScopeKind, bytes, bytes]:
    """The (router|network, id, guest address) the proxy set; Invalid (400) otherwise."""
    routers: list[bytes] = []
    networks: list[bytes] = []
    forwarded: list[bytes] = []
    for name, value in headers:
        if name == _FORWARDED_FOR:
            forwarded.append(value)
        elif name == _ROUTER_ID:
            routers.append(value)
        elif name == _NETWORK_ID:
            networks.append(value)
    if routers and networks:
        raise Invalid("X-Neutron-Router-ID", "both a router and a network id were sent")
    if len(routers) + len(networks) != 1:
        raise Invalid("X-Neutron-Network-ID", "exactly one router or network id is required")
    kind, scope_id = (ScopeKind.ROUTER, routers[0]) if routers else (
        ScopeKind.NETWORK, networks[0])
    if not scope_id:
        raise Invalid(f"X-Neutron-{kind.value.capitalize()}-ID", "is empty")
    if len(forwarded) != 1:
        raise Invalid("X-Forwarded-For", "exactly one X-Forwarded-For header is required")
    return kind, scope_id, forwarded[0]


@dataclass(frozen=True, slots=True)
class Ready:
    """A cached resolution, prepared for the wire: what a warm request needs, once."""

    scope_labels: tuple[str, str]
    server_id: str  # the rate limiter's key; "" for a "not found"
    identity: bytes  # the signed identity header block
    error: Response | None  # the answer when the lookup found no server


class Agent:
    def __init__(self, store: Store, settings: AgentSettings, secret: bytes) -> None:
        self.settings = settings
        self.store = store
        self.secret = secret
        self.metrics = AgentMetrics()
        self.limiter = (
            RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
            if settings.rate_limit_enabled
            else None
        )
        tls = None
        if settings.api_url.startswith("https:"):
            tls = tls_context(settings.api_ca_file, settings.api_cert_file, settings.api_key_file)
        self.client = HttpClient(
            settings.api_url,
            connect_timeout_seconds=settings.api_connect_timeout_seconds,
            read_timeout_seconds=settings.api_timeout_seconds,
            tls=tls,
        )
        self.failures = HandlerFailures("agent", self.metrics.registry)
        self.server = WireServer(self.dispatch, AGENT_LIMITS, failures=self.failures)
        self.status_server = HttpServer(
            status_handler(self.metrics.registry, self.problems, self.health,
                           ready=lambda: self.map is not None),
            failures=self.failures)
        self.metrics.map_ports.read = lambda: float(len(self.map) if self.map else 0)
        self.followed = FollowedMap(store, refuse=self._answer_error,
                                    on_apply=self._applied, who="the metadata agent")
        # Answers by the proxy's own bytes, dropped whenever the map changes:
        # a warm request skips address parsing and signing.
        self._ready: dict[WireKey, Ready] = {}
        self._status_labels: dict[int, str] = {}
        if not secret:
            log.warning("shared_secret is empty: the API cannot trust the agent's signatures")

    # -- lifecycle ------------------------------------------------------------

    @property
    def map(self) -> AddressMap | None:
        return self.followed.map

    @property
    def revision(self) -> int:
        return self.followed.revision

    async def start(self) -> None:
        """Listen at once; the address map is built meanwhile (``wait_loaded``)."""
        self.followed.start()
        s = self.settings
        handed = take("agent")  # `serve` keeps the socket across our restarts
        await self.server.listen_unix(s.socket_path, mode=s.socket_mode, backlog=s.socket_backlog,
                                      sock=handed[0] if handed else None)
        if s.socket_owner:
            _chown(s.socket_path, s.socket_owner)
        if s.metrics_socket:
            await self.status_server.listen_unix(s.metrics_socket, mode=0o660)
        elif s.metrics_port >= 0:
            await self.status_server.listen_tcp(s.metrics_host, s.metrics_port)
        log.info("agent listening", extra={"fields": {
            "socket": s.socket_path, "api": str(self.client.upstream)}})

    async def wait_loaded(self, timeout_seconds: float = 30.0) -> None:
        """Return once the address map is built (tests, and callers that must not race it)."""
        await self.followed.wait_loaded(timeout_seconds)

    async def stop(self) -> None:
        await self.followed.stop()
        await self.server.stop(grace_seconds=5.0)
        await self.status_server.stop(grace_seconds=1.0)
        await self.client.close()

    # -- change feed ----------------------------------------------------------

    def _applied(self, changed: bool, revision: int) -> None:
        if changed:
            self._ready.clear()  # prepared from the old map
        self.metrics.feed_revision.set(revision)

    async def wait_for_revision(self, revision: int, timeout_seconds: float = 5.0) -> None:
        """Return once the map reflects ``revision`` (tests and ``doctor`` use this)."""
        await self.followed.wait_for_revision(revision, timeout_seconds)

    def health(self) -> dict[str, object]:
        return {"revision": self.revision, "map_ports": len(self.map) if self.map else 0}

    def problems(self) -> list[str]:
        return self.followed.problems()

    # -- requests -------------------------------------------------------------

    def dispatch(self, conn: WireConnection) -> None:
        """One request from a proxy: resolve, limit, sign, forward (see ``http.wire``)."""
        headers = conn.headers
        try:
            kind, scope_id, forwarded = parse_identity(headers)
        except CloudseedError as exc:
            self._answer_error(conn, exc)
            return
        amap = self.followed.map
        if amap is None:
            self.followed.park(conn, functools.partial(self.dispatch, conn))
            return
        ready_answers = self._ready
        key = (kind, scope_id, forwarded)
        ready = ready_answers.get(key)
        if ready is not None:
            self.metrics.requests.inc(*ready.scope_labels)
            self.metrics.resolutions.inc("hit")
            self._serve(conn, ready)
            return
        scope = Scope(kind, scope_id.decode("latin-1"))
        self.metrics.requests.inc(kind.value, scope.id)
        try:
            source = parse_source(forwarded.decode("latin-1"))
        except CloudseedError as exc:
            self._answer_error(conn, exc)
            return
        self.metrics.resolutions.inc("miss")
        ready = self._prepare(scope, str(source), amap.resolve(scope, source))
        if len(ready_answers) >= PREPARED_ANSWERS:
            ready_answers.clear()
        ready_answers[key] = ready
        self._serve(conn, ready)

    def _prepare(self, scope: Scope, address: str, found: Identity | NotFound) -> Ready:
        labels = (scope.kind.value, scope.id)
        if isinstance(found, NotFound):
            return Ready(labels, "", b"", error_response_text(found))
        block = forward.identity_block(self.secret, found, address)
        return Ready(labels, found.server_id, block, None)

    def _serve(self, conn: WireConnection, ready: Ready) -> None:
        if ready.error is not None:
            self._answer(conn, ready.error)
            return
        if self.limiter is not None:
            wait = self.limiter.acquire(ready.server_id)
            if wait:
                self.metrics.rate_limited.inc()
                self._answer_error(conn, RateLimited(wait))
                return
        payload = forward.encode_request(
            conn.method, conn.target, self.client.host_line, ready.identity,
            forward.guest_header_lines(conn.headers), body=conn.body)
        self.client.send(payload, functools.partial(self._relay, conn, time.perf_counter()))

    def _relay(self, conn: WireConnection, started: float, outcome: Exchange) -> None:
        self.metrics.upstream_seconds.observe(time.perf_counter() - started)
        if not isinstance(outcome, UpstreamResponse):
            kind = "timeout" if isinstance(outcome, UpstreamTimeout) else "unavailable"
            self.metrics.upstream_errors.inc(kind)
            self._answer_error(conn, outcome)
            return
        content_type, lines = forward.response_parts(outcome)
        body = outcome.body
        self._count(outcome.status)
        conn.respond(response_head(outcome.status, content_type, len(body), lines), body)

    def _answer_error(self, conn: WireConnection, error: CloudseedError) -> None:
        self._answer(conn, error_response_text(error))

    def _answer(self, conn: WireConnection, response: Response) -> None:
        self._count(response.status)
        conn.respond(encode_head(response), response.body, close=response.close)

    def _count(self, status: int) -> None:
        label = self._status_labels.get(status)
        if label is None:
            label = self._status_labels[status] = str(status)
        self.metrics.responses.inc(label)


def _chown(path: str, owner: str) -> None:
    user, _, group = owner.partition(":")
    try:
        uid = pwd.getpwnam(user).pw_uid if user else -1
        gid = grp.getgrnam(group).gr_gid if group else -1
    except KeyError as exc:
        raise ConfigError(f"agent.socket_owner {owner!r}: no such user or group") from exc
    os.chown(path, uid, gid)


async def run_agent(store: Store, settings: AgentSettings, secret: bytes) -> None:
    """Run until cancelled (the CLI cancels on SIGTERM/SIGINT)."""
    agent = Agent(store, settings, secret)
    await agent.start()  # serving at once; requests wait (bounded) for the map
    try:
        await asyncio.Event().wait()
    finally:
        await agent.stop()
