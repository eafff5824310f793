"""Follows the store's change feed and tells the caches what changed.

A daemon thread blocks in ``store.wait_for_change`` (SQLite polls, PostgreSQL
is woken by NOTIFY), reads ``changes_since`` and hands the set of changed
server ids to the event loop. Other entity kinds arrive already expanded into
server TOUCH rows by the store, so server ids are all the caches need.

When the feed cannot be read (database down) or a batch is too large to read
in one go, the follower asks for everything to be dropped: serving a stale
answer is worse than one extra render per server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from cloudseed.log import get_logger
from cloudseed.store.protocol import EntityKind, Store

_log = get_logger("cloudseed.api.follower")

# How long one wait blocks; bounds how long ``stop`` takes. Changes wake the
# wait early, so this does not delay visibility.
WAIT_SECONDS = 0.5
# Rows read per batch; a larger backlog means "drop everything".
BATCH_ROWS = 10_000
# Pause after a failed read, so a dead database is not hammered.
RETRY_SECONDS = 1.0

# Called on the loop with changed server ids, or None for "drop everything".
OnChange = Callable[[frozenset[str] | None], None]


class ChangeFollower:
    __slots__ = ("_loop", "_on_change", "_stop", "_store", "_thread", "last_ok", "revision")

    def __init__(self, store: Store, on_change: OnChange, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._on_change = on_change
        self._loop = loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.revision = 0
        self.last_ok = time.monotonic()

    def start(self) -> None:
        """Start from the store's current revision (call before serving)."""
        self.revision = self._store.revision()
        self.last_ok = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="change-follower", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS * 4)
            self._thread = None

    def _emit(self, ids: frozenset[str] | None) -> None:
        try:
            self._loop.call_soon_threadsafe(self._on_change, ids)
        except RuntimeError:  # the loop closed while we were waiting
            self._stop.set()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as exc:
                if not failing:
                    _log.warning(
                        "change feed unreadable; caches will be dropped when it returns",
                        extra={"fields": {"error": f"{type(exc).__name__}: {exc}"}},
                    )
                failing = True
                self._stop.wait(RETRY_SECONDS)
                continue
            if failing:
                failing = False
                _log.info("change feed readable again; dropping all cached servers")
                self._emit(None)
            self.last_ok = time.monotonic()

    def _step(self) -> None:
        latest = self._store.wait_for_change(self.revision, WAIT_SECONDS)
        if latest <= self.revision:
            return
        changes = self._store.changes_since(self.revision, BATCH_ROWS)
        if len(changes) >= BATCH_ROWS:
            # Part of a revision may be cut off; take no chances.
            self.revision = max(latest, changes[-1].revision)
            self._emit(None)
            return
        ids = frozenset(c.id for c in changes if c.kind == EntityKind.SERVER)
        self.revision = max([latest, *(c.revision for c in changes)])
        if ids:
            self._emit(ids)
