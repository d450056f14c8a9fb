"""where each bank's fetch from a hash-list exchange got to

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bank_fetch_checkpoints",
        sa.Column("bank_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("exchange", sa.String(length=64), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["bank_banks.id"],
            name=op.f("fk_bank_fetch_checkpoints_bank_id_bank_banks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("bank_id", "exchange", name=op.f("pk_bank_fetch_checkpoints")),
    )


def downgrade() -> None:
    op.drop_table("bank_fetch_checkpoints")
