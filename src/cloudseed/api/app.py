"""The guest-facing metadata API: identify, authorise, answer ready bytes.

The warm path is synchronous -- parse (the server's) → route (memoised) →
identify (dict lookup + constant-time compare, or address → id lookup) →
tree lookup → bytes -- and touches neither the store nor the clock beyond one
``perf_counter`` pair. Only a cold server (one ``server_view`` and one render,
shared by every request that waits for it), a password POST or a cold
address returns an awaitable.

Order of checks for a request, and the answer when one fails:

1. method for the route's kind (405 with ``Allow``; password: 400 as Nova)
2. identity: proxy headers (400 missing/repeated, 403 bad signature) or
   direct source address; unknown server or tenant mismatch → 404
3. endpoint disabled for the server → 403 (everything, the token PUT too)
4. session token: a presented token must verify for this server (401); none
   is 401 when the server requires tokens, else counted as tokenless
5. the document (404 when absent), ``If-None-Match`` → 304

``GET /`` (the EC2 version list) is answered before all of it, as Nova does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from cloudseed.api import identitytoken
from cloudseed.api.answers import Answers
from cloudseed.api.audit import AuditTrail
from cloudseed.api.cache import FOREVER, MISSING, LoadOnceCache, RenderedServer
from cloudseed.api.config import (
    ApiConfig,
    Mode,
    check_api_settings,
    stored_token_key,
)
from cloudseed.api.guest_attributes import GuestAttributes, Outcome
from cloudseed.api.guest_writes import GuestWrites
from cloudseed.api.identify import DirectIdentifier, ProxyClaim, ProxyIdentifier
from cloudseed.api.loader import ServerLoader
from cloudseed.api.methods import check_method
from cloudseed.api.observe import AccessLog, ApiMetrics
from cloudseed.api.password import password_from_post
from cloudseed.api.prefetch import Prefetch
from cloudseed.api.ready import ReadySource, held_servers
from cloudseed.api.routes import Route, RouteKind, RouteTable
from cloudseed.api.sessions import SessionTokens
from cloudseed.api.waiting import ChangeWaiters, WaitForChange, bare_etag
from cloudseed.api.waiting import parse as parse_wait
from cloudseed.auth import headers
from cloudseed.auth.tokens import TokenAuthority
from cloudseed.errors import (
    CloudseedError,
    EndpointDisabled,
    IdentityMissing,
    NotFound,
    SignatureInvalid,
)
from cloudseed.http.failures import HandlerFailures
from cloudseed.http.health import status_handler
from cloudseed.http.message import Request, Response
from cloudseed.http.metrics import Registry
from cloudseed.http.status import error_response_text
from cloudseed.log import get_logger
from cloudseed.model import EndpointState, Server
from cloudseed.ready.codec import fingerprint
from cloudseed.render import Document, root_listing
from cloudseed.render.document import TEXT_PLAIN
from cloudseed.render.sections import ServerDocuments
from cloudseed.settings import Settings
from cloudseed.store.follow import ChangeFollower, ServerChanges, server_changes
from cloudseed.store.protocol import Store

_log = get_logger("cloudseed.api")
_T = TypeVar("_T")

# Store reads run here so the loop never blocks on the database; a few threads
# are plenty because a warm cache makes them rare.
STORE_THREADS = 4
# Nova's wording for an unexpected failure while loading.
UNKNOWN_ERROR = "An unknown error has occurred. Please try your request again.\n"


class MetadataApp:
    """One worker's metadata API over one store. Not thread-safe: one loop."""

    def __init__(
        self,
        store: Store,
        config: ApiConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        registry: Registry | None = None,
        access_log: AccessLog | None = None,
        front_resolves: bool = False,
    ) -> None:
        self.config = config
        self._store = store
        # The co-located shared front (proxy/colocated.py) hands each request
        # over with its server already resolved (``handle_resolved``); the
        # guest's connection is the front's own, as in direct mode.
        self._front_resolves = front_resolves
        if front_resolves and config.mode is not Mode.DIRECT:
            raise ValueError("a front-resolved app answers on the guest's connection: "
                             "build it with api.mode = 'direct'")
        self._clock = clock
        self._monotonic = monotonic
        self.metrics = ApiMetrics(registry or Registry())
        self._access_log = (
            access_log if access_log is not None else (AccessLog() if config.access_log else None)
        )
        self._routes = RouteTable()
        self._proxy = (
            ProxyIdentifier(config.shared_secret, config.shared_secret_also_accepted)
            if config.mode is Mode.PROXY
            else None
        )
        self._tokens = SessionTokens(
            TokenAuthority(config.token_key, clock, config.token_key_also_accepted),
            self.metrics, behind_proxy=self._proxy is not None)
        self._direct = DirectIdentifier(config.trusted_networks)
        self._loader = ServerLoader(store, self._run_store, config, self.metrics,
                                    clock=clock, monotonic=monotonic)
        # Loaded from the store only: every caller has just looked in the ready map
        # (``_held_or_ready``); a load redone because a change arrived meanwhile
        # takes the store too, which is always current.
        self.servers: LoadOnceCache[str, RenderedServer | None] = LoadOnceCache(
            self._loader.load, held_servers(config)
        )
        self.addresses: LoadOnceCache[str, str | None] = LoadOnceCache(
            self._load_address, config.cache_max_servers * 4
        )
        # Set at start when the per-host ready map is on (api/ready.py).
        self._ready: ReadySource | None = None
        # No prefetch with dynamic vendor data (each server's is an HTTP fetch), nor
        # with the ready map (it holds every server, once for every worker).
        self._prefetch = None if config.targets or config.ready_map else Prefetch(
            self.servers,
            lambda ids, limit: self._run_store(self._store.server_views, ids, limit),
            self._loader.rendered, config.cache_max_servers, self.metrics)
        self._executor: ThreadPoolExecutor | None = None
        self._follower: ChangeFollower[ServerChanges] | None = None
        # Cleared when loading the keys failed (the store was away): retried
        # with the next change batch of any kind.
        self._identity_loaded = False
        self._background: set[asyncio.Task[None]] = set()
        self._waiters = ChangeWaiters()
        self.metrics.registry.gauge(
            "cloudseed_api_waiting_requests", "Guest requests waiting for a change "
            "(?wait_for_change=true).", read=lambda: float(len(self._waiters)))
        self._audit = AuditTrail(
            config.audit,
            lambda records: self._run_store(self._store.append_audit, records),
            lambda servers, keep, before: self._run_store(
                self._store.prune_audit, servers, keep, before),
            self.metrics.registry,
            "chain" if self._proxy is not None else "front" if front_resolves else "direct",
        ) if config.audit.enabled else None
        self._guest_attributes = GuestAttributes(store, self._run_store, clock)
        self._writes = GuestWrites(store, self._run_store, self.metrics, self._forget)
        self.failures = HandlerFailures("api", self.metrics.registry)
        self._status = status_handler(self.metrics.registry, self.problems)
        self._root = root_listing()
        self._answers = Answers()
        self.metrics.registry.gauge(
            "cloudseed_api_cached_servers", "Rendered servers held.", read=lambda: len(self.servers)
        )
        self.metrics.registry.gauge(
            "cloudseed_api_feed_revision",
            "Newest store revision this worker has applied.",
            read=lambda: float(self._follower.revision if self._follower else 0),
        )

    # -- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        """Start following the change feed; call before serving requests."""
        self._executor = ThreadPoolExecutor(STORE_THREADS, thread_name_prefix="store")
        # Follow from before the keys and the servers are read: a change made
        # meanwhile is announced again (a redundant drop), never missed.
        revision = await self._run_store(self._store.revision)
        if self.config.ready_map is not None:
            self._ready = ReadySource(self.config.ready_map,
                                      await self._run_store(self._store.store_id), revision,
                                      self.metrics.ready_map)
        await self._load_identity_keys()
        if self._prefetch is not None:
            await self._prefetch.fill()
        self._follower = ChangeFollower(
            self._store, server_changes, self._on_change, asyncio.get_running_loop())
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._follower.start, revision)
        if self._audit is not None:
            self._audit.start()

    async def stop(self) -> None:
        if self._prefetch is not None:
            await self._prefetch.stop()
        if self._audit is not None:
            await self._audit.stop()
        if self._follower is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._follower.stop)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._access_log is not None:
            self._access_log.flush()
        if self._ready is not None:
            self._ready.close()

    def _on_change(self, changed: ServerChanges, revision: int) -> None:
        ids = changed.servers
        if changed.identity_keys or not self._identity_loaded:
            task = asyncio.get_running_loop().create_task(self._load_identity_keys())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if not ids:
            return
        self.metrics.invalidations.inc(amount=float(len(ids)))
        if self._ready is not None:
            self._ready.changed(ids, revision)
        self.servers.drop(ids)
        if self._prefetch is not None:
            self._prefetch.changed(ids)
        self._waiters.wake(ids)  # after the drop: they reload what changed
        if self._proxy is None and not self._front_resolves:
            # An address may have moved to (or from) any changed server, and
            # a negative answer may have become positive.
            self.addresses.drop_where(lambda _addr, owner: owner is None or owner in ids)

    # -- guest requests -------------------------------------------------------

    def handle(self, request: Request) -> Response | Awaitable[Response]:
        """A request identified by its headers (proxy mode) or its source (direct mode)."""
        if self._front_resolves:
            # Never reached from a socket: the front calls handle_resolved.
            return self._done(request, self._routes.get(request.path), self._refused(
                IdentityMissing("this app answers only what its front resolved"), ""),
                time.perf_counter())
        return self._handle(request, None)

    def handle_resolved(self, request: Request, claim: ProxyClaim
                        ) -> Response | Awaitable[Response]:
        """A request whose server the co-located front resolved from the listener's scope
        and the guest's address (``agent.addressmap``, as the agent does): the same checks
        as behind the agent -- the tenant (the port's project), the endpoint, tokens -- with
        the identity taken from ``claim`` instead of signed headers."""
        return self._handle(request, claim)

    def _handle(self, request: Request, claim: ProxyClaim | None
                ) -> Response | Awaitable[Response]:
        started = time.perf_counter()
        route = self._routes.get(request.path)
        try:
            result = self._dispatch(request, route, claim)
        except CloudseedError as error:
            result = self._refused(error, "")
        if type(result) is tuple:
            return self._done(request, route, result, started)
        return self._done_later(request, route, result, started)  # type: ignore[arg-type]

    def _done(self, request: Request, route: Route, outcome: Outcome, started: float) -> Response:
        response, server_id = outcome
        seconds = time.perf_counter() - started
        self.metrics.served(route.family, response.status, seconds)
        if server_id and self._audit is not None and self._audit.audited(route, request.method):
            self._audit.note(server_id, route, request.method, response.status,
                             self._guest_address(request))
        if self._access_log is not None:
            self._access_log.record(
                request.method, request.path, response.status, server_id, request.peer, seconds
            )
        return response

    async def _done_later(
        self, request: Request, route: Route, pending: Awaitable[Outcome], started: float
    ) -> Response:
        try:
            outcome = await pending
        except CloudseedError as error:
            # StoreUnavailable included: 503 with Retry-After, never 500.
            outcome = self._refused(error, "")
        except Exception as exc:
            self.failures.record(exc, request.method, request.path)
            outcome = (Response(500, UNKNOWN_ERROR.encode()), "")
        return self._done(request, route, outcome, started)

    def _guest_address(self, request: Request) -> str:
        if self._proxy is not None:  # the agent passes on what the proxy saw
            return request.header(headers.FORWARDED_FOR) or request.peer
        if self._front_resolves:  # the guest's own connection, zone removed
            return request.peer
        return self._direct.client_address(request) or request.peer

    def _refused(self, error: CloudseedError, server_id: str) -> Outcome:
        if isinstance(error, SignatureInvalid):
            self.metrics.signature_failures.inc()
        return error_response_text(error), server_id

    def _dispatch(self, request: Request, route: Route,
                  claim: ProxyClaim | None) -> Outcome | Awaitable[Outcome]:
        check_method(route, request.method)
        if route.kind is RouteKind.ROOT:
            return self._answers.respond(self._root, request.header(headers.IF_NONE_MATCH)), ""

        # One pass over the headers (in C): when no name is repeated, every
        # header below is a dict lookup; otherwise the exact scans decide.
        listed = request.headers
        found = dict(listed)
        distinct = found if len(found) == len(listed) else None
        if distinct is not None:
            token = distinct.get(headers.TOKEN)
            if token is None:
                token = distinct.get(headers.TOKEN_ALIAS)
            if_none_match = distinct.get(headers.IF_NONE_MATCH)
        else:
            token, if_none_match = _token_and_etag(request)

        if claim is not None:
            server_id, tenant_id = claim.instance_id, claim.tenant_id
        elif self._proxy is not None:
            server_id, tenant_id = self._proxy.identify(request, distinct)
        else:
            address = self._direct.client_address(request)
            if not address:
                raise IdentityMissing("the request has no source address to identify it by")
            owner = self.addresses.entries.get(address, MISSING)
            if owner is MISSING:
                return self._identify_later(request, route, address)
            if owner is None:
                raise NotFound("server", address, f"no server has the address {address}")
            server_id, tenant_id = owner, None  # type: ignore[assignment]

        entry = self._held_or_ready(server_id)
        if entry is MISSING:
            self.metrics.cache_misses.inc()
            return self._serve_later(request, route, server_id, tenant_id)
        self.metrics.hit()
        return self._serve(
            request,
            route,
            server_id,
            tenant_id,
            entry,  # type: ignore[arg-type]
            token,
            if_none_match,
        )

    async def _identify_later(self, request: Request, route: Route, address: str) -> Outcome:
        owner = await self.addresses.get_or_load(address)
        if owner is None:
            raise NotFound("server", address, f"no server has the address {address}")
        self.metrics.cache_misses.inc()
        return await self._serve_later(request, route, owner, None, self._held_or_ready(owner))

    async def _serve_later(
        self, request: Request, route: Route, server_id: str, tenant_id: str | None,
        entry: object = MISSING,
    ) -> Outcome:
        """``entry``: what ``_held_or_ready`` found (MISSING: neither held nor in the
        map, so the store is asked without reading the map again)."""
        if entry is MISSING:
            entry = await self.servers.get_or_load(server_id)
        token, if_none_match = _token_and_etag(request)
        result = self._serve(request, route, server_id, tenant_id,
                             entry, token, if_none_match)  # type: ignore[arg-type]
        if type(result) is tuple:
            return result
        outcome: Outcome = await result  # type: ignore[misc]
        return outcome

    def _serve(  # noqa: PLR0917 - the warm path passes what it already read
        self,
        request: Request,
        route: Route,
        server_id: str,
        tenant_id: str | None,
        entry: RenderedServer | None,
        token: str | None,
        if_none_match: str | None,
        may_wait: bool = True,
    ) -> Outcome | Awaitable[Outcome]:
        try:
            if entry is None or (
                tenant_id is not None and entry.project_id != tenant_id
            ):
                # Same answer for "no such server" and "not your server": a
                # tenant mismatch must not confirm that the id exists.
                raise NotFound("server", server_id, "server not found")
            if entry.refresh_at < FOREVER and entry.refresh_at <= self._monotonic():
                self.servers.refresh(server_id)
            imds = entry.imds
            if imds.endpoint is EndpointState.DISABLED:
                raise EndpointDisabled("the metadata endpoint is disabled for this server")
            if route.kind is RouteKind.TOKEN:
                return self._tokens.issue(request, server_id, imds.hop_limit), server_id
            self._tokens.authorise(token, server_id, imds.tokens)
            if route.kind is RouteKind.PASSWORD and request.method == "POST":
                return self._writes.password(server_id, password_from_post(request))
            if route.kind is RouteKind.PHONE_HOME:
                return self._writes.phone_home(request, route, entry.server)
            if route.kind is RouteKind.IDENTITY_TOKEN:
                return self._identity_token(request, entry.server), server_id
            if route.kind is RouteKind.GUEST_ATTRIBUTES:
                return self._guest_attributes.answer(request, route.inside, server_id)
            document = self._document(entry.documents, route)
            if document is None:
                raise NotFound("path", route.key, "not found")
            if request.query and may_wait:
                wait = parse_wait(request.query, self.config.wait_max_seconds)
                if wait is not None:
                    return self._wait_for_change(request, route, server_id, tenant_id, token,
                                                 document.etag, wait)
            return self._answers.respond(document, if_none_match), server_id
        except CloudseedError as error:
            return self._refused(error, server_id)

    async def _wait_for_change(  # noqa: PLR0917 - what _serve already checked
        self, request: Request, route: Route, server_id: str, tenant_id: str | None,
        token: str | None, etag: str, wait: WaitForChange,
    ) -> Outcome:
        """The document once its ETag is not the guest's (or at the timeout)."""
        baseline = wait.last_etag if wait.last_etag is not None else bare_etag(etag)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait.timeout_seconds
        while True:
            if bare_etag(etag) != baseline:
                changed = True
            else:
                remaining = deadline - loop.time()
                changed = remaining > 0 and await self._waiters.wait(server_id, remaining)
            # Served afresh, with every check again (the server may be gone,
            # its token policy or the endpoint changed while we waited).
            entry = self._held_or_ready(server_id)
            if entry is MISSING:
                entry = await self.servers.get_or_load(server_id)
            result = self._serve(request, route, server_id, tenant_id, entry,  # type: ignore[arg-type]
                                 token, None, may_wait=False)
            assert isinstance(result, tuple)  # documents answer at once
            response = result[0]
            etag = next((v for k, v in response.headers if k.lower() == "etag"), "")
            if not changed or response.status != 200 or bare_etag(etag) != baseline:
                return result

    def _document(self, documents: ServerDocuments, route: Route) -> Document | None:
        section = route.section
        if section is None:
            return None
        rendered = documents.rendered(section)
        if rendered is None:
            # First touch of this section (a version directory) for this server.
            rendered = documents.section(section)
            self.metrics.section_renders.inc()
        return rendered.get(route.inside)

    def _identity_token(self, request: Request, server: Server) -> Response:
        audience, full = identitytoken.parse_query(request.query)
        signer = self._loader.identity.signer
        if signer is None:
            raise NotFound("path", request.path,
                           "no identity key yet: the operator runs cloudseed identity rotate")
        body = identitytoken.claims(
            server, audience, full=full, issuer=self.config.issuer, now=int(self._clock()),
            ttl_seconds=self.config.identity_token_ttl_seconds)
        return Response(200, signer.token(body), content_type=TEXT_PLAIN)

    async def _forget(self, server_id: str) -> None:
        """Serve a server this worker just wrote afresh: not from the cache, nor from
        the map's entry until it holds the write."""
        if self._ready is not None:
            self._ready.changed((server_id,), await self._run_store(self._store.revision))
        self.servers.drop((server_id,))

    # -- loading --------------------------------------------------------------

    async def _run_store(self, func: Callable[..., _T], *args: object) -> _T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    def _held_or_ready(self, server_id: str) -> object:
        """The server's held entry (None: no such server), else the ready map's, now held;
        MISSING when neither has it: the caller loads it from the store."""
        entry = self.servers.entries.get(server_id, MISSING)
        if entry is MISSING:
            ready = self._from_ready_map(server_id)
            if ready is not None:
                return ready
        return entry

    def _from_ready_map(self, server_id: str) -> RenderedServer | None:
        """The server from the per-host ready map, held like a loaded one; None if the
        map has no current entry (the caller takes the store path)."""
        if self._ready is None:
            return None
        entry = self._ready.rendered(server_id, self._loader.options())
        if entry is not None:
            self.servers.offer(server_id, entry)
        return entry

    async def _load_identity_keys(self) -> None:
        """Sign with the store's newest identity key; re-sign every server when it changed."""
        try:
            keys = await self._run_store(self._store.list_identity_keys)
        except CloudseedError as error:
            # The feed retries: the next change of keys loads them again.
            _log.warning("identity keys not loaded", extra={"fields": {"error": str(error)}})
            self._identity_loaded = False
            return
        self._identity_loaded = True
        changed = self._loader.identity.update(keys)
        if self._ready is not None:
            self._ready.fingerprint = fingerprint(self._loader.options(),
                                                  self.config.ready_sections)
        if changed:
            self.servers.drop_all()
            if self._prefetch is not None and self._follower is not None:
                # Re-signed documents for everyone (start-up fills after this).
                self._prefetch.changed(None)

    async def _load_address(self, address: str) -> str | None:
        return await self._run_store(self._store.server_id_by_ip, address)

    # -- admin listener -------------------------------------------------------

    def handle_admin(self, request: Request) -> Response:
        """``/healthz`` and ``/metrics`` (``http.health``): served on the admin listener only."""
        response = self._status(request)
        assert isinstance(response, Response)
        return response

    def problems(self) -> list[str]:
        follower = self._follower
        return [p for p in (self._store.health.problem(),
                            follower.problem() if follower else None) if p]

    def on_handler_error(self, request: Request, exc: Exception) -> Response:
        """The server's hook for a handler bug: log and count it; the guest hears Nova's words."""
        self.failures.record(exc, request.method, request.path)
        return Response(500, UNKNOWN_ERROR.encode())


def _token_and_etag(request: Request) -> tuple[str | None, str | None]:
    """The session token (either name) and If-None-Match, in one pass."""
    token = if_none_match = None
    for name, value in request.headers:
        if name == headers.IF_NONE_MATCH:
            if_none_match = value
        elif name == headers.TOKEN or (name == headers.TOKEN_ALIAS and token is None):
            token = value
    return token, if_none_match


def build_metadata_app(
    store: Store,
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    token_key: bytes | None = None,
    registry: Registry | None = None,
    access_log: AccessLog | None = None,
    front_resolves: bool = False,
) -> MetadataApp:
    """The in-process entry (``cloudseed serve`` and tests).

    ``await app.start()`` before serving ``app.handle`` (and ``app.handle_admin``
    on a separate listener); ``await app.stop()`` after. Raises ``ConfigError``
    for settings that must not start. ``token_key`` (tests, the bench) stands in
    for the store's when ``api.token_key`` is unset.
    """
    config = check_api_settings(settings, token_key or stored_token_key(settings, store))
    return MetadataApp(
        store, config, clock=clock, monotonic=monotonic, registry=registry, access_log=access_log,
        front_resolves=front_resolves,
    )
