"""Render once, serve bytes: per-key caches that load each key once.

``LoadOnceCache`` holds ready values (a server's documents, the server
behind an address) and loads a missing key exactly once however many
requests ask for it at the same time. It lives on the event loop thread and
takes no locks: the change follower (``follower.py``) hands it the ids to drop
through ``loop.call_soon_threadsafe``.

A drop that arrives while the same key is loading marks that load stale; the
load then runs again, so a value read before a change is never cached after
the change was announced.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cloudseed.log import get_logger
from cloudseed.model import ImdsOptions, Server
from cloudseed.render.sections import ServerDocuments

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_log = get_logger("cloudseed.api.cache")

# Marks "not cached" where None is a cached value (an unknown server).
MISSING: object = object()
FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class RenderedServer:
    """One server at one revision: what every request checks (its project and
    IMDS options) and its documents (rendered a section at a time, on first
    request, or read ready from the host's map), shared by requests."""

    project_id: str
    imds: ImdsOptions
    documents: ServerDocuments
    # Monotonic time after which the entry should be refreshed (dynamic vendor
    # data with a max-age, or a target that failed); FOREVER = until it changes.
    refresh_at: float = FOREVER

    @classmethod
    def of(cls, documents: ServerDocuments, refresh_at: float = FOREVER) -> RenderedServer:
        server = documents.view.server
        return cls(server.project_id, server.imds, documents, refresh_at)

    @property
    def server(self) -> Server:
        """The whole record (decoded on first use for a map's entry)."""
        return self.documents.view.server


class _Load(Generic[V]):
    __slots__ = ("future", "stale")

    def __init__(self) -> None:
        self.stale = False
        self.future: asyncio.Future[V] | None = None


class LoadOnceCache(Generic[K, V]):
    """A bounded map of loaded values with single-flight loading."""

    __slots__ = ("_load", "_loading", "_max_entries", "entries")

    def __init__(self, load: Callable[[K], Awaitable[V]], max_entries: int) -> None:
        self._load = load
        self._max_entries = max_entries
        # Public for the warm path: ``cache.entries.get(key, MISSING)`` is the
        # whole cost of a hit.
        self.entries: dict[K, V] = {}
        self._loading: dict[K, _Load[V]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    async def get_or_load(self, key: K) -> V:
        value = self.entries.get(key, MISSING)
        if value is not MISSING:
            return value  # type: ignore[return-value]
        return await asyncio.shield(self._start(key))

    def refresh(self, key: K) -> None:
        """Reload ``key`` in the background; the old value serves meanwhile."""
        self._start(key)

    def offer(self, key: K, value: V) -> bool:
        """Hold ``value`` read elsewhere (a bulk read) unless the key is held or loading:
        a value or load that exists began after the bulk read was made stale, or with it."""
        if key in self.entries or key in self._loading:
            return False
        self._put(key, value)
        return True

    def drop(self, keys: Iterable[K]) -> None:
        for key in keys:
            self.entries.pop(key, None)
            pending = self._loading.get(key)
            if pending is not None:
                pending.stale = True

    def drop_where(self, predicate: Callable[[K, V], bool]) -> None:
        self.drop([key for key, value in self.entries.items() if predicate(key, value)])

    def drop_all(self) -> None:
        self.entries.clear()
        for pending in self._loading.values():
            pending.stale = True

    def _start(self, key: K) -> asyncio.Future[V]:
        pending = self._loading.get(key)
        if pending is None:
            pending = self._loading[key] = _Load()
            pending.future = asyncio.ensure_future(self._run(key, pending))
            pending.future.add_done_callback(_retrieve)
        assert pending.future is not None
        return pending.future

    async def _run(self, key: K, pending: _Load[V]) -> V:
        try:
            while True:
                pending.stale = False
                value = await self._load(key)
                if not pending.stale:
                    break
            self._put(key, value)
            return value
        finally:
            del self._loading[key]

    def _put(self, key: K, value: V) -> None:
        if key not in self.entries and len(self.entries) >= self._max_entries:
            # Oldest first: dicts keep insertion order.
            self.entries.pop(next(iter(self.entries)))
        self.entries[key] = value


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A background refresh nobody awaits must not end as "exception never
    # retrieved"; the loader already logged what went wrong.
    if not future.cancelled():
        future.exception()
