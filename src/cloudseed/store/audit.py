"""The access audit's rows: append a batch, prune, read a server's newest.

Not inventory: appends neither take the writers' lock nor bump the revision,
so a guest's reads never show in the change feed or in ``/v1/export``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, delete, insert, select

from cloudseed.model import AuditRecord
from cloudseed.store.schema import access_audit


def append(conn: Connection, records: Sequence[AuditRecord]) -> None:
    # Built by hand: dataclasses.asdict deep-copies, several times slower.
    rows = [{"server_id": r.server_id, "at": r.at, "document": r.document, "method": r.method,
             "status": r.status, "source": r.source, "tier": r.tier, "host": r.host}
            for r in records]
    if rows:
        conn.execute(insert(access_audit), rows)


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
