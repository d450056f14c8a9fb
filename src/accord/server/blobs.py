"""Attachments: opaque encrypted files, written atomically and durably, recorded against the
device that uploaded them and fetched by their random id (a capability); and collected when no
one needs them any more (`BlobCollector`).

What the collector removes (docs/deployment.md, "Attachments"), a blob held by a message still
queued for some device never:
- `unsent`: an upload no message names, `BLOB_UNSENT_TTL_S` after it was uploaded;
- `delivered`: a blob whose messages every device has fetched and acknowledged,
  `BLOB_RETENTION_S` after upload (a report of the message can fetch it until then);
- `suspended`: what a suspended account uploaded, at once (it can no longer send it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import ColumnElement, Connection, and_, delete, exists, insert, select

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import InvalidInput, NotFound, TooLarge
from accord.server.messaging import AuthedDevice
from accord.storage.db import Database
from accord.storage.schema import accounts, blobs, devices, message_blobs, messages
from accord.wire.messaging import BlobCreated

BLOB_ID_BYTES = 24
SHA256_BYTES = 32
# An encrypted attachment is a little longer than the file it holds.
ENCRYPTION_OVERHEAD_BYTES = 64
BLOB_UNSENT_TTL_S = 24 * 3600
BLOB_RETENTION_S = 30 * 24 * 3600
COLLECT_BATCH = 1000


def new_blob_id() -> str:
    return secrets.token_urlsafe(BLOB_ID_BYTES)


def _check_blob_id(blob_id: str) -> str:
    if not (16 <= len(blob_id) <= 64) or not all(c.isalnum() or c in "-_" for c in blob_id):
        raise NotFound()
    return blob_id


class FileBlobStore:
    """Blobs as files under one directory; the name is a random capability id."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)

    def path(self, blob_id: str) -> Path:
        blob_id = _check_blob_id(blob_id)
        path = self.root / blob_id[:2] / blob_id
        if not path.is_file():
            raise NotFound()
        return path

    def open(self, blob_id: str) -> BinaryIO:
        """The blob, open for reading (NotFound for an unknown or malformed id). An open file
        stays readable to its end if the collector removes the blob meanwhile, so a download
        that has begun is never cut off."""
        blob_id = _check_blob_id(blob_id)
        try:
            return (self.root / blob_id[:2] / blob_id).open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound() from None

    def remove(self, blob_id: str) -> None:
        (self.root / blob_id[:2] / _check_blob_id(blob_id)).unlink(missing_ok=True)

    async def save(
        self,
        chunks: AsyncIterator[bytes],
        *,
        declared_size: int,
        expected_sha256: bytes,
        max_bytes: int,
    ) -> tuple[str, int]:
        """Stream an upload to disk; keep it only if size and digest are exactly as declared."""
        if declared_size > max_bytes:
            raise TooLarge(f"blob larger than {max_bytes} bytes")
        blob_id = new_blob_id()
        tmp = self.root / "tmp" / blob_id
        digest = hashlib.sha256()
        size = 0
        try:
            with tmp.open("wb") as f:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > declared_size:
                        raise InvalidInput("upload longer than declared", code="blob_size_mismatch")
                    digest.update(chunk)
                    f.write(chunk)
                if size != declared_size:
                    raise InvalidInput("upload truncated", code="blob_size_mismatch")
                if not hmac.compare_digest(digest.digest(), expected_sha256):
                    raise InvalidInput("upload digest mismatch", code="blob_digest_mismatch")
                f.flush()
                os.fsync(f.fileno())
            final_dir = self.root / blob_id[:2]
            final_dir.mkdir(exist_ok=True)
            tmp.replace(final_dir / blob_id)
            dir_fd = os.open(final_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)
        return blob_id, size


