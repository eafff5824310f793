"""Guest attributes and each server's guest-write budget (issue #15).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guest_attributes",
        sa.Column("server_id", sa.String(64), nullable=False),
        sa.Column("namespace", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("server_id", "namespace", "key", name="pk_guest_attributes"),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"],
                                name="fk_guest_attributes_server_id", ondelete="CASCADE"),
    )
    op.create_table(
        "guest_attribute_budgets",
        sa.Column("server_id", sa.String(64), nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("server_id", name="pk_guest_attribute_budgets"),
        sa.ForeignKeyConstraint(["server_id"], ["servers.id"],
                                name="fk_guest_attribute_budgets_server_id", ondelete="CASCADE"),
    )


def downgrade() -> None:
    op.drop_table("guest_attribute_budgets")
    op.drop_table("guest_attributes")
