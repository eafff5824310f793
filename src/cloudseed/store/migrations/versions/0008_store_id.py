"""A random id per store, so a cache of it (the per-host ready map) can tell one
store from another created at the same place (issue #17).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meta") as batch:
        batch.add_column(sa.Column("store_id", sa.String(36), nullable=True))
    op.execute(sa.text("UPDATE meta SET store_id = :id").bindparams(id=str(uuid.uuid4())))


def downgrade() -> None:
    with op.batch_alter_table("meta") as batch:
        batch.drop_column("store_id")
