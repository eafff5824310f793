"""The change follower: the store's change feed, read in a thread, applied on the loop.

Every tier that caches what the store holds (the metadata API's rendered
servers, the agent's resolutions) follows the feed with this one class. A
daemon thread blocks in ``store.wait_for_change`` (SQLite polls, PostgreSQL
is woken by NOTIFY), reads ``changes_since`` in batches that never split a
revision, turns each batch into what the tier must drop (``digest``, in the
thread: it may read the store) and hands that to the event loop (``apply``),
which owns the cache.

Policy while the store is unreachable -- the same for every tier:

* keep serving what is cached: nothing is dropped, because nothing can
  change in a store that cannot be written, and the feed is durable;
* retry with back-off (``FIRST_RETRY_SECONDS`` doubling to
  ``MAX_RETRY_SECONDS``), so a dead database is not hammered;
* log nothing per retry: ``store.health`` logs the outage once when it
  starts and once when it ends, and ``/healthz`` shows it meanwhile;
* on recovery, resume from the last revision applied: every change made
  meanwhile (by another host's control API, say) is read and applied, so no
  cache has to be thrown away wholesale.

Any other failure (a bug in ``digest``) is logged once with its traceback,
retried on the same back-off, and shown by ``problem()`` until it clears.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, NamedTuple, TypeVar

from cloudseed.errors import StoreUnavailable
from cloudseed.log import get_logger
from cloudseed.store.health import since_text
from cloudseed.store.protocol import Change, EntityKind, Store

_log = get_logger("cloudseed.store.follow")

T = TypeVar("T")

# How long one wait blocks; bounds how long ``stop`` takes. PostgreSQL wakes
# the wait at once on NOTIFY, so this is not the propagation delay.
WAIT_SECONDS = 0.25
# Rows read per batch; a larger backlog is read in several.
BATCH_ROWS = 10_000
# Back-off after a failed read.
FIRST_RETRY_SECONDS = 0.25
MAX_RETRY_SECONDS = 5.0

# In the follower's thread: a batch of changes → what the cache must drop.
Digest = Callable[[Sequence[Change]], T]
# On the loop: apply a digest; the cache now reflects the revision given.
Apply = Callable[[T, int], None]


class ChangeFollower(Generic[T]):
    def __init__(
        self,
        store: Store,
        digest: Digest[T],
        apply: Apply[T],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._store = store
        self._digest = digest
        self._apply = apply
        self._loop = loop
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.revision = 0
        self._failing_since: float | None = None
        self._failure = ""

    def start(self, revision: int | None = None) -> int:
        """Follow from ``revision`` (what the tier's own snapshot reflects), else from the
        current revision (an unreachable store then fails start-up)."""
        self.revision = self._store.revision() if revision is None else revision
        self._thread = threading.Thread(target=self._run, name="change-follower", daemon=True)
        self._thread.start()
        return self.revision

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=WAIT_SECONDS * 8)
            self._thread = None

    def problem(self) -> str | None:
        """Why the feed cannot be followed, other than an unreachable store (store.health)."""
        return since_text("change feed failing", self._failing_since, self._failure)

    def _run(self) -> None:
        delay = FIRST_RETRY_SECONDS
        while not self._stop.is_set():
            try:
                self._step()
            except StoreUnavailable:
                pass  # store.health has logged it once and /healthz shows it
            except Exception as exc:
                if self._failing_since is None:
                    self._failing_since = time.time()
                    _log.exception("change feed failed; retrying with back-off",
                                   extra={"fields": {"revision": self.revision}})
                self._failure = f"{type(exc).__name__}: {exc}"[:240]
            else:
                delay = FIRST_RETRY_SECONDS
                if self._failing_since is not None:
                    self._failing_since = None
                    _log.info("change feed readable again",
                              extra={"fields": {"revision": self.revision}})
                continue
            self._stop.wait(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)

    def _step(self) -> None:
        latest = self._store.wait_for_change(self.revision, WAIT_SECONDS)
        while latest > self.revision and not self._stop.is_set():
            changes = self._store.changes_since(self.revision, BATCH_ROWS)
            # No rows: the revisions left were no-op transactions.
            revision = changes[-1].revision if changes else latest
            self._publish(self._digest(changes), max(revision, self.revision))
            if not changes:
                return

    def _publish(self, digest: T, revision: int) -> None:
        self.revision = revision
        try:
            self._loop.call_soon_threadsafe(self._apply, digest, revision)
        except RuntimeError:
            self._stop.set()  # the loop is closed: the tier is shutting down


class ServerChanges(NamedTuple):
    """The digest of the tiers that render servers (the API's workers, the ready
    map's renderer): which servers changed, and whether the identity keys did."""

    servers: frozenset[str]
    identity_keys: bool


def server_changes(changes: Sequence[Change]) -> ServerChanges:
    # Other kinds arrive already expanded into server TOUCH rows by the store.
    return ServerChanges(frozenset(c.id for c in changes if c.kind == EntityKind.SERVER),
                         any(c.kind == EntityKind.IDENTITY_KEY for c in changes))


__all__ = ["ChangeFollower", "ServerChanges", "server_changes"]
