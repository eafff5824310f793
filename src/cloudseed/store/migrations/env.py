"""Alembic environment, driven only by ``cloudseed.store.migrate``.

There is no alembic.ini: the caller hands over an open connection in
``config.attributes["connection"]`` and already holds the migration lock in
the transaction it began, so two processes starting at once migrate once.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from cloudseed.store.schema import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("cloudseed migrations run only through cloudseed.store.upgrade()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place; batch mode copies tables.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
