"""limit counters shared across processes; the blobs each message carries; one report per
reporter and message

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "limit_counters",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("a", sa.Float(), nullable=False),
        sa.Column("b", sa.Float(), nullable=False),
        sa.Column("c", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_limit_counters")),
    )
    op.create_index(
        op.f("ix_limit_counters_expires_at"), "limit_counters", ["expires_at"], unique=False
    )
    op.create_table(
        "message_blobs",
        sa.Column("message_pk", _BIG_ID, nullable=False),
        sa.Column("blob_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("message_pk", "blob_id", name=op.f("pk_message_blobs")),
    )
    op.create_index(op.f("ix_message_blobs_blob"), "message_blobs", ["blob_id"], unique=False)
    op.create_index(op.f("ix_blobs_created_at"), "blobs", ["created_at"], unique=False)
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("reported_message_id", sa.String(length=43), nullable=True))
    _fill_reported_message_ids()
    op.create_index(
        "uq_reports_reporter_message",
        "reports",
        ["reporter", "reported_account", "reported_message_id"],
        unique=True,
    )


def _fill_reported_message_ids() -> None:
    """Reports filed before the column: the reported message's id from the stored messages,
    for the first report of each (reporter, message); a later duplicate keeps NULL."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, reporter, reported_account, messages_json FROM reports ORDER BY id")
    ).all()
    seen: set[tuple[str, str, str]] = set()
    for row in rows:
        reported = [m["message_id"] for m in json.loads(row.messages_json) if m.get("reported")]
        key = (row.reporter, row.reported_account, reported[0] if reported else "")
        if not reported or key in seen:
            continue
        seen.add(key)
        conn.execute(
            sa.text("UPDATE reports SET reported_message_id = :m WHERE id = :id"),
            {"m": key[2], "id": row.id},
        )


def downgrade() -> None:
    op.drop_index("uq_reports_reporter_message", table_name="reports")
    with op.batch_alter_table("reports") as batch:
        batch.drop_column("reported_message_id")
    op.drop_index(op.f("ix_blobs_created_at"), table_name="blobs")
    op.drop_index(op.f("ix_message_blobs_blob"), table_name="message_blobs")
    op.drop_table("message_blobs")
    op.drop_index(op.f("ix_limit_counters_expires_at"), table_name="limit_counters")
    op.drop_table("limit_counters")
