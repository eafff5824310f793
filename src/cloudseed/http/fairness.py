"""Per-source-address limits: one guest's connections and requests cost other guests nothing.

A server that serves many guests from one listener (the namespace proxy, the
metadata API in direct mode) counts, per source address, the connections it
holds and the requests it has dispatched and not yet answered:

* a connection beyond ``max_connections_per_source`` is answered 429 with
  ``Retry-After`` and closed at once, before any of it is read;
* a request beyond ``max_requests_per_source`` in flight is answered 429 with
  ``Retry-After`` without reaching the tier (the connection stays usable);
* the header deadline (``Limits.header_timeout_seconds``) closes a
  slowloris's connections, and the per-source cap bounds how many it holds
  until then.

Because one source may hold at most ``max_connections / 4`` connections
(a larger setting is cut to that), one source can never exhaust the server's
global cap. When many sources together reach it, the newcomer is not simply
refused: the server closes one idle connection (keep-alive, or headers still
trickling in) of the source that holds the most, if that source holds more
than the newcomer's own source; only when there is no such connection is the
newcomer refused with 503. So at the cap the heaviest users make room, and a
guest with few connections still gets in.

Counters go to the tier's registry (``cloudseed_connections_refused_total``,
``cloudseed_connections_evicted_total``, ``cloudseed_requests_refused_total``,
``cloudseed_request_timeouts_total``, each labelled with the tier).
"""

from __future__ import annotations

import typing

from cloudseed.http.metrics import Registry

if typing.TYPE_CHECKING:
    from cloudseed.http.wire import Limits, WireConnection

# One source may hold at most this share of the global connection cap.
MAX_SHARE_DIVISOR = 4
RETRY_AFTER_SECONDS = 1


def per_source_connection_cap(limits: Limits) -> int:
    """The effective per-source connection cap (0 = off): never above a quarter of the global."""
    wanted = limits.max_connections_per_source
    if wanted <= 0:
        return 0
    return max(1, min(wanted, limits.max_connections // MAX_SHARE_DIVISOR))


class SourceLimits:
    """One server's per-source accounting. Loop-only: no locks."""

    __slots__ = ("_conn_cap", "_evicted", "_in_flight", "_refused", "_req_cap",
                 "_requests_refused", "_tier", "_timeouts", "by_source")

    def __init__(self, limits: Limits, tier: str, registry: Registry) -> None:
        self._conn_cap = per_source_connection_cap(limits)
        self._req_cap = max(0, limits.max_requests_per_source)
        self._tier = tier
        self.by_source: dict[str, set[WireConnection]] = {}
        self._in_flight: dict[str, int] = {}
        self._refused = registry.counter(
            "cloudseed_connections_refused_total",
            "Connections refused at once: over the per-source cap (source) or the server full "
            "with nothing to evict (full).", ("tier", "reason"))
        self._evicted = registry.counter(
            "cloudseed_connections_evicted_total",
            "Idle connections of the heaviest source closed to admit another source at the cap.",
            ("tier",))
        self._requests_refused = registry.counter(
            "cloudseed_requests_refused_total",
            "Requests answered 429 because their source had too many in flight.", ("tier",))
        self._timeouts = registry.counter(
            "cloudseed_request_timeouts_total",
            "Connections closed with 408: headers or body not received in time.", ("tier",))

    # -- connections ----------------------------------------------------------

    def admit(self, conn: WireConnection) -> bool:
        """Count ``conn`` against its source; False if that source is at its cap."""
        if not conn.peer:  # a Unix-socket peer has no address to be fair between
            return True
        held = self.by_source.get(conn.peer)
        if held is None:
            held = self.by_source[conn.peer] = set()
        if self._conn_cap and len(held) >= self._conn_cap:
            if not held:
                del self.by_source[conn.peer]
            self._refused.inc(self._tier, "source")
            return False
        held.add(conn)
        return True

    def release(self, conn: WireConnection) -> None:
        held = self.by_source.get(conn.peer)
        if held is not None:
            held.discard(conn)
            if not held:
                del self.by_source[conn.peer]

    def make_room(self, newcomer: WireConnection) -> bool:
        """At the global cap: close an idle connection of the heaviest source, if heavier."""
        own = len(self.by_source.get(newcomer.peer, ()))
        heaviest = max(self.by_source.values(), key=len, default=None)
        if heaviest is not None and len(heaviest) > own:
            for conn in heaviest:
                if conn is not newcomer and conn.idle:
                    self._evicted.inc(self._tier)
                    conn.close()
                    return True
        self._refused.inc(self._tier, "full")
        return False

    # -- requests -------------------------------------------------------------

    def start_request(self, peer: str) -> bool:
        """Count a dispatched request; False (and nothing counted) if its source is at its cap."""
        if not peer:
            return True
        count = self._in_flight.get(peer, 0)
        if self._req_cap and count >= self._req_cap:
            self._requests_refused.inc(self._tier)
            return False
        self._in_flight[peer] = count + 1
        return True

    def end_request(self, peer: str) -> None:
        count = self._in_flight.get(peer, 0) - 1
        if count > 0:
            self._in_flight[peer] = count
        else:
            self._in_flight.pop(peer, None)

    def timed_out(self) -> None:
        self._timeouts.inc(self._tier)


__all__ = ["RETRY_AFTER_SECONDS", "SourceLimits", "per_source_connection_cap"]
