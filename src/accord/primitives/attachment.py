"""Key-committing, streaming encryption of attachments.

Scheme (docs/protocol/messaging.md, "Attachments"):
    K                      32 random bytes, carried inside the end-to-end encrypted message
    enc_key || mac_key     = HKDF-SHA256(K, salt="", info=ATTACHMENT_INFO, 64 bytes)
    blob                   = MAGIC || nonce(16) || AES-256-CTR(enc_key, nonce, plaintext) || tag
    tag                    = HMAC-SHA256(mac_key, MAGIC || nonce || ciphertext)
The message also carries SHA-256(blob) and the plaintext size. Encrypt-then-MAC over the whole
ciphertext with a MAC key derived from K makes the scheme key-committing: a blob that verifies
under two different keys would be an HMAC-SHA256 collision. Decryption verifies the tag and the
digest over the whole blob before it releases a single plaintext byte.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.errors import DecryptionError, InvalidInput, TooLarge

MAGIC = b"ACA1"
ATTACHMENT_INFO = b"accord attachment v1"
KEY_BYTES = 32
NONCE_BYTES = 16
TAG_BYTES = 32
HEADER_BYTES = len(MAGIC) + NONCE_BYTES
OVERHEAD_BYTES = HEADER_BYTES + TAG_BYTES
CHUNK_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class AttachmentSecrets:
    """What the sender puts in the encrypted message so the recipient can fetch and open a blob."""

    key: bytes
    sha256: bytes  # digest of the encrypted blob
    size: int  # plaintext bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES or len(self.sha256) != 32 or self.size < 0:
            raise InvalidInput("malformed attachment key or digest")


def _subkeys(key: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=ATTACHMENT_INFO).derive(key)
    return okm[:32], okm[32:]


def encrypt_stream(
    source: BinaryIO, sink: BinaryIO, *, max_plaintext_bytes: int, key: bytes | None = None
) -> AttachmentSecrets:
    """Encrypt `source` into `sink` chunk by chunk; returns the key, blob digest and size."""
    key = key if key is not None else os.urandom(KEY_BYTES)
    if len(key) != KEY_BYTES:
        raise InvalidInput("attachment key must be 32 bytes")
    enc_key, mac_key = _subkeys(key)
    nonce = os.urandom(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(enc_key), modes.CTR(nonce)).encryptor()
    mac = hmac.new(mac_key, digestmod=hashlib.sha256)
    digest = hashlib.sha256()

    def emit(data: bytes) -> None:
        mac.update(data)
        digest.update(data)
        sink.write(data)

    emit(MAGIC + nonce)
    size = 0
    while chunk := source.read(CHUNK_BYTES):
        size += len(chunk)
        if size > max_plaintext_bytes:
            raise TooLarge(f"attachment larger than {max_plaintext_bytes} bytes")
        emit(encryptor.update(chunk))
    emit(encryptor.finalize())
    tag = mac.digest()
    digest.update(tag)
    sink.write(tag)
    return AttachmentSecrets(key=key, sha256=digest.digest(), size=size)


def _verify_blob(blob: BinaryIO, secrets: AttachmentSecrets, mac_key: bytes) -> bytes:
    """First pass: check length, digest and tag over the whole blob. Returns the nonce."""
    blob.seek(0, os.SEEK_END)
    length = blob.tell()
    if length != secrets.size + OVERHEAD_BYTES:
        raise DecryptionError()
    blob.seek(0)
    header = blob.read(HEADER_BYTES)
    if header[: len(MAGIC)] != MAGIC:
        raise DecryptionError()
    mac = hmac.new(mac_key, header, hashlib.sha256)
    digest = hashlib.sha256(header)
    remaining = secrets.size
    while remaining:
        chunk = blob.read(min(CHUNK_BYTES, remaining))
        if not chunk:
            raise DecryptionError()
        remaining -= len(chunk)
        mac.update(chunk)
        digest.update(chunk)
    tag = blob.read(TAG_BYTES)
    digest.update(tag)
    ok_tag = hmac.compare_digest(mac.digest(), tag)
    ok_digest = hmac.compare_digest(digest.digest(), secrets.sha256)
    if not (ok_tag and ok_digest):
        raise DecryptionError()
    return header[len(MAGIC) :]


def decrypt_stream(blob: BinaryIO, sink: BinaryIO, secrets: AttachmentSecrets) -> None:
    """Verify the whole (seekable) blob, then decrypt it into `sink`. One opaque error."""
    enc_key, mac_key = _subkeys(secrets.key)
    nonce = _verify_blob(blob, secrets, mac_key)
    decryptor = Cipher(algorithms.AES(enc_key), modes.CTR(nonce)).decryptor()
    blob.seek(HEADER_BYTES)
    remaining = secrets.size
    while remaining:
        chunk = blob.read(min(CHUNK_BYTES, remaining))
        remaining -= len(chunk)
        sink.write(decryptor.update(chunk))
    sink.write(decryptor.finalize())


def encrypt_file(src: Path, dst: Path, *, max_plaintext_bytes: int) -> AttachmentSecrets:
    with src.open("rb") as source, dst.open("wb") as sink:
        return encrypt_stream(source, sink, max_plaintext_bytes=max_plaintext_bytes)


def decrypt_file(blob_path: Path, dst: Path, secrets: AttachmentSecrets) -> None:
    tmp = dst.with_name(dst.name + ".part")
    try:
        with blob_path.open("rb") as blob, tmp.open("wb") as sink:
            decrypt_stream(blob, sink, secrets)
        tmp.replace(dst)
    finally:
        tmp.unlink(missing_ok=True)


def iter_file(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(chunk_bytes):
            yield chunk
