"""The change feed: what one write transaction touched, and reading it back.

A writer collects its changes in a ``ChangeSet`` (one entry per entity, the
strongest operation wins) and stores them under its single revision at
commit. Readers ask for everything after the revision they have seen.
"""

from __future__ import annotations

from sqlalchemy import Connection, insert, select

from cloudseed.store.protocol import Change, ChangeOp, EntityKind
from cloudseed.store.schema import changes


class ChangeSet:
    """Entities touched by one transaction, each once.

    PUT and DELETE say what happened to the entity itself, so the latest of
    them wins; TOUCH (something derived from the entity changed) never
    hides a PUT or DELETE.
    """

    def __init__(self) -> None:
        self._ops: dict[tuple[EntityKind, str], ChangeOp] = {}

    def put(self, kind: EntityKind, entity_id: str) -> None:
        self._ops[(kind, entity_id)] = ChangeOp.PUT

    def delete(self, kind: EntityKind, entity_id: str) -> None:
        self._ops[(kind, entity_id)] = ChangeOp.DELETE

    def touch(self, kind: EntityKind, entity_id: str | None) -> None:
        if entity_id is not None:
            self._ops.setdefault((kind, entity_id), ChangeOp.TOUCH)

    def __bool__(self) -> bool:
        return bool(self._ops)

    def __len__(self) -> int:
        return len(self._ops)

    def save(self, conn: Connection, revision: int) -> None:
        rows = [
            {"revision": revision, "kind": kind.value, "entity_id": entity_id, "op": op.value}
            for (kind, entity_id), op in self._ops.items()
        ]
        if rows:
            conn.execute(insert(changes), rows)


def changes_since(conn: Connection, revision: int, limit: int) -> list[Change]:
    """Changes after ``revision``, oldest first, never splitting a revision.

    ``limit`` bounds the rows read, except that the last revision returned is
    always complete: a reader may then safely resume from it.
    """
    order = (changes.c.revision, changes.c.kind, changes.c.entity_id)
    rows = list(
        conn.execute(
            select(changes).where(changes.c.revision > revision).order_by(*order).limit(limit)
        )
    )
    if len(rows) == limit and rows:
        last = rows[-1]
        rows.extend(
            conn.execute(
                select(changes)
                .where(
                    changes.c.revision == last.revision,
                    (changes.c.kind > last.kind)
                    | ((changes.c.kind == last.kind) & (changes.c.entity_id > last.entity_id)),
                )
                .order_by(*order)
            )
        )
    return [
        Change(row.revision, EntityKind(row.kind), row.entity_id, ChangeOp(row.op)) for row in rows
    ]
