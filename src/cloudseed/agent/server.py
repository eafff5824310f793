"""The metadata agent: Unix-socket HTTP server between the proxies and the API.

A request from a namespace proxy carries ``X-Forwarded-For`` (the guest's
address) and exactly one of ``X-Neutron-Router-ID`` / ``X-Neutron-Network-ID``.
The agent resolves that pair to a server from its address map (built in bulk
at start-up, kept current from the change feed: no store query and no thread
hand-off per request), applies the server's rate limit, signs the server's
identity and forwards the request to the metadata API. Until the map is
built, requests wait up to ``LOAD_WAIT_SECONDS`` for it, then get 503 with
``Retry-After`` (at once while the store is unreachable), and ``/healthz``
says ``starting`` (503). The proxy has already removed anything the
guest sent under those names; the agent trusts them because only local
processes with the socket's permissions can connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import grp
import os
import pwd
import time
from dataclasses import dataclass

from cloudseed.agent import forward
from cloudseed.agent.addressmap import AddressMap, MapUpdate, digest
from cloudseed.agent.metrics import AgentMetrics
from cloudseed.agent.ratelimit import RateLimiter
from cloudseed.agent.resolve import Identity, Scope, ScopeKind, parse_source
from cloudseed.errors import (
    CloudseedError,
    ConfigError,
    Invalid,
    NotFound,
    NotLoaded,
    RateLimited,
    StoreUnavailable,
    UpstreamTimeout,
)
from cloudseed.heap import freeze_long_lived
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
from cloudseed.store.follow import FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS, ChangeFollower
from cloudseed.store.health import describe, since_text
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
# A request that arrives while the address map is being built waits this long
# for it (a million ports take seconds), then gets 503 with Retry-After.
LOAD_WAIT_SECONDS = 5.0
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
        # None until built; then replaced never, updated in place on this loop.
        self.map: AddressMap | None = None
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
        self.revision = 0
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._follower: ChangeFollower[MapUpdate] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._load_failing_since: float | None = None
        self._load_failure = ""
        # Requests waiting for the map, each with its expiry.
        self._parked: dict[WireConnection, asyncio.TimerHandle] = {}
        # Answers by the proxy's own bytes, dropped whenever the map changes:
        # a warm request skips address parsing and signing.
        self._ready: dict[WireKey, Ready] = {}
        self._status_labels: dict[int, str] = {}
        if not secret:
            log.warning("shared_secret is empty: the API cannot trust the agent's signatures")

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Listen at once; the address map is built meanwhile (``wait_loaded``)."""
        self._loader = asyncio.create_task(self._load())
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
        async with asyncio.timeout(timeout_seconds):
            await self._loaded.wait()

    async def _load(self) -> None:
        """Build the map from one snapshot, retrying while the store is unreachable."""
        delay = FIRST_RETRY_SECONDS
        started = time.perf_counter()
        while True:
            try:
                built = await asyncio.to_thread(AddressMap.build, self.store)
                break
            except Exception as exc:
                if self._load_failing_since is None:
                    self._load_failing_since = time.time()
                    if not isinstance(exc, StoreUnavailable):  # store.health logs outages
                        log.exception("building the address map failed; retrying")
                self._load_failure = describe(exc)
                for conn in list(self._parked):
                    self._unpark(conn)
                    self._answer_error(conn, self._not_loaded())
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
        # Follow from the snapshot's revision: every later change is applied
        # after it, in order, and none before it is applied twice.
        self._follower = ChangeFollower(self.store, lambda changes: digest(changes, self.store),
                                        self.apply_update, asyncio.get_running_loop())
        self._follower.start(built.revision)
        self.map, self._load_failing_since = built, None
        _return_freed_memory()
        self.apply_update(MapUpdate(), built.revision)
        # The map lives as long as the process: out of every later full GC pass.
        freeze_long_lived()
        self._loaded.set()
        log.info("address map built", extra={"fields": {
            "ports": len(built), "revision": built.revision,
            "seconds": round(time.perf_counter() - started, 3)}})
        for conn in list(self._parked):
            self._unpark(conn)
            self.dispatch(conn)

    def _not_loaded(self) -> NotLoaded:
        return NotLoaded("the metadata agent is starting; try again shortly", 1)

    def _park(self, conn: WireConnection) -> None:
        if self._load_failing_since is not None:
            self._answer_error(conn, self._not_loaded())  # no point waiting on a dead store
            return
        expire = asyncio.get_running_loop().call_later(LOAD_WAIT_SECONDS, self._expire, conn)
        self._parked[conn] = expire

    def _unpark(self, conn: WireConnection) -> None:
        self._parked.pop(conn).cancel()

    def _expire(self, conn: WireConnection) -> None:
        if self._parked.pop(conn, None) is not None:
            self._answer_error(conn, self._not_loaded())

    async def stop(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
        for conn in list(self._parked):
            self._unpark(conn)
            self._answer_error(conn, self._not_loaded())
        await self.server.stop(grace_seconds=5.0)
        await self.status_server.stop(grace_seconds=1.0)
        if self._follower is not None:
            await asyncio.to_thread(self._follower.stop)
        await self.client.close()

    # -- change feed ----------------------------------------------------------

    def apply_update(self, update: MapUpdate, revision: int) -> None:
        # The map changes here, on the loop, between requests: an answer
        # computed before this line is never served after it (the prepared
        # answers go with it).
        if self.map is not None and self.map.apply(update, revision):
            self._ready.clear()
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
        """Return once the map reflects ``revision`` (tests and ``doctor`` use this)."""
        if self.revision >= revision:
            return
        future = asyncio.get_running_loop().create_future()
        self._revision_waiters.append((revision, future))
        async with asyncio.timeout(timeout_seconds):
            await future

    def health(self) -> dict[str, object]:
        return {"revision": self.revision, "map_ports": len(self.map) if self.map else 0}

    def problems(self) -> list[str]:
        follower = self._follower
        loading = since_text("address map not built", self._load_failing_since,
                             self._load_failure)
        return [p for p in (self.store.health.problem(), loading,
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
        amap = self.map
        if amap is None:
            self._park(conn)
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


def _return_freed_memory() -> None:
    """Give the build's transient rows back to the kernel (glibc keeps freed heap otherwise).

    The build runs in a worker thread, whose malloc arena keeps what a million
    streamed rows used; at that size this is tens of MiB of the 256 MiB budget.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


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
