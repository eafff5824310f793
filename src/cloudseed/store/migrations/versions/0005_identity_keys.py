"""Identity keys: what signs instance identity documents and tokens (issue #16).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "identity_keys",
        sa.Column("kid", sa.String(64), nullable=False),
        sa.Column("private_key_pem", sa.Text, nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.PrimaryKeyConstraint("kid", name="pk_identity_keys"),
    )


def downgrade() -> None:
    op.drop_table("identity_keys")
