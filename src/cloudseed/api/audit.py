"""The access audit: which guest read which sensitive document, and guest writes.

``SENSITIVE`` is the one table of what is audited. A request is recorded once
its server is identified (whatever the answer: a 401 for a token-guarded
user-data is worth knowing), with the guest's address as the chain reports it,
the tier (``chain`` behind proxy and agent, ``direct``) and this host.

Off the hot path: ``note`` appends a tuple to a list on the event loop; a task
writes the list in one batch every ``audit.flush_seconds`` on a store thread.
Loss policy (docs/DECISIONS.md): a worker that dies loses at most one flush
interval; while the store is away the records wait, up to ``audit.max_pending``,
and newer ones are dropped and counted; nothing on the guest path waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Sequence

from cloudseed.api.routes import Route, RouteKind
from cloudseed.errors import CloudseedError
from cloudseed.http.metrics import Registry
from cloudseed.log import get_logger
from cloudseed.model import AuditRecord
from cloudseed.settings import AuditSettings

_log = get_logger("cloudseed.api.audit")

# Route kinds audited for every method, and the guest-write kinds audited
# only for the methods that write.
_ALWAYS = frozenset({RouteKind.PASSWORD, RouteKind.PHONE_HOME, RouteKind.IDENTITY_TOKEN})
_WRITES = {RouteKind.GUEST_ATTRIBUTES: frozenset({"PUT", "DELETE"})}
# Documents, by the last segment of their normalised path (any version).
_DOCUMENT_NAMES = frozenset({"user-data", "user_data", "vendor_data.json", "vendor_data2.json"})
# Documents by path segment: injected files and the identity tree.
_DOCUMENT_DIRS = ("openstack/content/", "/dynamic/instance-identity/")
# Pruning runs this often, over the servers recorded since the last run.
PRUNE_EVERY_SECONDS = 60.0


def sensitive(route: Route, method: str) -> bool:
    """Whether a request on ``route`` is audited: the one table of what is."""
    kind = route.kind
    if kind in _ALWAYS:
        return True
    writes = _WRITES.get(kind)
    if writes is not None:
        return method in writes
    if kind is not RouteKind.DOCUMENT:
        return False
    key = route.key
    return key.rpartition("/")[2] in _DOCUMENT_NAMES or any(d in key for d in _DOCUMENT_DIRS)


def _printable(text: str) -> str:
    # A guest's path may hold NUL or lone surrogates that PostgreSQL refuses
    # (and that would make the whole batch fail): the audit keeps them escaped.
    if text.isprintable() and text.isascii():
        return text
    return text.encode("unicode_escape").decode("ascii")


class _Clock:
    """ISO 8601 UTC with milliseconds; the seconds part is formatted once a second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        return self.format(time.time())

    def format(self, t: float) -> str:
        second = int(t)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((t - second) * 1000):03d}Z"


class AuditTrail:
    """One worker's pending records and the task that writes them."""

    def __init__(
        self,
        settings: AuditSettings,
        append: Callable[[Sequence[AuditRecord]], Awaitable[None]],
        prune: Callable[[Sequence[str], int, str], Awaitable[int]],
        registry: Registry,
        tier: str,
    ) -> None:
        self._settings = settings
        self._append = append
        self._prune = prune
        self._tier = tier
        self._host = socket.gethostname()
        self._pending: list[AuditRecord] = []
        self._clock = _Clock()
        self._since_prune: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        # Route → audited, memoised: the warm path pays one dict lookup.
        self._decided: dict[tuple[str, str], bool] = {}
        self._records = registry.counter(
            "cloudseed_api_audit_records_total",
            "Access-audit records by outcome (stored, dropped: the pending list was full).",
            ("result",),
        )
        registry.gauge("cloudseed_api_audit_pending", "Access-audit records not yet written.",
                       read=lambda: float(len(self._pending)))

    def audited(self, route: Route, method: str) -> bool:
        key = (route.key, method)
        decided = self._decided.get(key)
        if decided is None:
            decided = sensitive(route, method)
            if len(self._decided) >= 4096:  # hostile guests send endless junk paths
                self._decided.clear()
            self._decided[key] = decided
        return decided

    def note(self, server_id: str, route: Route, method: str, status: int, source: str) -> None:
        if len(self._pending) >= self._settings.max_pending:
            self._records.inc("dropped")
            return
        self._pending.append(AuditRecord(
            server_id, self._clock.now(), _printable(route.key)[:255], _printable(method)[:8],
            status, source[:64], self._tier, self._host[:255]))

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()  # what the last interval recorded, if the store is there

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_prune = loop.time() + PRUNE_EVERY_SECONDS
        while True:
            await asyncio.sleep(self._settings.flush_seconds)
            await self.flush()
            if loop.time() >= next_prune and self._since_prune:
                next_prune = loop.time() + PRUNE_EVERY_SECONDS
                await self._prune_now()

    async def flush(self) -> None:
        """Write what is pending in one batch; on failure it stays pending."""
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await self._append(batch)
        except CloudseedError as error:  # the store is away: keep them
            # Oldest first, newest dropped past the bound: the order records arrived.
            room = self._settings.max_pending - len(batch)
            kept = batch + self._pending[:max(room, 0)]
            self._records.inc("dropped", amount=float(len(batch) + len(self._pending) - len(kept)))
            self._pending = kept
            _log.warning("access audit not written; kept for the next flush",
                         extra={"fields": {"pending": len(kept), "error": str(error)}})
            return
        except Exception:
            # The store refused these rows (a bug): retrying would refuse them
            # forever and stop the audit, so they are dropped, counted, logged.
            self._records.inc("dropped", amount=float(len(batch)))
            _log.exception("access audit batch refused by the store; dropped",
                           extra={"fields": {"records": len(batch)}})
            return
        self._records.inc("stored", amount=float(len(batch)))
        self._since_prune.update(record.server_id for record in batch)

    async def _prune_now(self) -> None:
        servers, self._since_prune = sorted(self._since_prune), set()
        # One time format for what is written and what it is compared with.
        older_than = self._clock.format(time.time() - self._settings.max_age_days * 86400)
        try:
            await self._prune(servers, self._settings.keep_per_server, older_than)
        except CloudseedError:
            self._since_prune.update(servers)  # next time
