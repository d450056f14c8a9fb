"""review counts per day in the transparency log

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_count_days",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.Column("emitted_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_review_count_days")),
    )
    op.create_index("ix_review_audit_at", "review_audit", ["at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_review_audit_at", table_name="review_audit")
    op.drop_table("review_count_days")
