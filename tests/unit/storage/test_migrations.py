"""The Alembic migrations build exactly the tables the code declares (on SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from accord.storage import banks, schema, translog
from accord.storage.db import make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head

TABLE_SETS = [schema.metadata, banks.metadata, translog.metadata]


def _differences(url: str) -> list[object]:
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        upgrade_to_head(engine)  # running them again is a no-op
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"render_as_batch": True})
            return list(compare_metadata(ctx, TABLE_SETS))
    finally:
        engine.dispose()


def test_migrations_match_the_declared_tables_sqlite(tmp_path: Path) -> None:
    assert _differences(sqlite_url(tmp_path)) == []


@pytest.mark.postgres
def test_migrations_match_the_declared_tables_postgres(fresh_pg_url: str) -> None:
    assert _differences(fresh_pg_url) == []
