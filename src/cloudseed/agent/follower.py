"""Follows the store's change feed in a thread and hands invalidations to the loop.

The store is synchronous (SQLAlchemy); ``wait_for_change`` blocks, so it
lives in its own thread. What to drop is computed there too (it may read the
new state of a changed port), and only the dropping happens on the event
loop, which owns the cache.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from cloudseed.agent.cache import Invalidation, invalidation_for
from cloudseed.log import get_logger
from cloudseed.store.protocol import Store

log = get_logger("agent.follower")

# How long one wait blocks; bounds how long stop() takes. PostgreSQL wakes
# the wait at once on NOTIFY, so this is not the propagation delay.
WAIT_SECONDS = 0.25
# After a store error, wait this long before trying again.
RETRY_SECONDS = 1.0
CHANGES_PER_READ = 10_000

ApplyFn = Callable[[Invalidation, int], None]


class ChangeFollower:
    def __init__(self, store: Store, apply: ApplyFn, loop: asyncio.AbstractEventLoop) -> None:
        self._store = store
        self._apply = apply
        self._loop = loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.revision = 0

    def start(self) -> int:
        """Start from the store's current revision (read here, so a failure stops start-up)."""
        self.revision = self._store.revision()
        self._thread = threading.Thread(target=self._run, name="change-follower", daemon=True)
        self._thread.start()
        return self.revision

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS * 8)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                log.exception("change feed read failed; retrying",
                              extra={"fields": {"revision": self.revision}})
                self._stop.wait(RETRY_SECONDS)

    def _step(self) -> None:
        latest = self._store.wait_for_change(self.revision, WAIT_SECONDS)
        while latest > self.revision and not self._stop.is_set():
            changes = self._store.changes_since(self.revision, CHANGES_PER_READ)
            if not changes:
                # A revision with nothing recorded (a no-op transaction).
                self._publish(Invalidation(), latest)
                return
            invalidation = invalidation_for(changes, self._store)
            self._publish(invalidation, changes[-1].revision)

    def _publish(self, invalidation: Invalidation, revision: int) -> None:
        self.revision = revision
        try:
            self._loop.call_soon_threadsafe(self._apply, invalidation, revision)
        except RuntimeError:
            self._stop.set()  # the loop is closed: the agent is shutting down
