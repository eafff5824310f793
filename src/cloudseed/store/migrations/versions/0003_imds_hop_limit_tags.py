"""IMDS options: the token reply's hop limit and instance tags in metadata.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        # Existing servers get AWS's defaults: hop limit 1, tags off.
        batch.add_column(
            sa.Column("imds_hop_limit", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(
            sa.Column("imds_tags", sa.Boolean, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        batch.drop_column("imds_tags")
        batch.drop_column("imds_hop_limit")
