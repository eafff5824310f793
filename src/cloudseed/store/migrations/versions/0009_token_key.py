"""A random IMDSv2 token key per store, used when ``api.token_key`` is not set:
every API host and the co-located front then issue and verify with the same
key, and a guest's token outlives a restart of the process that issued it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("meta") as batch:
        batch.add_column(sa.Column("token_key", sa.String(64), nullable=True))
    # Made here, once per store: upgrades are serialised, so hosts starting
    # together can never make two keys.
    op.execute(sa.text("UPDATE meta SET token_key = :key")
               .bindparams(key=secrets.token_hex(32)))


def downgrade() -> None:
    with op.batch_alter_table("meta") as batch:
        batch.drop_column("token_key")
