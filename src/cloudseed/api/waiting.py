"""``?wait_for_change=true``: a guest's GET that returns when its document changes.

GCE's parameters on every document and listing of both trees:
``wait_for_change=true``, ``last_etag=E`` (the ETag the guest has; without
it, the document's ETag now, so the request waits for the next change) and
``timeout_sec=S`` (default and most ``api.wait_for_change_max_seconds``).
The answer is the current document with its ETag: at once when its ETag is
not ``last_etag``, else when a change makes it differ, else at the timeout.

A waiting request is a future in ``ChangeWaiters`` under its server id, woken
by the worker's change follower when that server changes; it holds no thread
and makes no store query while it waits. A worker holds at most
``MAX_WAITERS``; more is 429.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from cloudseed.errors import Invalid, RateLimited

# Idle waiters one worker holds. Each costs about 8.5 KiB of the worker's RSS
# with its connection (bench/waiters.py: 10,000 took 81 MiB): the budget is
# 16 KiB a waiter, 320 MiB at this bound.
MAX_WAITERS = 20000
_TRUE = frozenset({"true", "1"})
_FALSE = frozenset({"false", "0", ""})


@dataclass(frozen=True, slots=True)
class WaitForChange:
    last_etag: str | None
    timeout_seconds: float


def bare_etag(etag: str) -> str:
    """An ETag compared as GCE's clients send it back: quotes and ``W/`` optional."""
    return etag.removeprefix("W/").strip('"')


def parse(query: str, max_seconds: float) -> WaitForChange | None:
    """The long-poll a query asks for, None for a plain GET; Invalid names the parameter."""
    if "wait_for_change" not in query:
        return None
    try:
        params = dict(parse_qsl(query, keep_blank_values=True, max_num_fields=16,
                                errors="strict"))
    except (ValueError, UnicodeDecodeError):
        raise Invalid("query", "not a valid query string (at most 16 parameters)") from None
    flag = params.get("wait_for_change", "").lower()
    if flag in _FALSE:
        return None
    if flag not in _TRUE:
        raise Invalid("wait_for_change", "must be true or false")
    raw = params.get("timeout_sec")
    timeout = max_seconds
    if raw is not None:
        if not raw.isdigit() or not 1 <= int(raw) <= max_seconds:
            raise Invalid("timeout_sec", f"must be a whole number of seconds from 1 to "
                                         f"{max_seconds:g} (the relays' limit)")
        timeout = float(raw)
    last = params.get("last_etag")
    if last is not None and not (0 < len(last) <= 128 and last.isprintable()):
        raise Invalid("last_etag", "must be an ETag this service sent (1-128 characters)")
    return WaitForChange(None if last is None else bare_etag(last), timeout)


class ChangeWaiters:
    """Futures of waiting requests by server id; lives on one event loop."""

    __slots__ = ("_by_server", "_count", "max_waiters")

    def __init__(self, max_waiters: int = MAX_WAITERS) -> None:
        self._by_server: dict[str, set[asyncio.Future[None]]] = {}
        self._count = 0
        self.max_waiters = max_waiters

    def __len__(self) -> int:
        return self._count

    async def wait(self, server_id: str, timeout_seconds: float) -> bool:
        """Until ``server_id`` changes (True) or the timeout (False)."""
        if self._count >= self.max_waiters:
            raise RateLimited(1, "too many requests are waiting for changes; retry shortly")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self._by_server.setdefault(server_id, set())
        waiting.add(future)
        self._count += 1
        try:
            await asyncio.wait_for(future, timeout_seconds)
            return True
        except TimeoutError:
            return False
        finally:
            self._count -= 1
            waiting.discard(future)
            if not waiting and self._by_server.get(server_id) is waiting:
                del self._by_server[server_id]

    def wake(self, server_ids: Iterable[str]) -> None:
        for server_id in server_ids:
            for future in self._by_server.pop(server_id, ()):
                if not future.done():
                    future.set_result(None)
