"""Prefetch: every server's record is in the worker before its guest asks.

A boot storm is cold: almost every request is the first one for its server,
and on the lazy path (``LoadOnceCache``) each of them waits for a store query
on a store thread. So the worker reads servers in bulk instead
(``store.server_views``: one snapshot, a few statements per 5,000 servers):

* at start, before it serves: the first ``api.cache_max_servers`` servers by
  id (``fill``);
* from the change feed: the servers of each announced batch, re-read together
  once the batch is dropped from the cache (``changed``).

What is held is a ``RenderedServer`` whose sections render on first request
(cheap, in the worker, no store); nothing else changes on the warm path.
A server that is not held (beyond the bound, or dropped while a bulk read of
it was in flight) takes the lazy path, counted by
``cloudseed_api_cache_misses_total`` as before.

Ordering: a change announced while a bulk read is in flight marks that read's
copy of the changed servers stale (as ``LoadOnceCache`` does for one key);
they are not held from that read but re-read in the next batch. ``offer``
never replaces a value or a load that began after the drop.

Dynamic vendor data (``[[vendordata.targets]]``) is fetched per server over
HTTP with its own expiry, so a worker with targets does not prefetch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

from cloudseed.api.cache import LoadOnceCache, RenderedServer
from cloudseed.api.observe import ApiMetrics
from cloudseed.errors import CloudseedError
from cloudseed.log import get_logger
from cloudseed.model import ServerView

_log = get_logger("cloudseed.api.prefetch")

# (server ids, or None for "the first ``limit`` by id"; limit) → (revision, views)
ReadViews = Callable[[Sequence[str] | None, int], Awaitable[tuple[int, Sequence[ServerView]]]]


class Prefetch:
    """Keeps ``cache`` filled from bulk reads. Lives on the event loop, like the cache."""

    def __init__(
        self,
        cache: LoadOnceCache[str, RenderedServer | None],
        read: ReadViews,
        render: Callable[[ServerView], RenderedServer],
        limit: int,
        metrics: ApiMetrics,
    ) -> None:
        self._cache = cache
        self._read = read
        self._render = render
        self._limit = limit
        # Waiting for the next bulk read; ``_everything`` stands for all servers.
        self._pending: set[str] = set()
        self._everything = False
        # One set per bulk read in flight: the servers changed since it began.
        self._reading: list[set[str]] = []
        self._task: asyncio.Task[None] | None = None
        self._held = metrics.prefetched
        self._failed = metrics.prefetch_failures

    async def fill(self) -> None:
        """Read the first ``limit`` servers now (start-up, before serving)."""
        await self._read_and_hold(None)

    def changed(self, server_ids: Iterable[str] | None) -> None:
        """These servers (None: every server) were dropped from the cache: re-read them."""
        if server_ids is None:
            self._everything = True
            for stale in self._reading:
                stale.add("")  # no server id is empty: "the whole read is stale"
        else:
            ids = set(server_ids)
            self._pending |= ids
            for stale in self._reading:
                stale.update(ids)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        try:
            while self._everything or self._pending:
                if self._everything:
                    self._everything, self._pending = False, set()
                    await self._read_and_hold(None)
                else:
                    batch, self._pending = self._pending, set()
                    await self._read_and_hold(sorted(batch))
        finally:
            self._task = None

    async def _read_and_hold(self, server_ids: Sequence[str] | None) -> None:
        stale: set[str] = set()
        self._reading.append(stale)
        try:
            _revision, views = await self._read(server_ids, self._limit)
        except CloudseedError as error:
            # The store is away or refused: these servers load lazily when asked.
            self._failed.inc()
            _log.warning("bulk read of servers failed; they load on request",
                         extra={"fields": {"error": str(error)}})
            return
        finally:
            self._reading.remove(stale)
        if "" in stale:
            return  # everything changed meanwhile; a full re-read is queued
        held = 0
        for view in views:
            if view.server.id not in stale and self._cache.offer(
                    view.server.id, self._render(view)):
                held += 1
        self._held.inc(amount=float(held))


__all__ = ["Prefetch"]
