"""key transparency map

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kt_accounts",
        sa.Column("search_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("search_key", name=op.f("pk_kt_accounts")),
        sa.UniqueConstraint("account", name=op.f("uq_kt_accounts_account")),
    )
    op.create_table(
        "kt_versions",
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("idx", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("account", "version", name=op.f("pk_kt_versions")),
    )
    op.create_table(
        "kt_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("applied_size", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kt_state")),
    )


def downgrade() -> None:
    op.drop_table("kt_state")
    op.drop_table("kt_versions")
    op.drop_table("kt_accounts")
