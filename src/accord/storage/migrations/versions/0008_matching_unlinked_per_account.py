"""private matching: no voucher row names a message or a time; counted per account

Vouchers no longer record the message they came with or when (queue and seen ids); seen ids
carry their key epoch so they can be dropped after it; counts are per account, not per device;
crossing voucher keys are sealed (the column holds the longer sealed form).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("pm_queue") as batch:
        batch.drop_column("message_id")
        batch.drop_column("queued_at")
        batch.add_column(
            sa.Column("device_id", sa.String(length=32), nullable=False, server_default="")
        )
    with op.batch_alter_table("pm_queue") as batch:
        batch.alter_column("device_id", server_default=None)
    with op.batch_alter_table("pm_seen_vouchers") as batch:
        batch.drop_column("message_id")
        batch.drop_column("seen_at")
        batch.add_column(sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("pm_seen_vouchers") as batch:
        batch.alter_column("epoch", server_default=None)
    with op.batch_alter_table("pm_accounts") as batch:
        batch.drop_column("device_id")
        batch.add_column(
            sa.Column("latest_epoch", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("pm_epochs") as batch:
        batch.alter_column(
            "voucher_key", existing_type=sa.LargeBinary(length=32), type_=sa.LargeBinary()
        )


def downgrade() -> None:
    with op.batch_alter_table("pm_epochs") as batch:
        batch.alter_column(
            "voucher_key", existing_type=sa.LargeBinary(), type_=sa.LargeBinary(length=32)
        )
    with op.batch_alter_table("pm_accounts") as batch:
        batch.drop_column("latest_epoch")
        batch.add_column(
            sa.Column("device_id", sa.String(length=32), nullable=False, server_default="")
        )
    with op.batch_alter_table("pm_seen_vouchers") as batch:
        batch.drop_column("epoch")
        batch.add_column(sa.Column("seen_at", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("message_id", sa.String(length=43), nullable=False, server_default="")
        )
    with op.batch_alter_table("pm_queue") as batch:
        batch.drop_column("device_id")
        batch.add_column(sa.Column("queued_at", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("message_id", sa.String(length=43), nullable=False, server_default="")
        )
