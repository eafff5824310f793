"""The store: one SQL implementation of ``protocol.Store`` for SQLite and PostgreSQL.

Every write transaction starts by bumping the single revision row:

    UPDATE meta SET revision = revision + 1 WHERE id = 1 RETURNING revision

On PostgreSQL that row lock is what serialises writers, so revisions follow
commit order and "changes since R" never misses a late committer. On SQLite
``BEGIN IMMEDIATE`` has already taken the database's write lock. A
transaction that changed nothing is rolled back, so it spends no revision.

Do not open a write transaction while the same thread holds another (SQLite
would wait on itself until the busy timeout), and do not share a store across
``fork()``: each process opens its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from cloudseed.model import AuditRecord, PhoneHome
from cloudseed.store import audit, queries
from cloudseed.store.changes import changes_since
from cloudseed.store.engine import write_connection
from cloudseed.store.health import StoreHealth
from cloudseed.store.integrity import conflict_from
from cloudseed.store.listen import CHANNEL, ChangeListener
from cloudseed.store.protocol import Change, Store
from cloudseed.store.reader import SqlReader
from cloudseed.store.writer import SqlWriter

T = TypeVar("T")

DEFAULT_POLL_INTERVAL_SECONDS = 0.1
# With LISTEN, the revision is still re-read this often in case a
# notification was lost with its connection.
NOTIFY_FALLBACK_SECONDS = 1.0


class SqlStore(SqlReader):
    def __init__(
        self, engine: Engine, poll_interval_seconds: float = DEFAULT_POLL_INTERVAL_SECONDS
    ) -> None:
        super().__init__(self._run_read)
        self.engine = engine
        self.poll_interval_seconds = poll_interval_seconds
        self.is_postgres = engine.dialect.name == "postgresql"
        # The full URL (password included) lets a process open its own store.
        self.url = engine.url.render_as_string(hide_password=False)
        self._listener = ChangeListener(engine.url)
        # Shared by every tier in this process: their /healthz reads it.
        self.health = StoreHealth()

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """An unreachable database is StoreUnavailable (and /healthz says so);
        anything that gets through says the database is back."""
        try:
            yield
        except DBAPIError as exc:
            if _unreachable(exc):
                raise self.health.failed(exc) from None
            raise
        self.health.succeeded()

    def _run_read(self, read: Callable[[Connection], T], snapshot: bool = False) -> T:
        with self._reaching():
            try:
                return self._read_once(read, snapshot)
            except DBAPIError as exc:
                # A pooled connection died (the database restarted): the pool is
                # now invalidated, and a read is safe to repeat once.
                if not exc.connection_invalidated:
                    raise
                return self._read_once(read, snapshot)

    def _read_once(self, read: Callable[[Connection], T], snapshot: bool) -> T:
        with self.engine.connect() as conn:
            if self.is_postgres:
                # One statement needs no transaction: skip BEGIN and COMMIT.
                level = "REPEATABLE READ" if snapshot else "AUTOCOMMIT"
                conn.execution_options(isolation_level=level)
            with conn.begin():
                return read(conn)

    @contextmanager
    def write(self) -> Iterator[SqlWriter]:
        try:
            conn, revision = self._begin_write()
        except DBAPIError as exc:
            if _unreachable(exc):
                raise self.health.failed(exc) from None
            raise
        try:
            with conn:
                transaction = conn.get_transaction()
                assert transaction is not None
                with transaction:
                    writer = SqlWriter(conn)
                    yield writer
                    writer.flush()
                    if not writer.changes:
                        transaction.rollback()
                        return
                    writer.changes.save(conn, revision)
                    if self.is_postgres:
                        conn.execute(
                            select(text("pg_notify(:channel, :revision)")),
                            {"channel": CHANNEL, "revision": str(revision)},
                        )
        except IntegrityError as exc:  # raised at COMMIT, past the writer's own checks
            raise conflict_from(exc) from None
        except DBAPIError as exc:
            # The transaction died with its connection, so the database rolled
            # it back: nothing of it is stored. (A connection lost during COMMIT
            # itself is the one case where the write may have landed; a retry
            # then meets it, e.g. 409 for a create, never a half-written one.)
            if _unreachable(exc):
                raise self.health.failed(exc) from None
            raise
        self.health.succeeded()

    def _begin_write(self) -> tuple[Connection, int]:
        """A connection in a write transaction that holds the writers' lock, and its revision."""
        for attempt in range(2):
            conn = write_connection(self.engine)
            try:
                conn.begin()
                return conn, conn.execute(queries.BUMP_REVISION).scalar_one()
            except DBAPIError as exc:
                conn.close()
                # Nothing was written yet, so a dead pooled connection (the
                # database restarted) is safe to replace once.
                if attempt or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    def append_audit(self, records: Sequence[AuditRecord]) -> None:
        self._run_plain_write(lambda conn: audit.append(conn, records))

    def prune_audit(self, server_ids: Sequence[str], keep: int, older_than: str) -> int:
        return self._run_plain_write(lambda conn: audit.prune(conn, server_ids, keep, older_than))

    def _run_plain_write(self, write: Callable[[Connection], T]) -> T:
        """A transaction outside the inventory: no writers' lock, no revision."""
        with self._reaching(), self.engine.begin() as conn:
            return write(conn)

    def record_phone_home_once(self, report: PhoneHome) -> PhoneHome | None:
        with self.write() as writer:
            return writer.record_phone_home_if_absent(report)

    def set_password_once(self, server_id: str, password: str) -> bool:
        with self.write() as writer:
            return writer.set_password_if_absent(server_id, password)

    def changes_since(self, revision: int, limit: int = 10000) -> Sequence[Change]:
        return self._run_read(lambda conn: changes_since(conn, revision, limit), snapshot=True)

    def wait_for_change(self, revision: int, timeout_seconds: float) -> int:
        deadline = time.monotonic() + timeout_seconds
        if self.is_postgres and self._listener.lock.acquire(blocking=False):
            try:
                return self._wait_notified(revision, deadline)
            finally:
                self._listener.lock.release()
        return self._wait_polling(revision, deadline)

    def _wait_polling(self, revision: int, deadline: float) -> int:
        while True:
            current = self.revision()
            remaining = deadline - time.monotonic()
            if current > revision or remaining <= 0:
                return current
            time.sleep(min(self.poll_interval_seconds, remaining))

    def _wait_notified(self, revision: int, deadline: float) -> int:
        try:
            self._listener.start()
        except Exception:
            return self._wait_polling(revision, deadline)
        while True:
            # Read after LISTEN is in place: a commit after this read notifies us.
            current = self.revision()
            remaining = deadline - time.monotonic()
            if current > revision or remaining <= 0:
                return current
            self._listener.wait_beyond(revision, min(remaining, NOTIFY_FALLBACK_SECONDS))

    def follow(self, revision: int, timeout_seconds: float) -> Iterator[Change]:
        if self.wait_for_change(revision, timeout_seconds) > revision:
            yield from self.changes_since(revision)

    def close(self) -> None:
        self._listener.stop()
        self.engine.dispose()

    def __enter__(self) -> SqlStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _unreachable(exc: DBAPIError) -> bool:
    """A failure to reach the database (refused, reset, shutting down), not a bad statement."""
    if exc.connection_invalidated or isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    # SQLite reports a schema error as OperationalError too: that is a bug, not an outage.
    return not str(exc.orig).startswith(("no such ", "near "))


def _satisfies_protocol(store: SqlStore) -> Store:
    return store  # mypy checks SqlStore against the Store protocol here
