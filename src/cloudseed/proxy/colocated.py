"""The co-located mode of the shared front: resolve, authorise and answer in-process.

With ``dataplane.front_answers = "co-located"`` the shared front (``proxy.front``)
does not relay a guest's request to the agent: it answers it itself, from

* the listener the connection arrived on -- its scope (router or network id),
  fixed when the data plane's listener file was read, never anything the guest
  sends;
* the agent's address map (``agent.addressmap`` held by ``agent.followed``:
  built in bulk from one store snapshot, kept current from the change feed),
  which turns (scope, guest source address) into (server, project, port) with
  Neutron's rules -- the very code the agent resolves with;
* the metadata API's own ``MetadataApp``, handed that resolution
  (``handle_resolved``): the same tenant, endpoint, token, password,
  phone-home, guest-attribute and wait-for-change logic as behind the agent,
  reading the per-host ready map (``api.ready``) when the host keeps one.

No HTTP hop and no signing: the guest's connection is the app's own, so a
token's hop limit is applied on the guest's socket as in direct mode. The
front's header hygiene and per-source limits stay in front of all this
(``RelayCore.admit``), and the agent's per-server rate limit
(``agent.rate_limit_*``) applies here since no agent is asked.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from cloudseed.agent.followed import FollowedMap
from cloudseed.agent.ratelimit import RateLimiter
from cloudseed.agent.resolve import Scope, ScopeKind, parse_source
from cloudseed.api.app import MetadataApp, build_metadata_app
from cloudseed.api.identify import ProxyClaim
from cloudseed.errors import CloudseedError, RateLimited
from cloudseed.http.encoding import encode_head
from cloudseed.http.message import Response
from cloudseed.http.metrics import Registry
from cloudseed.http.server import answer_when_ready, wire_request
from cloudseed.http.status import error_response_text
from cloudseed.http.wire import WireConnection
from cloudseed.proxy.relay import ProxyScope
from cloudseed.settings import ApiMode, Settings
from cloudseed.store.protocol import Store

# Resolutions kept for guests seen recently (dropped whenever the map changes),
# as the agent keeps its prepared answers: a boot storm's working set.
RESOLVED_KEPT = 16_384


def answer_scope(scope: ProxyScope) -> Scope:
    """The address map's scope for a listener's ``ProxyScope``."""
    if scope.router_id:
        return Scope(ScopeKind.ROUTER, scope.router_id)
    return Scope(ScopeKind.NETWORK, scope.network_id)


def colocated_settings(settings: Settings) -> Settings:
    """The API settings the front's metadata app runs with: the guest's connection is
    the app's own, as in direct mode, and nothing is forwarded to it, so no
    X-Forwarded-For is ever believed (the hygiene removes it anyway)."""
    api = dataclasses.replace(settings.api, mode=ApiMode.DIRECT, trusted_proxy_cidrs=())
    return dataclasses.replace(settings, api=api)


@dataclass(frozen=True, slots=True)
class _Resolved:
    claim: ProxyClaim | None
    refusal: Response | None  # when no server has this (scope, address)


class ColocatedAnswers:
    """The address map and the metadata app of a co-located front, on its loop."""

    def __init__(self, store: Store, settings: Settings, registry: Registry,
                 count: Callable[[int], None]) -> None:
        self.store = store
        self._count = count  # the front's responses by status, for what the app never sees
        self.app: MetadataApp = build_metadata_app(
            store, colocated_settings(settings), registry=registry,
            front_resolves=True)
        self.followed = FollowedMap(store, refuse=self._refuse, on_apply=self._applied,
                                    who="the metadata front")
        agent = settings.agent
        self.limiter = (RateLimiter(agent.rate_limit_per_second, agent.rate_limit_burst)
                        if agent.rate_limit_enabled else None)
        self._resolved: dict[tuple[Scope, str], _Resolved] = {}
        self._answering: set[asyncio.Task[None]] = set()
        self.rate_limited = registry.counter(
            "cloudseed_front_rate_limited_total",
            "Guest requests refused by the per-server rate limit (co-located front).")

    async def start(self) -> None:
        """Serve at once: the map builds meanwhile (requests wait for it, bounded)."""
        await self.app.start()
        self.followed.start()

    async def stop(self) -> None:
        await self.followed.stop()
        await self.app.stop()

    def problems(self) -> list[str]:
        return [*self.followed.problems(), *self.app.problems()]

    def _applied(self, changed: bool, revision: int) -> None:
        if changed:
            self._resolved.clear()  # resolved from the old map

    def answer(self, conn: WireConnection, scope: Scope, headers: list[tuple[bytes, bytes]],
               ) -> None:
        """One guest request, after the front's hygiene (``headers`` is what it kept)."""
        amap = self.followed.map
        if amap is None:
            self.followed.park(conn, lambda: self.answer(conn, scope, headers))
            return
        key = (scope, conn.peer)
        resolved = self._resolved.get(key)
        if resolved is None:
            try:
                address = parse_source(conn.peer)
            except CloudseedError as exc:  # not from a socket of ours: cannot happen
                self._refuse(conn, exc)
                return
            found = amap.resolve(scope, address)
            if isinstance(found, CloudseedError):
                resolved = _Resolved(None, error_response_text(found))
            else:
                resolved = _Resolved(ProxyClaim(found.server_id, found.project_id), None)
            if len(self._resolved) >= RESOLVED_KEPT:
                self._resolved.clear()
            self._resolved[key] = resolved
        claim = resolved.claim
        if claim is None:
            assert resolved.refusal is not None
            self._send(conn, resolved.refusal)
            return
        if self.limiter is not None:
            wait = self.limiter.acquire(claim.instance_id)
            if wait:
                self.rate_limited.inc()
                self._refuse(conn, RateLimited(wait))
                return
        # The peer without its zone: the guest's address, as the API's logs show it.
        request = wire_request(conn, headers, conn.peer.partition("%")[0])
        try:
            result = self.app.handle_resolved(request, claim)
        except Exception as exc:  # a handler bug must not kill the front
            result = self.app.on_handler_error(request, exc)
        answer_when_ready(conn, request, result, self.app.on_handler_error, self._answering)

    def _refuse(self, conn: WireConnection, error: CloudseedError) -> None:
        self._send(conn, error_response_text(error))

    def _send(self, conn: WireConnection, response: Response) -> None:
        self._count(response.status)
        conn.respond(encode_head(response), response.body, close=response.close)


__all__ = ["RESOLVED_KEPT", "ColocatedAnswers", "answer_scope", "colocated_settings"]
