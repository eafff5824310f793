"""The renderer: one per host, keeps the ready map equal to the store.

It renders each server once per change, for every worker on the host:

1. at start, the map is checked against the store: another store (or none)
   → emptied; the same store → the changes since the map's revision are
   re-rendered (a restart costs what changed meanwhile, not the fleet);
   options changed (settings, identity key, a new cloudseed) → every server
   is rendered again in place, the old entries staying until replaced
   (workers never serve them: their fingerprint differs);
2. a whole-fleet pass reads servers in pages (``store.server_views``, a few
   statements per thousands) and writes each page in one transaction,
   deleting the page's id range's entries the store no longer has;
3. then it follows the change feed (``store/follow.py``, the one follower)
   and re-renders each batch's servers together.

The map's revision only moves once every change up to it is written, so a
restarted renderer resumes exactly. Readers never depend on the renderer
being alive or current: each entry carries the revision it was rendered at,
and a worker uses it only when no change it has seen is newer
(``api/ready.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

from cloudseed.api.config import ApiConfig
from cloudseed.errors import CloudseedError
from cloudseed.identity import Keyring
from cloudseed.log import get_logger
from cloudseed.model import ServerView
from cloudseed.ready.codec import fingerprint, pack
from cloudseed.ready.store import ReadyMap
from cloudseed.render.sections import ServerDocuments
from cloudseed.store.follow import (
    FIRST_RETRY_SECONDS,
    MAX_RETRY_SECONDS,
    ChangeFollower,
    ServerChanges,
    server_changes,
)
from cloudseed.store.protocol import Store

_log = get_logger("cloudseed.ready")
_T = TypeVar("_T")

# Servers per bulk read and per map transaction.
PAGE = 2000
# A progress line at most this often during a whole-fleet pass.
PROGRESS_SECONDS = 10.0


class Renderer:
    """Runs on one event loop in its own process; ``run`` returns when ``stop`` is set."""

    def __init__(self, store: Store, ready: ReadyMap, config: ApiConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._map = ready
        self._config = config
        self._clock = clock
        self._keys = Keyring()
        self._pending: set[str] = set()
        self._keys_changed = False
        self._followed = 0  # the newest revision the follower has handed over
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(2, thread_name_prefix="ready-store")
        self._fingerprint = ""
        self._resume = ""  # where an interrupted whole-fleet pass goes on from

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        follower: ChangeFollower[ServerChanges] | None = None
        try:
            revision, whole = await retrying(self._begin, stop)
            self._followed = revision
            follower = ChangeFollower(self._store, server_changes, self._on_change, loop)
            await loop.run_in_executor(self._executor, follower.start, revision)
            if whole:
                await retrying(self._whole_fleet, stop)
                await self._io(self._map.write, (), (), revision)
            while not stop.is_set():
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait((waiter, stopper), return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                stopper.cancel()
                self._wake.clear()
                await retrying(self._drain, stop)
        except Stopped:
            pass
        finally:
            if follower is not None:
                await loop.run_in_executor(self._executor, follower.stop)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._map.sync()

    def _on_change(self, changed: ServerChanges, revision: int) -> None:
        self._pending |= changed.servers
        self._keys_changed |= changed.identity_keys
        self._followed = revision
        self._wake.set()

    # -- the passes -------------------------------------------------------------

    async def _begin(self) -> tuple[int, bool]:
        """(revision to follow from, whether a whole-fleet pass is needed)."""
        store_id = await self._io(self._store.store_id)
        current = await self._io(self._store.revision)
        await self._load_keys()
        built_store, built_revision = self._map.built_from()
        if built_store != store_id or built_revision > current:
            _log.info("ready map: building from the store",
                      extra={"fields": {"path": self._map.path, "servers_held": len(self._map)}})
            await self._io(self._map.reset, store_id)
            return current, True
        if self._map.rendered_with() != self._fingerprint:
            # Options changed (settings, identity key, cloudseed), or the last pass
            # was cut short: entries stay until replaced, never served meanwhile.
            _log.info("ready map: render options changed; rendering every server again")
            return current, True
        _log.info("ready map: resuming", extra={"fields": {
            "revision": built_revision, "store_revision": current}})
        return built_revision, False

    async def _whole_fleet(self) -> None:
        # After a failure (the store went away) the pass resumes where it stopped:
        # the pages before it are written.
        after = self._resume
        done = 0
        started = last_note = time.monotonic()
        while True:
            revision, views = await self._io(self._read_page, after)
            if not views:
                await self._io(self._map.end_pass, after, self._fingerprint)
                self._resume = ""
                break
            last = views[-1].server.id
            await self._io(self._map.write_range, after, last, self._packed(revision, views))
            after = self._resume = last
            done += len(views)
            if time.monotonic() - last_note >= PROGRESS_SECONDS:
                last_note = time.monotonic()
                _log.info("ready map: rendering every server", extra={"fields": {
                    "rendered": done, "seconds": round(last_note - started, 1)}})
        _log.info("ready map: every server rendered", extra={"fields": {
            "servers": done, "seconds": round(time.monotonic() - started, 1)}})

    def _read_page(self, after: str) -> tuple[int, Sequence[ServerView]]:
        return self._store.server_views(None, PAGE, after=after)

    async def _drain(self) -> None:
        while self._pending or self._keys_changed:
            if self._keys_changed:
                self._keys_changed = False
                if await self._load_keys():
                    self._pending.clear()  # the pass reads every server after this
                    await self._whole_fleet()
                    continue
            batch, self._pending = sorted(self._pending), set()
            for start in range(0, len(batch), PAGE):
                chunk = batch[start:start + PAGE]
                try:
                    revision, views = await self._io(self._store.server_views, chunk, len(chunk))
                except CloudseedError:
                    self._pending.update(batch[start:])  # tried again after the back-off
                    raise
                found = {view.server.id for view in views}
                await self._io(self._map.write, self._packed(revision, views),
                               [i for i in chunk if i not in found])
        # Every change up to what the follower handed over is written (the loop
        # ends with nothing pending): a restart resumes from there.
        await self._io(self._map.write, (), (), self._followed)

    def _packed(self, revision: int, views: Sequence[ServerView]) -> list[tuple[str, bytes]]:
        options = self._config.render_options(self._keys.signer, datetime.fromtimestamp(
            self._clock(), UTC).date())
        out = []
        for view in views:
            documents = ServerDocuments(view, options)
            sections = {section: documents.section(section)
                        for section in self._config.ready_sections}
            out.append((view.server.id, pack(self._fingerprint, revision, view, sections)))
        return out

    async def _load_keys(self) -> bool:
        keys = await self._io(self._store.list_identity_keys)
        changed = self._keys.update(keys)
        options = self._config.render_options(self._keys.signer, datetime.now(UTC).date())
        self._fingerprint = fingerprint(options, self._config.ready_sections)
        return changed

    # -- plumbing -------------------------------------------------------------

    async def _io(self, func: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)


class Stopped(Exception):
    """``stop`` was set while a step was being retried."""


async def retrying(step: Callable[[], Awaitable[_T]], stop: asyncio.Event) -> _T:
    """``await step()`` until it succeeds; ``Stopped`` when ``stop`` is set first.

    The store away is waited out with back-off, as the change follower does:
    one line when it starts failing and one when it works again (the store's
    health logs the outage itself), never one per retry."""
    delay = FIRST_RETRY_SECONDS
    failing = False
    while not stop.is_set():
        try:
            result = await step()
        except CloudseedError as error:
            if not failing:
                failing = True
                _log.warning("ready map: store not readable; waiting for it",
                             extra={"fields": {"error": str(error)}})
        else:
            if failing:
                _log.info("ready map: store readable again")
            return result
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, MAX_RETRY_SECONDS)
    raise Stopped


__all__ = ["Renderer", "Stopped", "retrying"]
