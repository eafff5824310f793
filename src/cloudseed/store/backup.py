"""Backup and restore: every row of every table, at the schema revision it was in.

A backup is one JSON document: the Alembic revision the store was at and,
per table, its column names and rows. Tables and columns are read from the
database itself (reflection), not from this code's schema, so a backup made
by an older cloudseed restores with a newer one: ``restore`` brings an empty
store to the backup's revision, inserts the rows, then migrates to head. It
is lossless by construction — passwords, EC2 ids, creation times, port order
and the change feed included — and works across stores (a SQLite backup
restores into PostgreSQL and back).

A backup is read in one transaction (a snapshot on both stores), so it can be
taken while cloudseed runs. It holds guests' passwords and user-data: the
file is written with mode 0600.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, LargeBinary, MetaData, Table, func, select

from cloudseed.configdrive.atomic import write_atomically
from cloudseed.errors import ConfigError
from cloudseed.store.engine import create_store_engine, write_connection
from cloudseed.store.migrate import (
    alembic_config,
    current_revision,
    downgrade_engine,
    upgrade_engine,
)

BACKUP_FORMAT = "cloudseed-backup"
BACKUP_VERSION = 1
# Alembic's own bookkeeping: the backup records the revision instead.
ALEMBIC_TABLE = "alembic_version"
# The revision row that the first migration inserts; restore replaces it.
META_TABLE = "meta"


def backup(url: str, path: str | Path) -> dict[str, int]:
    """Write every row of the store at ``url`` to ``path``; returns rows per table."""
    engine = create_store_engine(url)
    try:
        document = _dump(engine)
    finally:
        engine.dispose()
    # 0600 from the first byte: the file holds passwords and user-data.
    write_atomically(Path(path), json.dumps(document, separators=(",", ":")).encode(), 0o600)
    return {name: len(table["rows"]) for name, table in document["tables"].items()}


def restore(url: str, path: str | Path) -> dict[str, int]:
    """Load a backup into the empty store at ``url``, then migrate it to head."""
    document = _read(Path(path))
    revision = document["schema"]
    _require_known_revision(revision)
    engine = create_store_engine(url)
    try:
        _require_empty(engine)
        if current_revision(engine) not in {None, revision}:
            downgrade_engine(engine, "base")  # empty: nothing is lost
        upgrade_engine(engine, revision)
        counts = _load(engine, document["tables"])
        upgrade_engine(engine)
    finally:
        engine.dispose()
    return counts


def _dump(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn, conn.begin():
        # Inside the transaction: the revision and the rows are one snapshot.
        schema = _revision_in(conn)
        if schema is None:
            raise ConfigError("the store has no schema yet; nothing to back up")
        tables: dict[str, Any] = {}
        for table in _reflect(conn).sorted_tables:
            if table.name == ALEMBIC_TABLE:
                continue
            columns = [c.name for c in table.columns]
            order = list(table.primary_key.columns) or list(table.columns)
            rows = conn.execute(select(table).order_by(*order)).all()
            tables[table.name] = {
                "columns": columns,
                "rows": [[_encode(table, name, value) for name, value in zip(
                    columns, row, strict=True)] for row in rows],
            }
    return {"format": BACKUP_FORMAT, "version": BACKUP_VERSION, "schema": schema,
            "tables": tables}


def _load(engine: Engine, tables: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    with write_connection(engine) as conn, conn.begin():
        reflected = _reflect(conn)
        conn.execute(reflected.tables[META_TABLE].delete())
        unknown = set(tables) - set(reflected.tables)
        if unknown:
            raise ConfigError(
                f"backup has tables {sorted(unknown)} that its own schema revision lacks; "
                "the file is damaged or was edited"
            )
        for table in reflected.sorted_tables:
            data = tables.get(table.name)
            if table.name == ALEMBIC_TABLE or data is None:
                continue
            columns = data["columns"]
            missing = set(columns) - set(table.columns.keys())
            if missing:
                raise ConfigError(
                    f"backup table {table.name} has columns {sorted(missing)} that its "
                    "schema revision lacks; the file is damaged or was edited"
                )
            rows = [
                {name: _decode(table, name, value)
                 for name, value in zip(columns, row, strict=True)}
                for row in data["rows"]
            ]
            if rows:
                conn.execute(table.insert(), rows)
            counts[table.name] = len(rows)
    return counts


def _require_empty(engine: Engine) -> None:
    with engine.connect() as conn:
        reflected = _reflect(conn)
        for table in reflected.sorted_tables:
            if table.name in {ALEMBIC_TABLE, META_TABLE}:
                continue
            if conn.execute(select(func.count()).select_from(table)).scalar_one():
                raise ConfigError(
                    f"restore needs an empty store, but table {table.name} has rows; "
                    "restore into a new database (or a new SQLite file)"
                )


def _require_known_revision(revision: str) -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    if revision not in {rev.revision for rev in script.walk_revisions()}:
        raise ConfigError(
            f"the backup is at schema revision {revision}, which this cloudseed does not "
            "know; restore it with the cloudseed version that made it, or a newer one"
        )


def _revision_in(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _reflect(conn: Connection) -> MetaData:
    reflected = MetaData()
    reflected.reflect(conn)
    return reflected


def _is_binary(table: Table, column: str) -> bool:
    return isinstance(table.columns[column].type, LargeBinary)


def _encode(table: Table, column: str, value: Any) -> Any:
    if value is not None and _is_binary(table, column):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def _decode(table: Table, column: str, value: Any) -> Any:
    if value is not None and _is_binary(table, column):
        return base64.b64decode(value)
    return value


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read backup {path}: {exc.strerror}") from None
    except ValueError:
        raise ConfigError(f"{path} is not a cloudseed backup (not JSON)") from None
    if not isinstance(document, dict) or document.get("format") != BACKUP_FORMAT:
        raise ConfigError(f"{path} is not a cloudseed backup (no {BACKUP_FORMAT!r} format)")
    if document.get("version") != BACKUP_VERSION:
        raise ConfigError(
            f"{path} is backup format version {document.get('version')}; this cloudseed "
            f"reads version {BACKUP_VERSION}"
        )
    if not isinstance(document.get("schema"), str) or not isinstance(
        document.get("tables"), dict
    ):
        raise ConfigError(f"{path} is a damaged cloudseed backup (schema or tables missing)")
    return document
