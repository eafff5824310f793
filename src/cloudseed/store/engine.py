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

The store holds every guest's user-data, injected files and password: the
SQLite database is created 0600 (in a 0700 directory when we create it), its
WAL and SHM files inherit that mode from it (SQLite creates them with the
database's permissions), and an existing database with looser modes is
tightened whenever a store is opened. Neither engine puts statement
parameters (user-data, passwords) into its error messages, and a URL is only
ever shown with its password masked (``redacted_url``).
"""

from __future__ import annotations

import os
import re
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url

from cloudseed.errors import ConfigError, StoreUnavailable

# How long a SQLite writer waits for the write lock before giving up. A bulk
# import of ten thousand servers holds it for seconds, so be generous.
SQLITE_BUSY_TIMEOUT_MS = 60_000
# How long a PostgreSQL connect may take (the URL's connect_timeout wins).
PG_CONNECT_TIMEOUT_SECONDS = 5
# Execution option that marks a connection as a writer's.
WRITE_OPTION = "cloudseed_write"
# Only the owner reads the store's files; the directory we create is the owner's alone.
SQLITE_FILE_MODE = 0o600
SQLITE_DIR_MODE = 0o700
# The files SQLite keeps beside the database in WAL mode.
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def normalise_url(url: str) -> URL:
    """Parse a store URL; plain ``postgresql://`` means psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception:  # SQLAlchemy's ArgumentError quotes the URL, password and all
        raise ConfigError(
            f"store url {redacted_url(url)} is not a database URL; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        ) from None
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
        secure_sqlite_files(Path(url.database))
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, hide_parameters=True
    )

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


def require_reachable(engine: Engine) -> None:
    """Connect once: an unreachable store is one line naming it (password masked)."""
    from sqlalchemy.exc import DBAPIError

    from cloudseed.store.health import RETRY_AFTER_SECONDS, describe

    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        where = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(
            f"cannot reach the store at {where} ({describe(exc)}); "
            "check store.url and that the database is running",
            RETRY_AFTER_SECONDS,
        ) from None


def redacted_url(url: str) -> str:
    """``url`` fit for a log line or a message: any password is ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: mask whatever sits between "://user:" and "@"
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def secure_data_dir(path: Path) -> None:
    """The data dir holds the store and the secrets: its owner's alone (0700).

    Created so, and tightened if it exists looser. dnsmasq, the one reader
    that is not its owner, is given its files elsewhere by the data plane.
    """
    path.mkdir(parents=True, exist_ok=True, mode=SQLITE_DIR_MODE)
    try:
        if path.stat().st_mode & 0o777 != SQLITE_DIR_MODE:
            path.chmod(SQLITE_DIR_MODE)
    except PermissionError:
        pass  # another user's data dir that we may only read


def secure_sqlite_files(database: Path) -> None:
    """Create the database file 0600 (its directory 0700) and tighten existing files.

    SQLite gives the WAL and SHM files the database file's mode, so creating
    the database right is what keeps them private too; the chmod of existing
    files repairs stores created before this rule (or by a looser umask).
    """
    database.parent.mkdir(parents=True, exist_ok=True, mode=SQLITE_DIR_MODE)
    try:
        fd = os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE)
    except FileExistsError:
        pass
    except OSError:
        return  # not ours to create (read-only place): SQLite reports it on connect
    else:
        os.close(fd)
    for path in (database, *(database.with_name(database.name + s) for s in SQLITE_SIDE_FILES)):
        try:
            if path.stat().st_mode & 0o777 & ~SQLITE_FILE_MODE:
                path.chmod(SQLITE_FILE_MODE)
        except (FileNotFoundError, PermissionError):
            continue  # absent, or another user's store we may only read


def _forget_after_fork() -> None:
    # The child must never talk over the parent's sockets or SQLite handles;
    # close=False drops them from the pool without closing the parent's side.
    for engine in list(_live_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_after_fork)
