"""`server.secrets`: secrets sealed with AES-256-GCM under a key kept outside the database.
Every rejection (wrong row, wrong table, wrong key, any flipped byte, short input, unknown
version, bad key size) is one opaque `DecryptionError` or a `ConfigurationError` at start."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import ConfigurationError, DecryptionError
from accord.server.secrets import (
    SEALED_OVERHEAD_BYTES,
    AesGcmSecretsKey,
    FileSecretsKey,
    is_sealed,
    secrets_key_path,
)

KEY = AesGcmSecretsKey(key=bytes(range(32)))
SECRET = b"k" * 32


def test_round_trip_and_shape() -> None:
    sealed = KEY.seal(SECRET, table="franking_keys", row_id="a1")
    assert len(sealed) == len(SECRET) + SEALED_OVERHEAD_BYTES and is_sealed(sealed)
    assert SECRET not in sealed
    assert KEY.open(sealed, table="franking_keys", row_id="a1") == SECRET
    assert KEY.seal(SECRET, table="franking_keys", row_id="a1") != sealed  # fresh nonce


@pytest.mark.parametrize(
    ("table", "row_id"), [("franking_keys", "a2"), ("pm_tables", "a1"), ("franking_key", "sa1")]
)
def test_a_sealed_value_moved_to_another_row_does_not_open(table: str, row_id: str) -> None:
    sealed = KEY.seal(SECRET, table="franking_keys", row_id="a1")
    with pytest.raises(DecryptionError):
        KEY.open(sealed, table=table, row_id=row_id)


def test_another_key_does_not_open() -> None:
    sealed = KEY.seal(SECRET, table="franking_keys", row_id="a1")
    with pytest.raises(DecryptionError):
        AesGcmSecretsKey(key=os.urandom(32)).open(sealed, table="franking_keys", row_id="a1")


@given(position=st.integers(0, len(SECRET) + SEALED_OVERHEAD_BYTES - 1), bit=st.integers(0, 7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    sealed = bytearray(KEY.seal(SECRET, table="franking_keys", row_id="a1"))
    sealed[position] ^= 1 << bit
    with pytest.raises(DecryptionError):
        KEY.open(bytes(sealed), table="franking_keys", row_id="a1")


@pytest.mark.parametrize("value", [b"", b"\x01" * (SEALED_OVERHEAD_BYTES - 1), SECRET])
def test_short_or_plain_values_are_refused(value: bytes) -> None:
    with pytest.raises(DecryptionError):
        KEY.open(value, table="franking_keys", row_id="a1")


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_key_size_is_checked(size: int) -> None:
    with pytest.raises(ConfigurationError):
        AesGcmSecretsKey(key=bytes(size))


def test_key_file_is_created_private_once_and_reread(tmp_path: Path) -> None:
    path = secrets_key_path(tmp_path, None)
    assert path == tmp_path / "secrets.key"
    sealed = FileSecretsKey(path=path).seal(SECRET, table="franking_keys", row_id="a1")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(path.read_bytes()) == 32
    assert FileSecretsKey(path=path).open(sealed, table="franking_keys", row_id="a1") == SECRET
    assert [p.name for p in tmp_path.iterdir()] == ["secrets.key"]  # no temporary file left


def test_a_configured_key_file_is_used(tmp_path: Path) -> None:
    elsewhere = tmp_path / "kms" / "accord.key"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(bytes(range(32)))
    assert secrets_key_path(tmp_path / "data", elsewhere) == elsewhere
    sealed = FileSecretsKey(path=elsewhere).seal(SECRET, table="t", row_id="r")
    assert KEY.open(sealed, table="t", row_id="r") == SECRET


@pytest.mark.parametrize("content", [b"", b"short", bytes(33)])
def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "secrets.key"
    path.write_bytes(content)
    with pytest.raises(ConfigurationError):
        FileSecretsKey(path=path)
