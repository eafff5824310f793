"""Schema migrations: bring a database to the head revision, or check it is there.

Alembic is configured in code (no alembic.ini at run time). Migration runs in
one transaction that first takes a lock — ``BEGIN IMMEDIATE`` on SQLite, an
advisory lock on PostgreSQL — so when several processes start together (API
workers, agents) one migrates and the others then find the schema at head.
"""

from __future__ import annotations

import functools
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from cloudseed.errors import ConfigError
from cloudseed.store.engine import create_store_engine, require_reachable, write_connection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant will do; it only has to be the same in every cloudseed process.
PG_MIGRATION_LOCK_KEY = 0x636C6F7564736564  # "cloudseed"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations directory has no head revision"
    return head


def upgrade(url: str, target: str = "head") -> None:
    """Bring the database at ``url`` to ``target`` (default: the newest schema)."""
    engine = create_store_engine(url)
    try:
        require_reachable(engine)
        upgrade_engine(engine, target)
    finally:
        engine.dispose()


def downgrade(url: str, target: str) -> None:
    """Step the schema back to ``target`` (``"base"`` drops everything)."""
    engine = create_store_engine(url)
    try:
        require_reachable(engine)
        downgrade_engine(engine, target)
    finally:
        engine.dispose()


def downgrade_engine(engine: Engine, target: str) -> None:
    with write_connection(engine) as conn, conn.begin():
        _take_migration_lock(engine, conn)
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, target)


def upgrade_engine(engine: Engine, target: str = "head") -> None:
    if target == "head" and current_revision(engine) == head_revision():
        return  # the common start-up case: nothing to lock, nothing to load
    with write_connection(engine) as conn, conn.begin():
        _take_migration_lock(engine, conn)
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, target)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def require_head(engine: Engine) -> None:
    """Refuse to run against a schema that is older or newer than this code."""
    current = current_revision(engine)
    head = head_revision()
    if current != head:
        raise ConfigError(
            f"store schema is at {current or 'nothing'} but this cloudseed needs {head}; "
            "run `cloudseed db upgrade` (or open the store with upgrade=True)"
        )


def _take_migration_lock(engine: Engine, conn: Connection) -> None:
    # SQLite: BEGIN IMMEDIATE (the write connection) already holds the lock.
    if engine.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK_KEY})
