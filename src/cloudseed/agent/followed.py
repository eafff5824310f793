"""An address map built in bulk, kept current from the change feed, and the requests
that wait for it: what every holder of ``agent.addressmap`` needs around the map.

The agent and the co-located shared front (``proxy.colocated``) both hold one.
``start`` builds the map in a worker thread (retrying with the follower's
back-off while the store is unreachable), then follows the feed from the
snapshot's revision. A request that arrives before the map is built is
``park``-ed: it is resumed once the map is there, or refused with
``NotLoaded`` (503, ``Retry-After``) after ``LOAD_WAIT_SECONDS``, and at once
while the store is unreachable -- waiting on a dead store helps nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import time
from collections.abc import Callable

from cloudseed.agent.addressmap import AddressMap, MapUpdate, digest
from cloudseed.errors import NotLoaded, StoreUnavailable
from cloudseed.heap import freeze_long_lived
from cloudseed.http.wire import WireConnection
from cloudseed.log import get_logger
from cloudseed.store.follow import FIRST_RETRY_SECONDS, MAX_RETRY_SECONDS, ChangeFollower
from cloudseed.store.health import describe, since_text
from cloudseed.store.protocol import Store

log = get_logger("agent")

# A request that arrives while the address map is being built waits this long
# for it (a million ports take seconds), then gets 503 with Retry-After.
LOAD_WAIT_SECONDS = 5.0


class FollowedMap:
    """One ``AddressMap`` and its follower, on one event loop.

    A parked request's ``resume`` serves it once the map is built;
    ``refuse(conn, error)`` answers one that cannot wait any longer;
    ``on_apply(changed, revision)`` runs after each batch is applied (the
    owner drops what it prepared from the old map when ``changed``).
    """

    def __init__(self, store: Store, *,
                 refuse: Callable[[WireConnection, NotLoaded], None],
                 on_apply: Callable[[bool, int], None], who: str) -> None:
        self.store = store
        # None until built; then replaced never, updated in place on this loop.
        self.map: AddressMap | None = None
        self.revision = 0
        self._refuse = refuse
        self._on_apply = on_apply
        self._who = who  # "the metadata agent", in the 503's text
        self._follower: ChangeFollower[MapUpdate] | None = None
        self._loader: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._failing_since: float | None = None
        self._failure = ""
        # Requests waiting for the map: each one's expiry and how to go on.
        self._parked: dict[WireConnection, tuple[asyncio.TimerHandle, Callable[[], None]]] = {}
        self._revision_waiters: list[tuple[int, asyncio.Future[None]]] = []

    def start(self) -> None:
        """Begin building (in a worker thread); requests may be parked meanwhile."""
        self._loader = asyncio.get_running_loop().create_task(self._load())

    async def wait_loaded(self, timeout_seconds: float = 30.0) -> None:
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
                if self._failing_since is None:
                    self._failing_since = time.time()
                    if not isinstance(exc, StoreUnavailable):  # store.health logs outages
                        log.exception("building the address map failed; retrying")
                self._failure = describe(exc)
                for conn in list(self._parked):
                    self._unpark(conn)
                    self._refuse(conn, self.not_loaded())
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)
        # Follow from the snapshot's revision: every later change is applied
        # after it, in order, and none before it is applied twice.
        self._follower = ChangeFollower(self.store, lambda changes: digest(changes, self.store),
                                        self.apply_update, asyncio.get_running_loop())
        self._follower.start(built.revision)
        self.map, self._failing_since = built, None
        _return_freed_memory()
        self.apply_update(MapUpdate(), built.revision)
        # The map lives as long as the process: out of every later full GC pass.
        freeze_long_lived()
        self._loaded.set()
        log.info("address map built", extra={"fields": {
            "ports": len(built), "revision": built.revision,
            "seconds": round(time.perf_counter() - started, 3)}})
        for conn in list(self._parked):
            self._unpark(conn)()

    async def stop(self) -> None:
        if self._loader is not None:
            self._loader.cancel()
            await asyncio.gather(self._loader, return_exceptions=True)
        for conn in list(self._parked):
            self._unpark(conn)
            self._refuse(conn, self.not_loaded())
        if self._follower is not None:
            await asyncio.to_thread(self._follower.stop)

    # -- requests waiting for the map ------------------------------------------

    def not_loaded(self) -> NotLoaded:
        return NotLoaded(f"{self._who} is starting; try again shortly", 1)

    def park(self, conn: WireConnection, resume: Callable[[], None]) -> None:
        """Hold ``conn``'s request until the map is built: then ``resume()``."""
        if self._failing_since is not None:
            self._refuse(conn, self.not_loaded())  # no point waiting on a dead store
            return
        expire = asyncio.get_running_loop().call_later(LOAD_WAIT_SECONDS, self._expire, conn)
        self._parked[conn] = (expire, resume)

    def _unpark(self, conn: WireConnection) -> Callable[[], None]:
        expire, resume = self._parked.pop(conn)
        expire.cancel()
        return resume

    def _expire(self, conn: WireConnection) -> None:
        if self._parked.pop(conn, None) is not None:
            self._refuse(conn, self.not_loaded())

    # -- change feed ------------------------------------------------------------

    def apply_update(self, update: MapUpdate, revision: int) -> None:
        # The map changes here, on the loop, between requests: an answer
        # computed before this line is never served after it (``on_apply``
        # drops what the owner prepared).
        changed = self.map is not None and self.map.apply(update, revision)
        self.revision = max(self.revision, revision)
        self._on_apply(changed, self.revision)
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

    def problems(self) -> list[str]:
        follower = self._follower
        loading = since_text("address map not built", self._failing_since, self._failure)
        return [p for p in (self.store.health.problem(), loading,
                            follower.problem() if follower else None) if p]


def _return_freed_memory() -> None:
    """Give the build's transient rows back to the kernel (glibc keeps freed heap otherwise).

    The build runs in a worker thread, whose malloc arena keeps what a million
    streamed rows used; at that size this is tens of MiB of the 256 MiB budget.
    """
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL(None).malloc_trim(0)


__all__ = ["LOAD_WAIT_SECONDS", "FollowedMap"]
