"""appeals of suspended accounts

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "appeals",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("account_id", _BIG_ID, nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_appeals_account_id_accounts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appeals")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_appeals_account", "appeals", ["account_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_appeals_account", table_name="appeals")
    op.drop_table("appeals")
