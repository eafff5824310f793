"""Port device tags and flavor disk sizes (Nova's ``devices`` and EC2
``block-device-mapping``).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ports") as batch:
        batch.add_column(sa.Column("tag", sa.String(255), nullable=True))
    with op.batch_alter_table("servers") as batch:
        # Existing servers had no flavor disks: 0 is what they rendered as.
        for name in ("root_gb", "ephemeral_gb", "swap_mb"):
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("servers") as batch:
        for name in ("swap_mb", "ephemeral_gb", "root_gb"):
            batch.drop_column(name)
    with op.batch_alter_table("ports") as batch:
        batch.drop_column("tag")
