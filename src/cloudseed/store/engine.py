"""Database engines for both backends, and how their transactions begin.

SQLite: WAL (readers never block the writer), a busy timeout, foreign keys
on, and writers begin with ``BEGIN IMMEDIATE`` so that concurrent writers —
threads or processes — queue for the write lock instead of failing on upgrade
from a read lock. The driver's own transaction handling is switched off so
that we, not pysqlite, decide how each transaction begins.

PostgreSQL (psycopg 3): readers use REPEATABLE READ so a multi-query read
(``server_view``) sees one snapshot; writers use READ COMMITTED and serialise
on the revision row, so each statement after that lock sees every earlier
commit.

Engines hold sockets and file handles and must not cross a fork: the parent's
connections are discarded in a forked child (see ``_forget_after_fork``), and
a forked API worker opens its own store.
"""

from __future__ import annotations

import os
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url

from cloudseed.errors import ConfigError

# How long a SQLite writer waits for the write lock before giving up. A bulk
# import of ten thousand servers holds it for seconds, so be generous.
SQLITE_BUSY_TIMEOUT_MS = 60_000
# How long a PostgreSQL connect may take (the URL's connect_timeout wins).
PG_CONNECT_TIMEOUT_SECONDS = 5
# Execution option that marks a connection as a writer's.
WRITE_OPTION = "cloudseed_write"

_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def normalise_url(url: str) -> URL:
    """Parse a store URL; plain ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # SQLAlchemy raises ArgumentError with the URL text
        raise ConfigError(f"store url is not a database URL: {exc}") from None
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername == "sqlite+pysqlite":
        parsed = parsed.set(drivername="sqlite")
    if parsed.drivername not in {"sqlite", "postgresql+psycopg"}:
        raise ConfigError(
            f"store url uses {parsed.drivername!r}; use sqlite:///PATH or postgresql://…"
        )
    if parsed.drivername == "sqlite" and not parsed.database:
        raise ConfigError(
            "store url sqlite:// needs a file path: sqlite:////var/lib/cloudseed/cloudseed.db"
        )
    return parsed


def create_store_engine(url: str) -> Engine:
    parsed = normalise_url(url)
    if parsed.drivername == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        # No pre-ping: it would cost a round trip per read; readers retry once
        # on a dead connection instead (SqlStore._run_read).
        # A bounded connect: an unreachable host fails a call in seconds
        # (503 to its caller) instead of holding a thread for minutes.
        connect_args = ({} if "connect_timeout" in parsed.query
                        else {"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS})
        engine = create_engine(parsed, isolation_level="REPEATABLE READ",
                               connect_args=connect_args)
    _live_engines.add(engine)
    return engine


def write_connection(engine: Engine) -> Connection:
    """A connection whose next ``begin()`` starts a write transaction."""
    conn = engine.connect()
    if engine.dialect.name == "sqlite":
        return conn.execution_options(**{WRITE_OPTION: True})
    return conn.execution_options(isolation_level="READ COMMITTED")


def _sqlite_engine(url: URL) -> Engine:
    assert url.database is not None
    if url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        # Autocommit at the driver level: the "begin" hook below issues BEGIN.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # WAL with synchronous=NORMAL is durable against application crashes
        # and loses at most the last commits on power loss: the usual trade.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        is_write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if is_write else "BEGIN")

    return engine


def _forget_after_fork() -> None:
    # The child must never talk over the parent's sockets or SQLite handles;
    # close=False drops them from the pool without closing the parent's side.
    for engine in list(_live_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_after_fork)
