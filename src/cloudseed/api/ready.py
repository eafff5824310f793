"""A worker's side of the per-host ready map: which entries it may serve.

The renderer (``ready/renderer.py``) keeps the map; a worker reads an entry
on a server's first request (a memory-mapped B-tree lookup and one
``marshal.loads``: no store, no render, no thread hand-off). It serves an
entry only when it is sure the entry is current, and otherwise takes the
store path as before, so a slow, stopped or broken renderer costs speed,
never correctness:

* the map must be built from this worker's store (``store_id``) and hold
  every change up to the revision the worker began following the feed at
  (``since``) -- until then the worker does not use it;
* after that, the worker's own change follower tells it each server's
  newest change (``changed``); an entry rendered before it is not served;
* the entry must be rendered with the options this worker renders with
  (``fingerprint``: settings, identity key, cloudseed version).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from cloudseed.api.cache import RenderedServer
from cloudseed.api.config import ApiConfig
from cloudseed.http.metrics import Counter
from cloudseed.log import get_logger
from cloudseed.model import ServerView
from cloudseed.ready.codec import (
    Entry,
    decode_imds,
    decode_view,
    document_table,
    section_documents,
    unpack,
)
from cloudseed.ready.store import ReadyMap, map_path
from cloudseed.render.document import Document
from cloudseed.render.options import RenderOptions
from cloudseed.render.sections import ServerDocuments

_log = get_logger("cloudseed.api.ready")

# How often a worker looks again for a map it could not use yet.
RETRY_SECONDS = 1.0
# Servers a worker keeps decoded when the ready map holds them all: another is a
# map read away (tens of µs), and every object held is walked by each full
# garbage collection (20,000 decoded servers made 200-300 ms pauses).
READY_HELD_SERVERS = 2000


def held_servers(config: ApiConfig) -> int:
    """The bound of a worker's cache of servers (``api.cache_max_servers``, lower with
    the ready map)."""
    if config.ready_map is not None:
        return min(config.cache_max_servers, READY_HELD_SERVERS)
    return config.cache_max_servers


class ReadyDocuments(ServerDocuments):
    """A server's documents: the map's sections decoded when first asked for, the
    others rendered here on first request from the entry's view (decoded then,
    still without the store)."""

    __slots__ = ("_raw", "_table", "_view_bytes")

    def __init__(self, entry: Entry, options: RenderOptions) -> None:
        super().__init__(None, options)  # decoded by ``view`` when first needed
        self._view_bytes = entry.view
        self._table: bytes | tuple[Document, ...] = entry.documents
        self._raw = entry.sections

    @property
    def view(self) -> ServerView:
        if self._view is None:
            self._view = decode_view(self._view_bytes)
        return self._view

    def rendered(self, section: str) -> dict[str, Document] | None:
        found = super().rendered(section)
        if found is None:
            raw = self._raw.pop(section, None)
            if raw is not None:
                if isinstance(self._table, bytes):
                    self._table = document_table(self._table)
                found = self._sections[section] = section_documents(self._table, raw)
        return found

    def section(self, section: str) -> dict[str, Document]:
        documents = self.rendered(section)
        return documents if documents is not None else super().section(section)


class ReadySource:
    """Lives on the worker's loop, like its cache."""

    def __init__(self, path: Path, store_id: str, since: int, outcomes: Counter,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._path = map_path(path, store_id)
        self._store_id = store_id
        self._since = since
        self._monotonic = monotonic
        self._map: ReadyMap | None = None
        self._next_try = 0.0
        # Server → the newest change the feed announced for it and the map may
        # not hold yet (pruned as the map's revision passes it).
        self._changed: dict[str, int] = {}
        self.fingerprint = ""
        self._outcomes = outcomes

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def changed(self, server_ids: Iterable[str], revision: int) -> None:
        for server_id in server_ids:
            # Never lowered: this worker's own write may be known before the feed's.
            self._changed[server_id] = max(revision, self._changed.get(server_id, 0))
        if self._map is not None and self._changed:
            _store_id, held = self._map.built_from()
            self._changed = {s: r for s, r in self._changed.items() if r > held}

    def rendered(self, server_id: str, options: RenderOptions) -> RenderedServer | None:
        """The server as a worker holds it (its documents decoded when first asked
        for), from its current entry; None: take the store path."""
        found = self.entry(server_id)
        if found is None:
            return None
        return RenderedServer(found.project_id, decode_imds(found.imds),
                              ReadyDocuments(found, options))

    def entry(self, server_id: str) -> Entry | None:
        """The server's current entry, or None: take the store path."""
        ready = self._map if self._map is not None else self._open()
        if ready is None:
            self._outcomes.inc("absent")
            return None
        blob, held = ready.get_at(server_id)
        entry = unpack(blob) if blob is not None else None
        if entry is None:
            self._outcomes.inc("absent")
            return None
        if not self._current(server_id, entry, held):
            self._outcomes.inc("stale")
            return None
        self._outcomes.inc("hit")
        return entry

    def _current(self, server_id: str, entry: Entry, held: int) -> bool:
        """``held``: the map's revision in the transaction the entry was read in."""
        if entry.fingerprint != self.fingerprint:
            return False
        changed = self._changed.get(server_id)
        if changed is None:
            return True
        # The feed's revision for a change is its batch's last one, and the map may
        # have written the server before that batch's end: the map's own revision
        # (read with the entry) says when every change up to it is in.
        if entry.revision >= changed or held >= changed:
            del self._changed[server_id]
            return True
        return False

    def _open(self) -> ReadyMap | None:
        now = self._monotonic()
        if now < self._next_try:
            return None
        self._next_try = now + RETRY_SECONDS
        ready = ReadyMap.reader(self._path)
        if ready is None:
            return None
        store_id, revision = ready.built_from()
        if store_id != self._store_id or revision < self._since:
            # Another store's map, or one still catching up with ours: not yet.
            ready.close()
            return None
        _log.info("ready map in use", extra={"fields": {"path": str(self._path),
                                                        "revision": revision}})
        self._map = ready
        return ready


__all__ = ["READY_HELD_SERVERS", "ReadyDocuments", "ReadySource", "held_servers"]
