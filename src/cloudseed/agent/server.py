"""The metadata agent: Unix-socket HTTP server between the proxies and the API.

A request from a namespace proxy carries ``X-Forwarded-For`` (the guest's
address) and exactly one of ``X-Neutron-Router-ID`` / ``X-Neutron-Network-ID``.
The agent resolves that pair to a server (cache first, store on a miss),
applies the server's rate limit, signs the server's identity and forwards the
request to the metadata API. The proxy has already removed anything the
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
from cloudseed.agent.cache import Invalidation, ResolutionCache, invalidation_for
from cloudseed.agent.metrics import AgentMetrics
from cloudseed.agent.ratelimit import RateLimiter
from cloudseed.agent.resolve import Outcome, Scope, ScopeKind, lookup, parse_source
from cloudseed.errors import (
    CloudseedError,
    ConfigError,
    Invalid,
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
from cloudseed.store.follow import ChangeFollower
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
        self.cache = ResolutionCache()
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
            status_handler(self.metrics.registry, self.problems, self.health),
            failures=self.failures)
        self.metrics.cache_entries.read = lambda: float(len(self.cache))
        self.revision = 0
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._follower: ChangeFollower[Invalidation] | None = None
        # Resolutions by the proxy's own bytes, valid while the cache's epoch
        # stands still: a warm request skips address parsing and signing.
        self._ready: dict[WireKey, Ready] = {}
        self._ready_epoch = self.cache.epoch
        self._status_labels: dict[int, str] = {}
        if not secret:
            log.warning("shared_secret is empty: the API cannot trust the agent's signatures")

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        store = self.store
        self._follower = ChangeFollower(
            store, lambda changes: invalidation_for(changes, store), self.apply_invalidation, loop)
        self.revision = await asyncio.to_thread(self._follower.start)
        self.metrics.feed_revision.set(self.revision)
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
            "socket": s.socket_path, "api": str(self.client.upstream), "revision": self.revision}})

    async def stop(self) -> None:
        await self.server.stop(grace_seconds=5.0)
        await self.status_server.stop(grace_seconds=1.0)
        if self._follower is not None:
            await asyncio.to_thread(self._follower.stop)
        await self.client.close()

    # -- change feed ----------------------------------------------------------

    def apply_invalidation(self, invalidation: Invalidation, revision: int) -> None:
        if invalidation:
            self.cache.apply(invalidation)
        self.revision = max(self.revision, revision)
        self.metrics.feed_revision.set(self.revision)
        still_waiting = []
        for wanted, future in self._revision_waiters:
            if wanted <= self.revision:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((wanted, future))
        self._revision_waiters = still_waiting

    async def wait_for_revision(self, revision: int, timeout_seconds: float = 5.0) -> None:
        """Return once the cache reflects ``revision`` (tests and ``doctor`` use this)."""
        if self.revision >= revision:
            return
        future = asyncio.get_running_loop().create_future()
        self._revision_waiters.append((revision, future))
        async with asyncio.timeout(timeout_seconds):
            await future

    def health(self) -> dict[str, object]:
        return {"revision": self.revision, "cache_entries": len(self.cache)}

    def problems(self) -> list[str]:
        follower = self._follower
        return [p for p in (self.store.health.problem(),
                            follower.problem() if follower else None) if p]

    # -- requests -------------------------------------------------------------

    def dispatch(self, conn: WireConnection) -> None:
        """One request from a proxy: resolve, limit, sign, forward (see ``http.wire``)."""
        headers = conn.headers
        try:
            kind, scope_id, forwarded = parse_identity(headers)
        except CloudseedError as exc:
            self._answer_error(conn, exc)
            return
        cache = self.cache
        if cache.epoch != self._ready_epoch or len(self._ready) >= cache.max_entries:
            self._ready.clear()
            self._ready_epoch = cache.epoch
        key = (kind, scope_id, forwarded)
        ready = self._ready.get(key)
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
        address = str(source)
        outcome = cache.get(scope, address)
        if outcome is not None:
            self.metrics.resolutions.inc("hit")
            self._serve(conn, self._remember(key, scope, address, outcome))
            return
        self.metrics.resolutions.inc("miss")
        epoch = cache.epoch
        future = asyncio.get_running_loop().run_in_executor(
            None, lookup, self.store, scope, source)
        future.add_done_callback(functools.partial(
            self._looked_up, conn, key, scope, address=address, epoch=epoch))

    def _looked_up(
        self, conn: WireConnection, key: WireKey, scope: Scope, future: asyncio.Future[Outcome],
        *, address: str, epoch: int,
    ) -> None:
        try:
            outcome = future.result()
        except CloudseedError as exc:
            # An unreachable store is StoreUnavailable: 503 with Retry-After,
            # logged once per outage by store.health, not per request.
            self._answer_error(conn, exc)
            return
        except Exception as exc:  # a bug: logged with its traceback and counted
            self.failures.record(exc, conn.method, conn.target)
            self._answer_error(conn, CloudseedError("internal error"))
            return
        stored = self.cache.put(scope, address, outcome, epoch)
        ready = self._prepare(scope, address, outcome)
        if stored and self.cache.epoch == self._ready_epoch:
            self._ready[key] = ready
        self._serve(conn, ready)

    def _remember(self, key: WireKey, scope: Scope, address: str, outcome: Outcome) -> Ready:
        ready = self._ready[key] = self._prepare(scope, address, outcome)
        return ready

    def _prepare(self, scope: Scope, address: str, outcome: Outcome) -> Ready:
        labels = (scope.kind.value, scope.id)
        if outcome.identity is None:
            assert outcome.error is not None
            return Ready(labels, "", b"", error_response_text(outcome.error))
        block = forward.identity_block(self.secret, outcome.identity, address)
        return Ready(labels, outcome.identity.server_id, block, None)

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
    await agent.start()
    try:
        await asyncio.Event().wait()
    finally:
        await agent.stop()
