"""Phone-home reports: host keys and boot time a guest sent (issue #15).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "phone_homes",
        sa.Column("server_id", sa.String(64), nullable=False),
        sa.Column("booted_at", sa.String(40), nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("fqdn", sa.Text, nullable=False),
        sa.Column("pub_key_rsa", sa.Text, nullable=False),
        sa.Column("pub_key_ecdsa", sa.Text, nullable=False),
        sa.Column("pub_key_ed25519", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("server_id", name="pk_phone_homes"),
        sa.ForeignKeyConstraint(
            ["server_id"], ["servers.id"], name="fk_phone_homes_server_id", ondelete="CASCADE"
        ),
    )


def downgrade() -> None:
    op.drop_table("phone_homes")
