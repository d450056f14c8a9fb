"""lawful access

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

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "access_log_index",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.LargeBinary(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("log_index", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log_index")),
        sa.UniqueConstraint("kind", "ref", name="uq_access_log_index_kind_ref"),
    )
    op.create_table(
        "access_warrants",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("warrant_id", sa.LargeBinary(length=32), nullable=False),
        sa.Column("commitment", sa.LargeBinary(length=32), nullable=False),
        sa.Column("target_account_id", _BIG_ID, nullable=False),
        sa.Column("signed_warrant", sa.Text(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scope", sa.String(length=32), nullable=False),
        sa.Column("start_time", sa.BigInteger(), nullable=False),
        sa.Column("end_time", sa.BigInteger(), nullable=False),
        sa.Column("disclosure_time", sa.BigInteger(), nullable=False),
        sa.Column("commitment_index", sa.BigInteger(), nullable=True),
        sa.Column("agency_key_index", sa.BigInteger(), nullable=False),
        sa.Column("disclosure_index", sa.BigInteger(), nullable=True),
        sa.Column("final_count_index", sa.BigInteger(), nullable=True),
        sa.Column("counted_records", sa.BigInteger(), nullable=False),
        sa.Column("counted_at", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_account_id"],
            ["accounts.id"],
            name=op.f("fk_access_warrants_target_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_warrants")),
        sa.UniqueConstraint("commitment", name=op.f("uq_access_warrants_commitment")),
        sa.UniqueConstraint("warrant_id", name=op.f("uq_access_warrants_warrant_id")),
    )
    with op.batch_alter_table("access_warrants", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_warrants_target", ["target_account_id", "end_time"], unique=False
        )

    op.create_table(
        "access_records",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("warrant_pk", _BIG_ID, nullable=False),
        sa.Column("device_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["warrant_pk"],
            ["access_warrants.id"],
            name=op.f("fk_access_records_warrant_pk_access_warrants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_records")),
        sa.UniqueConstraint("warrant_pk", "device_id", "seq", name="uq_access_records_stream"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "access_delivery_metadata",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("warrant_pk", _BIG_ID, nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("counterpart", sa.String(length=64), nullable=False),
        sa.Column("occurred_at", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["warrant_pk"],
            ["access_warrants.id"],
            name=op.f("fk_access_delivery_metadata_warrant_pk_access_warrants"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_delivery_metadata")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("access_delivery_metadata", schema=None) as batch_op:
        batch_op.create_index(
            "ix_access_delivery_metadata_warrant", ["warrant_pk", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("access_delivery_metadata", schema=None) as batch_op:
        batch_op.drop_index("ix_access_delivery_metadata_warrant")
    op.drop_table("access_delivery_metadata")
    op.drop_table("access_records")
    with op.batch_alter_table("access_warrants", schema=None) as batch_op:
        batch_op.drop_index("ix_access_warrants_target")
    op.drop_table("access_warrants")
    op.drop_table("access_log_index")
