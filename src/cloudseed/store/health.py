"""Whether the store is reachable: one record per process, read by every tier.

``SqlStore`` reports each call's fate here. A call that fails because the
database cannot be reached (refused, reset, restarting) turns into
``StoreUnavailable`` -- 503 with ``Retry-After`` on every tier, through the
one table in ``http.status`` -- and the first such failure logs "store
unreachable" once; the first success after it logs "store reachable again"
once, with how long it lasted. In between nothing is logged per request or
per retry, so an outage is two log lines, not one traceback a second.

``problem()`` is what ``/healthz`` shows while the outage lasts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from cloudseed.errors import StoreUnavailable
from cloudseed.log import get_logger

_log = get_logger("cloudseed.store")

# What a refused caller is told to wait. The change follower re-checks the
# store at most this far apart (``store.follow.MAX_RETRY_SECONDS``), so a
# retry after this long meets a store that has been tried since.
RETRY_AFTER_SECONDS = 5
# An error text is shown in /healthz and the log: one line, bounded.
MAX_REASON_CHARS = 240


def describe(exc: BaseException) -> str:
    """The driver's own message, one line: never SQLAlchemy's text, which quotes SQL parameters."""
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split()) or type(orig).__name__
    return f"{type(orig).__name__}: {text}"[:MAX_REASON_CHARS]


class StoreHealth:
    """Up or down since when, and why. Thread-safe: store calls run in threads."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.down_since: float | None = None  # wall-clock seconds; None while up
        self.reason = ""

    def failed(self, exc: BaseException) -> StoreUnavailable:
        """Record an unreachable store; returns the error for the caller to raise."""
        reason = describe(exc)
        with self._lock:
            first = self.down_since is None
            if first:
                self.down_since = self._clock()
            self.reason = reason
        if first:
            _log.warning("store unreachable; serving what is cached, answering 503 for the rest",
                         extra={"fields": {"error": reason}})
        # Callers (guests included) hear no address or driver text: that is for operators.
        return StoreUnavailable("the store is unreachable; try again shortly",
                                RETRY_AFTER_SECONDS)

    def succeeded(self) -> None:
        """Record a call that reached the store (cheap when nothing was wrong)."""
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            _log.info("store reachable again",
                      extra={"fields": {"down_seconds": round(self._clock() - since, 3)}})

    def problem(self) -> str | None:
        """"store unreachable since <UTC time>: <error>" during an outage, else None."""
        return since_text("store unreachable", self.down_since, self.reason)


def since_text(what: str, since: float | None, reason: str) -> str | None:
    """A /healthz reason: "<what> since <UTC time>: <reason>", or None when ``since`` is."""
    if since is None:
        return None
    return f"{what} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}: {reason}"


__all__ = ["RETRY_AFTER_SECONDS", "StoreHealth", "describe", "since_text"]
