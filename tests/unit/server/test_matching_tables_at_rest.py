"""Private-matching table secrets at rest: a plain blinding scalar of an older version is
sealed at start under the secrets key, bound to its table version; it then opens only there."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select

from accord.errors import DecryptionError
from accord.server.private_matching.tables import TABLE_SECRETS
from accord.server.secrets import AesGcmSecretsKey, is_sealed, seal_plain_rows
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.storage.schema import pm_tables


def test_plain_table_secrets_are_sealed_at_start(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    upgrade_to_head(engine)
    db = Database(engine)
    alpha = bytes(range(32))
    db.transact(
        lambda conn: conn.execute(
            insert(pm_tables).values(
                version=7,
                digest=b"d" * 32,
                secret=alpha,
                params=b"p" * 16,
                banks_json="[]",
                banked_hashes=1,
                elements=1,
                size=1,
                published_at=1,
            )
        )
    )
    secrets = AesGcmSecretsKey(key=bytes(32))
    assert seal_plain_rows(db, secrets, TABLE_SECRETS) == 1
    assert seal_plain_rows(db, secrets, TABLE_SECRETS) == 0
    with db.read() as conn:
        stored = bytes(conn.execute(select(pm_tables.c.secret)).scalar_one())
    assert is_sealed(stored) and alpha not in stored
    assert secrets.open(stored, table="pm_tables", row_id="7") == alpha
    with pytest.raises(DecryptionError):
        secrets.open(stored, table="pm_tables", row_id="8")
    db.dispose()
