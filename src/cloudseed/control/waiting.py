"""Control-API long-polls: ``GET /v1/servers/{server}/phone_home?wait=S``.

A waiting request holds no thread: it awaits an asyncio event that the
control API's one change follower (``store/follow.py``) sets when the
server changes (a phone-home report TOUCHes its server). Each wake-up, and
the first look, is one short read on the shared store threads. The number
of waiters is bounded (``MAX_CONTROL_WAITERS``, 429 beyond): each costs a
connection and an event, so the bound keeps a runaway script from holding
every connection the control API has.

The follower starts with the first waiter, so a control API nobody waits on
follows nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from cloudseed.errors import Invalid, RateLimited
from cloudseed.limits import MAX_CONTROL_WAIT_SECONDS, MAX_CONTROL_WAITERS
from cloudseed.store.follow import ChangeFollower
from cloudseed.store.protocol import Change, EntityKind, Store

Json = dict[str, Any]


def parse_wait(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= MAX_CONTROL_WAIT_SECONDS:  # NaN fails too
        raise Invalid("wait", f"must be seconds from 0 to {MAX_CONTROL_WAIT_SECONDS}")
    return seconds


class ServerWaiters:
    """Requests waiting for a condition on a server, woken by the change feed."""

    def __init__(self, store: Store, executor: Executor,
                 max_waiters: int = MAX_CONTROL_WAITERS) -> None:
        self._store = store
        self._executor = executor
        self.max_waiters = max_waiters
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._count = 0
        self._follower: ChangeFollower[frozenset[str]] | None = None
        self._starting: asyncio.Lock | None = None

    @property
    def count(self) -> int:
        return self._count

    async def wait(self, ref: str, seconds: float, read: Callable[[str], Json],
                   done: Callable[[Json], bool]) -> Json:
        """``read(server_id)`` until ``done`` says so or ``seconds`` pass; the last read."""
        if self._count >= self.max_waiters:
            raise RateLimited(1, f"at most {self.max_waiters} requests may wait at once "
                                 "(control API long-polls); retry after 1 s")
        self._count += 1
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        server_id = ""
        try:
            server_id = (await loop.run_in_executor(
                self._executor, self._store.get_server, ref)).id
            self._waiting.setdefault(server_id, set()).add(event)
            await self._follow()
            deadline = loop.time() + seconds
            while True:
                # Cleared before the read: a change committed after it sets it again.
                event.clear()
                found = await loop.run_in_executor(self._executor, read, server_id)
                left = deadline - loop.time()
                if done(found) or left <= 0:
                    return found
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), left)
        finally:
            self._count -= 1
            events = self._waiting.get(server_id)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiting[server_id]

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    async def _follow(self) -> None:
        if self._follower is not None:
            return
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._follower is None:
                loop = asyncio.get_running_loop()
                follower = ChangeFollower(self._store, _changed_servers, self._wake, loop)
                await loop.run_in_executor(self._executor, follower.start)
                self._follower = follower

    def _wake(self, server_ids: frozenset[str], _revision: int) -> None:
        for server_id in self._waiting.keys() & server_ids:
            for event in self._waiting[server_id]:
                event.set()


def _changed_servers(changes: Sequence[Change]) -> frozenset[str]:
    return frozenset(c.id for c in changes if c.kind is EntityKind.SERVER)
