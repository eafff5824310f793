"""Shared fixtures: real stores on real databases.

    sqlite_url    a SQLite file in the test's tmp_path (not yet created)
    postgres_url  a fresh, empty PostgreSQL database for the test, dropped
                  afterwards; skips unless CLOUDSEED_TEST_POSTGRES_DSN names
                  an admin DSN (scripts/start-test-postgres prints one)
    backend       "sqlite" or "postgres": every test that uses the fixtures
                  below runs once per backend
    store_url     sqlite_url or postgres_url, following ``backend``
    store         an open ``SqlStore`` on a migrated database of ``backend``

``store`` does not migrate per test: on SQLite it copies a file migrated once
per session; on PostgreSQL it reuses one database migrated once per session
and empties it before each test (cheaper than CREATE DATABASE).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import make_url

from cloudseed.store import SqlStore, open_store, upgrade
from cloudseed.store.schema import metadata

POSTGRES_DSN_ENV = "CLOUDSEED_TEST_POSTGRES_DSN"
READY_MAP_DIR_ENV = "CLOUDSEED_API_READY_MAP_DIR"


def pytest_configure(config: pytest.Config) -> None:
    """Every ``cloudseed api`` a test starts keeps its ready map (one directory per
    store) in this session's temporary directory, not in /var/lib/cloudseed."""
    if READY_MAP_DIR_ENV not in os.environ:
        made = tempfile.mkdtemp(prefix="cloudseed-ready-maps-")
        os.environ[READY_MAP_DIR_ENV] = made
        config.add_cleanup(lambda: shutil.rmtree(made, ignore_errors=True))


def _admin_dsn() -> str:
    admin_dsn = os.environ.get(POSTGRES_DSN_ENV)
    if not admin_dsn:
        pytest.skip(f"{POSTGRES_DSN_ENV} is not set; run scripts/start-test-postgres")
    return admin_dsn


@contextmanager
def _postgres_database(admin_dsn: str) -> Iterator[str]:
    """A new empty database; yields its URL; drops it afterwards."""
    name = f"cloudseed_test_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(create)
    try:
        yield make_url(admin_dsn).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cloudseed.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with _postgres_database(_admin_dsn()) as url:
        yield url


@pytest.fixture(scope="session")
def _migrated_sqlite_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "migrated.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _migrated_postgres_url() -> Iterator[str]:
    with _postgres_database(_admin_dsn()) as url:
        upgrade(url)
        yield url


def _emptied(url: str) -> str:
    """The migrated session database, with every row of the last test gone."""
    # DELETE beats TRUNCATE on a handful of rows: no file work, no lock storm.
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        for table in reversed(metadata.sorted_tables):
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(table.name)))
        # A new store: a cache of the last test's (the ready map) must not match
        # it, nor a token the last test's API made.
        conn.execute("INSERT INTO meta (id, revision, store_id, token_key) VALUES (1, 0, %s, %s)",
                     (str(uuid.uuid4()), secrets.token_hex(32)))
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, backend: str) -> str:
    # An empty database: tests that take store_url may migrate it themselves.
    return str(request.getfixturevalue(f"{backend}_url"))


@pytest.fixture
def store(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> Iterator[SqlStore]:
    if backend == "sqlite":
        path = tmp_path / "store.db"
        shutil.copyfile(request.getfixturevalue("_migrated_sqlite_file"), path)
        with sqlite3.connect(path) as conn:  # a copy is a new store, with its own id
            conn.execute("UPDATE meta SET store_id = ?, token_key = ?",
                         (str(uuid.uuid4()), secrets.token_hex(32)))
        with open_store(f"sqlite:///{path}") as opened:
            yield opened
        return
    url = _emptied(request.getfixturevalue("_migrated_postgres_url"))
    with open_store(url) as opened:
        yield opened
