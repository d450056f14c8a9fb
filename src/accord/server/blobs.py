"""Attachments: opaque encrypted files, written atomically and durably, recorded against the
device that uploaded them and fetched by their random id (a capability)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import Connection, insert

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import InvalidInput, NotFound, TooLarge
from accord.server.messaging import AuthedDevice
from accord.storage.db import Database
from accord.storage.schema import blobs
from accord.wire.messaging import BlobCreated

BLOB_ID_BYTES = 24
SHA256_BYTES = 32
# An encrypted attachment is a little longer than the file it holds.
ENCRYPTION_OVERHEAD_BYTES = 64


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