class BlobService:
    """Uploads checked against the size and digest declared up front, recorded against the
    uploading device; downloads by id."""

    def __init__(
        self,
        db: Database,
        store: FileBlobStore,
        *,
        max_attachment_bytes: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.clock = clock
        self.store = store
        self.max_attachment_bytes = max_attachment_bytes

    async def upload(
        self,
        dev: AuthedDevice,
        chunks: AsyncIterator[bytes],
        *,
        declared_size: int | None,
        sha256_b64: str | None,
    ) -> BlobCreated:
        if declared_size is None:
            raise InvalidInput("Content-Length required", code="length_required")
        try:
            expected = base64.b64decode(sha256_b64 or "", validate=True)
        except (binascii.Error, ValueError):
            expected = b""
        if len(expected) != SHA256_BYTES:
            raise InvalidInput("X-Accord-Blob-SHA256 must be a base64 SHA-256 digest")
        blob_id, size = await self.store.save(
            chunks,
            declared_size=declared_size,
            expected_sha256=expected,
            max_bytes=self.max_attachment_bytes + ENCRYPTION_OVERHEAD_BYTES,
        )

        def _tx(conn: Connection) -> None:
            conn.execute(
                insert(blobs).values(
                    blob_id=blob_id,
                    size=size,
                    uploader_device_pk=dev.device_pk,
                    created_at=now_ms(self.clock),
                )
            )

        await self.db.transact_async(_tx)
        return BlobCreated(blob_id=blob_id, size=size)

    def path(self, blob_id: str) -> Path:
        """Where the blob is on disk (NotFound for an unknown or malformed id)."""
        return self.store.path(blob_id)

    def open(self, blob_id: str) -> BinaryIO:
        """The blob, open for reading (NotFound for an unknown or malformed id)."""
        return self.store.open(blob_id)


@dataclass(frozen=True, slots=True)
class Collected:
    """What one collection removed: blobs and bytes per reason."""

    blobs: dict[str, int]
    bytes: dict[str, int]


class BlobCollector:
    """Removes blobs no one needs any more (see the module's docstring); the server's
    housekeeping calls `collect` now and then. Each blob's row goes in a transaction that checks
    again that no queued message holds it, and only then its file."""

    def __init__(self, db: Database, store: FileBlobStore, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.store = store
        self.clock = clock

    def _reasons(self, now: int) -> dict[str, ColumnElement[bool]]:
        named = exists().where(message_blobs.c.blob_id == blobs.c.blob_id)
        suspended = exists().where(
            devices.c.id == blobs.c.uploader_device_pk,
            accounts.c.id == devices.c.account_id,
            accounts.c.suspended.is_(True),
        )
        return {
            "unsent": and_(~named, blobs.c.created_at < now - BLOB_UNSENT_TTL_S * 1000),
            "delivered": and_(named, blobs.c.created_at < now - BLOB_RETENTION_S * 1000),
            "suspended": suspended,
        }

    def collect(self) -> Collected:
        now = now_ms(self.clock)
        held = exists().where(
            message_blobs.c.blob_id == blobs.c.blob_id, messages.c.id == message_blobs.c.message_pk
        )
        removed: dict[str, int] = {}
        removed_bytes: dict[str, int] = {}
        for reason, due in self._reasons(now).items():
            condition = and_(due, ~held)
            with self.db.read() as conn:
                rows = conn.execute(
                    select(blobs.c.blob_id, blobs.c.size).where(condition).limit(COLLECT_BATCH)
                ).all()
            for row in rows:
                if self._remove(row.blob_id, condition):
                    removed[reason] = removed.get(reason, 0) + 1
                    removed_bytes[reason] = removed_bytes.get(reason, 0) + int(row.size)
        return Collected(blobs=removed, bytes=removed_bytes)

    def _remove(self, blob_id: str, condition: ColumnElement[bool]) -> bool:
        def _tx(conn: Connection) -> bool:
            gone = conn.execute(delete(blobs).where(blobs.c.blob_id == blob_id, condition)).rowcount
            if gone:
                conn.execute(delete(message_blobs).where(message_blobs.c.blob_id == blob_id))
            return bool(gone)

        if not self.db.transact(_tx):
            return False  # a message took it meanwhile
        self.store.remove(blob_id)  # after the row: a crash in between leaves only a file
        return True
