"""The access audit's rows: append a batch, prune, read a server's newest.

Not inventory: appends neither take the writers' lock nor bump the revision,
so a guest's reads never show in the change feed or in ``/v1/export``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, delete, select

from cloudseed.model import AuditRecord
from cloudseed.store.schema import access_audit

_COLUMNS = ("server_id", "at", "document", "method", "status", "source", "tier", "host")


def append(conn: Connection, records: Sequence[AuditRecord]) -> None:
    """One executemany of plain tuples: the audit runs beside the hot path, and
    SQLAlchemy's per-row compilation of dicts costs several times the insert."""
    if not records:
        return
    # sqlite3 takes "?", psycopg "%s": the two drivers the store runs on.
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    values = ", ".join([mark] * len(_COLUMNS))
    statement = f"INSERT INTO {access_audit.name} ({', '.join(_COLUMNS)}) VALUES ({values})"  # noqa: S608 - names are constants
    conn.exec_driver_sql(statement, [
        (r.server_id, r.at, r.document, r.method, r.status, r.source, r.tier, r.host)
        for r in records])


def prune(conn: Connection, server_ids: Iterable[str], keep: int, older_than: str) -> int:
    """Drop rows older than ``older_than`` (ISO time) and, for each of
    ``server_ids``, all but its newest ``keep``. Returns the rows dropped."""
    dropped = conn.execute(delete(access_audit).where(access_audit.c.at < older_than)).rowcount
    for server_id in server_ids:
        # The newest row past the ``keep`` newest: it and every older one go.
        cutoff = conn.execute(
            select(access_audit.c.id)
            .where(access_audit.c.server_id == server_id)
            .order_by(access_audit.c.id.desc())
            .offset(keep)
            .limit(1)
        ).scalar()
        if cutoff is not None:
            dropped += conn.execute(delete(access_audit).where(
                access_audit.c.server_id == server_id, access_audit.c.id <= cutoff)).rowcount
    return dropped


def newest(
    conn: Connection, server_id: str, limit: int, before_id: int | None
) -> list[AuditRecord]:
    """A server's records, newest first; ``before_id`` pages back."""
    query = select(access_audit).where(access_audit.c.server_id == server_id)
    if before_id is not None:
        query = query.where(access_audit.c.id < before_id)
    rows = conn.execute(query.order_by(access_audit.c.id.desc()).limit(limit)).all()
    return [AuditRecord(**row._asdict()) for row in rows]
