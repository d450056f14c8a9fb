"""Attachments: encrypted (key-committing) before upload, each with its safety voucher; fetched,
checked and decrypted into the home directory on receipt."""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from accord.client.context import ClientContext
from accord.client.received import EnvelopeRejected, ReceivedAttachment
from accord.client.vouchers import SafetyVouchers
from accord.errors import DecryptionError, InvalidInput, NotFound, ProtocolError
from accord.primitives.attachment import AttachmentSecrets, decrypt_file, encrypt_file
from accord.primitives.encoding import b64decode, b64encode
from accord.wire.messaging import AttachmentRef

DEFAULT_MAX_ATTACHMENT_BYTES = 100 * 1000 * 1000
ATTACHMENTS_DIR = "attachments"
FOLDER_MODE = 0o700
FILE_MODE = 0o600


def safe_name(name: str) -> str:
    """A file name that stays inside the folder it is written to."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")[:120]
    return base or "attachment"


class Attachments:
    def __init__(
        self,
        ctx: ClientContext,
        vouchers: SafetyVouchers,
        *,
        max_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
    ) -> None:
        self._ctx = ctx
        self._vouchers = vouchers
        self.max_bytes = max_bytes

    def upload(self, paths: Sequence[Path]) -> list[AttachmentRef]:
        """Step 7: a voucher from each plaintext, then the file encrypted and uploaded."""
        refs = []
        for path in paths:
            path = Path(path)
            if not path.is_file():
                raise InvalidInput(f"no such file: {path.name}")
            if path.stat().st_size > self.max_bytes:
                raise InvalidInput(f"{path.name} is larger than {self.max_bytes} bytes")
            voucher = self._vouchers.prepare(path)  # from the plaintext, before encryption
            with tempfile.TemporaryDirectory(dir=self._ctx.home) as tmp:
                blob = Path(tmp) / "blob"
                secrets_ = encrypt_file(path, blob, max_plaintext_bytes=self.max_bytes)
                created = self._ctx.api.upload_blob(blob, secrets_.sha256)
            self._vouchers.hold(str(created["blob_id"]), voucher)
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            refs.append(
                AttachmentRef(
                    blob_id=str(created["blob_id"]),
                    name=safe_name(path.name),
                    media_type=media_type,
                    size=secrets_.size,
                    sha256=b64encode(secrets_.sha256),
                    key=b64encode(secrets_.key),
                )
            )
        return refs

    def fetch_all(
        self, message_id: str, refs: Sequence[AttachmentRef]
    ) -> tuple[ReceivedAttachment, ...]:
        """Step 12 for every attachment of a message; if one fails, the files already written
        for this message are removed and the message is rejected."""
        fetched: list[ReceivedAttachment] = []
        try:
            for ref in refs:
                fetched.append(self._fetch(message_id, ref))
        except BaseException:
            for att in fetched:
                Path(att.path).unlink(missing_ok=True)
            raise
        return tuple(fetched)

    def _fetch(self, message_id: str, ref: AttachmentRef) -> ReceivedAttachment:
        """Download, check the ciphertext's hash and decrypt into a file of its own, readable
        by this user only; a failure rejects the message."""
        try:
            att = AttachmentSecrets(
                key=b64decode(ref.key, max_bytes=32),
                sha256=b64decode(ref.sha256, max_bytes=32),
                size=ref.size,
            )
        except InvalidInput:
            raise EnvelopeRejected("malformed attachment reference") from None
        if ref.size > self.max_bytes:
            raise EnvelopeRejected("attachment larger than this device accepts")
        folder = self._private_folder(message_id)
        with tempfile.TemporaryDirectory(dir=self._ctx.home) as tmp:
            blob = Path(tmp) / "blob"
            try:
                self._ctx.api.download_blob(ref.blob_id, blob, ref.size + 64)
            except NotFound:
                raise EnvelopeRejected("attachment is missing on the server") from None
            except ProtocolError:
                raise EnvelopeRejected("attachment failed verification") from None
            plain = Path(tmp) / "plain"
            try:
                decrypt_file(blob, plain, att)
            except DecryptionError:
                raise EnvelopeRejected("attachment failed verification") from None
            plain.chmod(FILE_MODE)
            dest = _move_to_free_name(plain, folder, safe_name(ref.name))
        digest = hashlib.sha256()
        with dest.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return ReceivedAttachment(
            name=ref.name, size=ref.size, sha256=digest.hexdigest(), path=str(dest)
        )

    def _private_folder(self, message_id: str) -> Path:
        """The message's folder, it and the attachments folder 0700 whatever the umask (the
        home may have been made 0755 before accord used it)."""
        folder = self._ctx.home / ATTACHMENTS_DIR / safe_name(message_id)
        for path in (folder.parent, folder):
            path.mkdir(mode=FOLDER_MODE, exist_ok=True)
            path.chmod(FOLDER_MODE)
        return folder


def save_attachment(attachment: ReceivedAttachment, dest: Path) -> Path:
    """Copy a received attachment (kept decrypted under the home) to `dest`: a file path, or an
    existing folder, where it takes the attachment's name made safe. An existing file is never
    replaced: a taken name becomes `name (2)`, `name (3)`... The copy is readable by this user
    only, as the kept one is. Returns where it was written."""
    if not attachment.path:
        raise InvalidInput("this device keeps no copy of that attachment (it sent it)")
    folder, name = (dest, safe_name(attachment.name)) if dest.is_dir() else (dest.parent, dest.name)
    with open(attachment.path, "rb") as source:
        for candidate in _free_names(name):
            target = folder / candidate
            try:
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                continue
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(source, out)
            return target
    raise AssertionError("unreachable")


def _move_to_free_name(source: Path, folder: Path, name: str) -> Path:
    """Move `source` into `folder` as `name`, or `name (2)`, `name (3)`... if that is taken:
    a received file never replaces another (two attachments of one name, or two senders'
    messages with one id)."""
    for candidate in _free_names(name):
        dest = folder / candidate
        try:
            os.link(source, dest)  # fails if the name is taken, never overwrites
        except FileExistsError:
            continue
        source.unlink()
        return dest
    raise AssertionError("unreachable")


def _free_names(name: str) -> Iterator[str]:
    """`name`, then `name (2)`, `name (3)`... with the suffix kept last."""
    yield name
    stem, suffix = _split_suffix(name)
    for n in itertools.count(2):
        yield f"{stem} ({n}){suffix}"


def _split_suffix(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    return (stem, f".{suffix}") if dot and stem else (name, "")
