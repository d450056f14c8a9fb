"""lawful access: the first cosigned checkpoint of each warrant's commitment, and disclosure
extensions

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("access_warrants") as batch:
        batch.add_column(sa.Column("commitment_checkpoint", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("access_warrants") as batch:
        batch.drop_column("commitment_checkpoint")
