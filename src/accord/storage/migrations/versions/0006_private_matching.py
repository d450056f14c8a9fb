"""private threshold matching

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pm_tables",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("secret", sa.LargeBinary(length=32), nullable=False),
        sa.Column("params", sa.LargeBinary(length=16), nullable=False),
        sa.Column("banks_json", sa.Text(), nullable=False),
        sa.Column("banked_hashes", sa.BigInteger(), nullable=False),
        sa.Column("elements", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("published_at", sa.BigInteger(), nullable=False),
        sa.Column("retired_at", sa.BigInteger(), nullable=True),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_pm_tables")),
        sa.UniqueConstraint("digest", name=op.f("uq_pm_tables_digest")),
    )
    op.create_table(
        "pm_queue",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("matching_account", sa.String(length=100), nullable=False),
        sa.Column("voucher_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=43), nullable=False),
        sa.Column("voucher", sa.LargeBinary(), nullable=False),
        sa.Column("queued_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pm_queue")),
        sa.UniqueConstraint("matching_account", "voucher_id", name="uq_pm_queue_voucher"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "pm_accounts",
        sa.Column("matching_account", sa.String(length=100), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("vouchers", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("matching_account", name=op.f("pk_pm_accounts")),
    )
    op.create_table(
        "pm_seen_vouchers",
        sa.Column("matching_account", sa.String(length=100), nullable=False),
        sa.Column("voucher_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=43), nullable=False),
        sa.Column("seen_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "matching_account", "voucher_id", name=op.f("pk_pm_seen_vouchers")
        ),
    )
    op.create_table(
        "pm_shares",
        sa.Column("matching_account", sa.String(length=100), nullable=False),
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("x", sa.LargeBinary(length=32), nullable=False),
        sa.Column("voucher_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("header", sa.LargeBinary(length=72), nullable=False),
        sa.Column("y", sa.LargeBinary(length=32), nullable=False),
        sa.Column("tag", sa.LargeBinary(), nullable=False),
        sa.Column("inner_nonce", sa.LargeBinary(length=12), nullable=False),
        sa.Column("inner", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("matching_account", "epoch", "x", name=op.f("pk_pm_shares")),
    )
    op.create_table(
        "pm_epochs",
        sa.Column("matching_account", sa.String(length=100), nullable=False),
        sa.Column("epoch", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("voucher_key", sa.LargeBinary(length=32), nullable=False),
        sa.Column("crossed_at", sa.BigInteger(), nullable=False),
        sa.Column("crossing_nonce", sa.LargeBinary(length=32), nullable=False),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("matching_account", "epoch", name=op.f("pk_pm_epochs")),
    )
    op.create_table(
        "pm_events",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("matching_account", sa.String(length=100), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("table_version", sa.Integer(), nullable=False),
        sa.Column("images", sa.Integer(), nullable=False),
        sa.Column("discarded", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pm_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_pm_events_event_id")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("pm_events", schema=None) as batch_op:
        batch_op.create_index("ix_pm_events_created", ["created_at"], unique=False)
    op.create_table(
        "pm_event_images",
        sa.Column("event_pk", _BIG_ID, nullable=False),
        sa.Column("idx", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("voucher_id", sa.LargeBinary(length=16), nullable=False),
        sa.Column("pdq", sa.LargeBinary(length=32), nullable=False),
        sa.Column("bank", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("distance", sa.Integer(), nullable=False),
        sa.Column("derivative", sa.LargeBinary(length=4096), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_pk"],
            ["pm_events.id"],
            name=op.f("fk_pm_event_images_event_pk_pm_events"),
        ),
        sa.PrimaryKeyConstraint("event_pk", "idx", name=op.f("pk_pm_event_images")),
    )


def downgrade() -> None:
    op.drop_table("pm_event_images")
    with op.batch_alter_table("pm_events", schema=None) as batch_op:
        batch_op.drop_index("ix_pm_events_created")
    op.drop_table("pm_events")
    op.drop_table("pm_epochs")
    op.drop_table("pm_shares")
    op.drop_table("pm_seen_vouchers")
    op.drop_table("pm_accounts")
    op.drop_table("pm_queue")
    op.drop_table("pm_tables")
