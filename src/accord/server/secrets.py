"""The server's secrets at rest: sealed in the database under a key that is not in it.

Whoever reads the database (a copy of the SQLite file, a PostgreSQL dump, a backup) must not
learn the franking keys: with them a reader could tag a rewritten message and have it filed as
a verified report. So the server keeps such secrets sealed with AES-256-GCM under a 32-byte
secrets key held outside the database (`DATA_DIR/secrets.key`, or a file the operator names
with `--secrets-key-file` / `ACCORD_SECRETS_KEY_FILE`, on another disk or host mount). Each
sealed value binds its row's identity (table and key id) as associated data, so a sealed value
moved to another row does not open.

Sealed format: version byte 0x01 | 12-byte nonce | ciphertext and 16-byte GCM tag.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Column, Connection, Table, select, update

from accord.errors import ConfigurationError, DecryptionError
from accord.storage.db import Database

log = logging.getLogger("accord.server")

SECRETS_KEY_FILE = "secrets.key"
SECRETS_KEY_BYTES = 32
SEALED_VERSION = b"\x01"
SEALED_NONCE_BYTES = 12
SEALED_TAG_BYTES = 16
SEALED_OVERHEAD_BYTES = len(SEALED_VERSION) + SEALED_NONCE_BYTES + SEALED_TAG_BYTES
SEAL_AAD_DOMAIN = b"accord sealed secret v1\x00"


class SecretsKey(Protocol):
    """Seals and opens the server's secrets stored in the database."""

    def seal(self, plaintext: bytes, *, table: str, row_id: str) -> bytes: ...

    def open(self, sealed: bytes, *, table: str, row_id: str) -> bytes:
        """The plaintext, or `DecryptionError` (one opaque error whatever went wrong)."""
        ...


def is_sealed(value: bytes) -> bool:
    """Whether `value` has the sealed format's shape (it may still fail to open)."""
    return len(value) >= SEALED_OVERHEAD_BYTES and value[:1] == SEALED_VERSION


def _aad(table: str, row_id: str) -> bytes:
    t, r = table.encode(), row_id.encode()
    return SEAL_AAD_DOMAIN + len(t).to_bytes(2, "big") + t + len(r).to_bytes(2, "big") + r


class AesGcmSecretsKey:
    """A `SecretsKey` over 32 key bytes held in memory."""

    def __init__(self, *, key: bytes) -> None:
        if len(key) != SECRETS_KEY_BYTES:
            raise ConfigurationError(f"the secrets key must be {SECRETS_KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, *, table: str, row_id: str) -> bytes:
        nonce = os.urandom(SEALED_NONCE_BYTES)
        return SEALED_VERSION + nonce + self._aead.encrypt(nonce, plaintext, _aad(table, row_id))

    def open(self, sealed: bytes, *, table: str, row_id: str) -> bytes:
        if not is_sealed(sealed):
            raise DecryptionError("a sealed secret does not open")
        nonce = sealed[1 : 1 + SEALED_NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + SEALED_NONCE_BYTES :], _aad(table, row_id))
        except InvalidTag:
            raise DecryptionError("a sealed secret does not open") from None


class FileSecretsKey(AesGcmSecretsKey):
    """The secrets key read from a file; created (mode 0600, exclusively) if it does not exist."""

    def __init__(self, *, path: Path) -> None:
        self.path = path
        super().__init__(key=_read_or_create_key(path))


def _read_or_create_key(path: Path) -> bytes:
    if not path.exists():
        # Written whole to a private temporary file, then linked into place: a process starting
        # beside this one either sees no key or the whole key, and only one key ever wins.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(SECRETS_KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
            log.info("created a new secrets key at %s", path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    key = path.read_bytes()
    if len(key) != SECRETS_KEY_BYTES:
        raise ConfigurationError(
            f"the secrets key file {path} must hold exactly {SECRETS_KEY_BYTES} bytes"
        )
    if path.stat().st_mode & 0o077:
        log.warning("the secrets key file %s is readable by others; make it mode 0600", path)
    return key


@dataclass(frozen=True)
class SealedColumn:
    """A database column holding sealed secrets: its table, the column (or columns, joined with
    "/") naming each row (bound as associated data), and the length of the secret in the plain
    form older versions wrote."""

    table: Table
    row_id: Column[Any] | tuple[Column[Any], ...]
    secret: Column[Any]
    plain_bytes: int

    @property
    def key_columns(self) -> tuple[Column[Any], ...]:
        return self.row_id if isinstance(self.row_id, tuple) else (self.row_id,)

    def seal(self, secrets: SecretsKey, plain: bytes, row_id: object) -> bytes:
        """`plain` sealed for the row `row_id` of this column's table."""
        return secrets.seal(plain, table=self.table.name, row_id=str(row_id))

    def open(self, secrets: SecretsKey, stored: bytes, row_id: object) -> bytes:
        """A stored secret opened, or `ConfigurationError` (the server's secrets key is not the
        one the row was sealed under, or the row was altered): such a row is never used."""
        try:
            return secrets.open(stored, table=self.table.name, row_id=str(row_id))
        except DecryptionError:
            raise ConfigurationError(
                f"a stored secret in {self.table.name} does not open under this server's "
                "secrets key"
            ) from None


def seal_plain_rows(db: Database, secrets: SecretsKey, column: SealedColumn) -> int:
    """Seal every secret in `column` still stored in plain form (written by a version before
    sealing); return how many were sealed. Run once at start, before the rows are read."""
    table, keys, secret = column.table, column.key_columns, column.secret

    def _tx(conn: Connection) -> int:
        rows = conn.execute(select(secret, *keys)).all()
        sealed = 0
        for stored, *key in rows:
            value = bytes(stored)
            if len(value) == column.plain_bytes and not is_sealed(value):
                rid = "/".join(str(k) for k in key)
                conn.execute(
                    update(table)
                    .where(*(c == k for c, k in zip(keys, key, strict=True)))
                    .values({secret.name: column.seal(secrets, value, rid)})
                )
                sealed += 1
        return sealed

    return db.transact(_tx)


def secrets_key_path(data_dir: Path, configured: Path | None) -> Path:
    """Where the secrets key lives: the configured path, else DATA_DIR/secrets.key."""
    return configured if configured is not None else data_dir / SECRETS_KEY_FILE


FILE_TABLE = "file"
"""The `table` bound into a sealed key file's associated data (its `row_id` is the file name)."""


def read_sealed_file(
    path: Path,
    secrets: SecretsKey,
    *,
    make: Callable[[], bytes],
    plain_check: Callable[[bytes], bool],
) -> bytes:
    """A private key file of the data directory (the log key, the review key, the agency token
    key), kept sealed under
    the secrets key: whoever copies the data directory without the secrets key holds nothing.

    Made with `make()` (sealed, mode 0600, exclusively) if missing. A file an older version wrote
    in plain form (`plain_check` says it is one) is sealed in place, by an atomic rename, so a
    process starting beside this one reads either form."""
    if not path.exists():
        _write_exclusive(path, secrets.seal(make(), table=FILE_TABLE, row_id=path.name))
    stored = path.read_bytes()
    try:
        return secrets.open(stored, table=FILE_TABLE, row_id=path.name)
    except DecryptionError:
        if not plain_check(stored):
            raise ConfigurationError(
                f"{path} does not open under this server's secrets key"
            ) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.seal(stored, table=FILE_TABLE, row_id=path.name))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    log.info("sealed the plain key file %s under the secrets key", path.name)
    return stored


def _write_exclusive(path: Path, data: bytes) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first; read theirs
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
