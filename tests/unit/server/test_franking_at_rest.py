"""Franking keys at rest: stored sealed, plain rows of an older version sealed at start (the
same key afterwards), and a row that does not open under the secrets key never used."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select

from accord.errors import ConfigurationError
from accord.server.franking import FRANKING_SECRETS, FrankingKeyRing
from accord.server.secrets import AesGcmSecretsKey, is_sealed, seal_plain_rows
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.storage.schema import franking_keys

AT_MS = 1_800_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Database:
    engine = make_engine(sqlite_url(tmp_path))
    upgrade_to_head(engine)
    return Database(engine)


def _stored(db: Database, key_id: str) -> bytes:
    with db.read() as conn:
        row = conn.execute(
            select(franking_keys.c.secret).where(franking_keys.c.key_id == key_id)
        ).one()
    return bytes(row.secret)


def test_new_keys_are_stored_sealed(db: Database) -> None:
    secrets = AesGcmSecretsKey(key=bytes(32))
    key_id, secret = FrankingKeyRing(db, secrets=secrets).key_for(AT_MS)
    stored = _stored(db, key_id)
    assert is_sealed(stored) and secret not in stored
    # Another process (a fresh key ring on the same database) opens the same key.
    assert FrankingKeyRing(db, secrets=secrets).key_for(AT_MS) == (key_id, secret)


def test_plain_rows_are_sealed_at_start_and_keep_their_key(db: Database) -> None:
    secrets = AesGcmSecretsKey(key=bytes(32))
    ring = FrankingKeyRing(db, secrets=secrets)
    key_id = ring._key_id(AT_MS)
    plain = bytes(range(32))
    db.transact(
        lambda conn: conn.execute(
            insert(franking_keys).values(key_id=key_id, secret=plain, created_at=AT_MS)
        )
    )
    assert seal_plain_rows(db, secrets, FRANKING_SECRETS) == 1
    assert is_sealed(_stored(db, key_id))
    assert ring.key_for(AT_MS) == (key_id, plain)
    assert seal_plain_rows(db, secrets, FRANKING_SECRETS) == 0


def test_a_row_that_does_not_open_is_never_used(db: Database) -> None:
    FrankingKeyRing(db, secrets=AesGcmSecretsKey(key=bytes(32))).key_for(AT_MS)
    with pytest.raises(ConfigurationError):
        FrankingKeyRing(db, secrets=AesGcmSecretsKey(key=b"\x01" * 32)).key_for(AT_MS)
