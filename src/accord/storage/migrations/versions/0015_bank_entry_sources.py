"""every source that lists a banked hash, and entries withdrawn by all of them

A bank holds a hash once; several sources may list it (NCMEC's members often upload the same
file). A deletion upstream now removes that source's listing and disables the entry only when
no source lists it any more (`withdrawn`). Existing entries are listed under their own source.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "bank_entry_sources",
        sa.Column("entry_id", _ID, nullable=False),
        sa.Column("bank_id", _ID, nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["bank_entries.id"],
            name=op.f("fk_bank_entry_sources_entry_id_bank_entries"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["bank_id"],
            ["bank_banks.id"],
            name=op.f("fk_bank_entry_sources_bank_id_bank_banks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("entry_id", "source", name=op.f("pk_bank_entry_sources")),
    )
    op.create_index(
        "ix_bank_entry_sources_bank_source", "bank_entry_sources", ["bank_id", "source"]
    )
    with op.batch_alter_table("bank_entries") as batch:
        batch.add_column(
            sa.Column("withdrawn", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    # Partial: few entries are withdrawn, and inserts then pay nothing for it.
    op.create_index(
        "ix_bank_entries_withdrawn",
        "bank_entries",
        ["bank_id"],
        sqlite_where=sa.text("withdrawn = 1"),
        postgresql_where=sa.text("withdrawn"),
    )
    op.execute(
        "INSERT INTO bank_entry_sources (entry_id, bank_id, source) "
        "SELECT id, bank_id, source FROM bank_entries WHERE source <> ''"
    )


def downgrade() -> None:
    op.drop_index("ix_bank_entries_withdrawn", table_name="bank_entries")
    with op.batch_alter_table("bank_entries") as batch:
        batch.drop_column("withdrawn")
    op.drop_index("ix_bank_entry_sources_bank_source", table_name="bank_entry_sources")
    op.drop_table("bank_entry_sources")
