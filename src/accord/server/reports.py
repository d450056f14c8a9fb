"""Filing verified abuse reports (docs/protocol/franking.md, steps 6-9).

A report reveals messages with their franking openings. The server checks, for each message, that
the commitment opens to the revealed content under the revealed key, that its own tag binds that
commitment to the sender, the conversation, the time and the message id, and that the reporter
received it. Attachments are fetched from the blob store by the id the commitment binds, checked
against the committed digest and opened with the committed key (key-committing encryption: they
open to one plaintext only), then sealed with HPKE to the review service's key. Only then is the
report stored, naming the verified sender.

A reporter files a message once: filing the same reported message again answers with the report
already on file (`ReportFiled.existing`) and stores nothing; the database holds one report per
reporter and message, so this holds across server processes too. New reports are rate-limited per
account (`limits.DEFAULT_REPORT_RATE_PER_S`, `DEFAULT_REPORT_BURST`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from sqlalchemy import Connection, and_, insert, select
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import DecryptionError, InvalidInput, NotFound, VerificationError
from accord.primitives.attachment import AttachmentSecrets, decrypt_file
from accord.primitives.encoding import b64decode
from accord.primitives.hpke import (
    HpkePrivateKey,
    HpkePublicKey,
    HpkeSealed,
    generate_hpke_key_pair,
    hpke_open,
    hpke_seal,
)
from accord.protocols.franking import TagContext, conversation_label, verify_commitment
from accord.server.blobs import FileBlobStore
from accord.server.franking import FrankingKeyRing
from accord.server.limits import SendLimiter, report_limiter
from accord.server.messaging import AuthedDevice
from accord.server.secrets import SecretsKey, read_sealed_file
from accord.storage.db import Database, inserted_id
from accord.storage.schema import accounts, group_members, groups, report_attachments, reports
from accord.wire.franking import commitment_bytes, franked_message, franking_key_of
from accord.wire.reports import ReportedMessage, ReportFiled, ReportRequest

REVIEW_KEY_FILE = "review-key"
REVIEW_KEY_PLAIN_BYTES = 32  # the X25519 private key, as versions before sealing wrote it
REVIEW_SEAL_INFO = b"accord review attachment v1"
SEALED_ENC_BYTES = 32


def report_invalid(message: str) -> VerificationError:
    return VerificationError(message, code="report_invalid")


class ReviewVault:
    """Attachments of reports, sealed with HPKE to the review service's key.

    The key pair lives in DATA_DIR/review-key (mode 0600), sealed under the server's secrets
    key; a deployment that separates the review service from the relay moves the private half
    there. Sealed files are named by a random id; the associated data binds each to its report
    and position.
    """

    def __init__(self, data_dir: Path, *, secrets: SecretsKey) -> None:
        self.root = data_dir / "review"
        self.root.mkdir(parents=True, exist_ok=True)
        raw = read_sealed_file(
            data_dir / REVIEW_KEY_FILE,
            secrets,
            make=lambda: generate_hpke_key_pair().to_bytes(),
            plain_check=lambda raw: len(raw) == REVIEW_KEY_PLAIN_BYTES,
        )
        self._key = HpkePrivateKey.from_bytes(raw)

    @property
    def public_key(self) -> HpkePublicKey:
        return self._key.public_key()

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        sealed = hpke_seal(self.public_key, plaintext, info=REVIEW_SEAL_INFO, aad=aad)
        name = secrets.token_urlsafe(24)
        tmp = self.root / f".{name}.tmp"
        with tmp.open("wb") as f:
            f.write(sealed.enc + sealed.ciphertext)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(self.root / name)
        return name

    def open(self, name: str, aad: bytes) -> bytes:
        path = self.root / name
        if not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
            raise NotFound("attachment is not available")
        raw = path.read_bytes()
        sealed = HpkeSealed(enc=raw[:SEALED_ENC_BYTES], ciphertext=raw[SEALED_ENC_BYTES:])
        return hpke_open(self._key, sealed, info=REVIEW_SEAL_INFO, aad=aad)


def attachment_aad(report_id: str, index: int) -> bytes:
    return f"{report_id}/{index}".encode()


@dataclass(frozen=True)
class _Verified:
    message: ReportedMessage
    reported: bool


class ReportService:
    def __init__(
        self,
        db: Database,
        franking: FrankingKeyRing,
        blobs: FileBlobStore,
        vault: ReviewVault,
        *,
        max_attachment_bytes: int,
        clock: Clock = SYSTEM_CLOCK,
        limiter: SendLimiter | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.limiter = limiter or report_limiter(clock=clock)
        # One filing at a time per reporter in this process, so a duplicate sent twice at once
        # is still found (the entries are dropped when the last filing of a reporter ends).
        self._filing: defaultdict[str, anyio.Lock] = defaultdict(anyio.Lock)
        self._waiting: defaultdict[str, int] = defaultdict(int)
        self.franking = franking
        self.blobs = blobs
        self.vault = vault
        self.max_attachment_bytes = max_attachment_bytes

    def _verify_message(self, m: ReportedMessage) -> None:
        """Steps 7 and 8 for one revealed message."""
        content = m.content
        if content.sender != m.sender or content.to != m.to:
            raise report_invalid("the revealed content does not match its envelope")
        try:
            key = franking_key_of(content)
            commitment = commitment_bytes(m.franking.commitment)
            tag = b64decode(m.franking.tag, max_bytes=32, what="franking tag")
            verify_commitment(key, franked_message(content), commitment)
            context = TagContext(
                sender_account=m.sender.account,
                sender_device=m.sender.device_id,
                conversation=conversation_label(m.to.account, m.to.group),
                accepted_at_ms=m.received_at,
                message_id=content.message_id,
            )
            self.franking.verify(commitment, context, m.franking.key_id, tag)
        except VerificationError as exc:
            if exc.code == "franking_key_expired":
                raise
            raise report_invalid(f"message {content.message_id}: {exc.message}") from None
        except InvalidInput as exc:
            raise report_invalid(f"message {content.message_id}: {exc.message}") from None

    def _check_reporter(self, conn: Connection, dev: AuthedDevice, m: ReportedMessage) -> None:
        """Step 9: only a recipient reports. For a group, a current member."""
        if m.to.account is not None:
            if m.to.account != dev.account:
                raise report_invalid("only the recipient of a message can report it")
            return
        member = conn.execute(
            select(group_members.c.account_id)
            .join(groups, groups.c.id == group_members.c.group_pk)
            .join(accounts, accounts.c.id == group_members.c.account_id)
            .where(and_(groups.c.name == m.to.group, accounts.c.name == dev.account))
        ).first()
        if member is None:
            raise report_invalid("only a member of the group can report its messages")

    def _open_attachments(self, report_id: str, items: list[_Verified]) -> list[dict[str, object]]:
        """Fetch, check and open every committed attachment; seal it for review."""
        rows: list[dict[str, object]] = []
        for item in items:
            for ref in item.message.content.attachments:
                index = len(rows)
                row: dict[str, object] = {
                    "idx": index,
                    "message_id": item.message.content.message_id,
                    "name": ref.name,
                    "media_type": ref.media_type,
                    "size": ref.size,
                    "sha256_hex": "",
                    "md5_hex": "",
                    "sealed_file": None,
                }
                if ref.size > self.max_attachment_bytes:
                    raise report_invalid("attachment larger than this server accepts")
                secrets_ = AttachmentSecrets(
                    key=b64decode(ref.key, max_bytes=32),
                    sha256=b64decode(ref.sha256, max_bytes=32),
                    size=ref.size,
                )
                try:
                    blob = self.blobs.path(ref.blob_id)
                except NotFound:
                    rows.append(row)  # gone from the server: kept as metadata only
                    continue
                with tempfile.TemporaryDirectory(dir=self.vault.root) as tmp:
                    plain = Path(tmp) / "plain"
                    try:
                        decrypt_file(blob, plain, secrets_)
                    except DecryptionError:
                        raise report_invalid(
                            "an attachment does not open under its committed key"
                        ) from None
                    data = plain.read_bytes()
                row["sha256_hex"] = hashlib.sha256(data).hexdigest()
                row["md5_hex"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
                row["sealed_file"] = self.vault.seal(data, attachment_aad(report_id, index))
                rows.append(row)
        return rows

    async def _existing_report(self, reporter: str, req: ReportRequest) -> ReportFiled | None:
        """The report `reporter` already filed about this message, if any. Looked up by the
        reporter and the message id only: it finds nothing but the reporter's own reports."""
        message_id = req.message.content.message_id

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(reports.c.report_id, reports.c.messages_json).where(
                    reports.c.reporter == reporter,
                    reports.c.reported_account == req.message.sender.account,
                    reports.c.reported_message_id == message_id,
                )
            ).first()

        row = await self.db.read_async(_rd)
        if row is None:
            return None
        stored = json.loads(row.messages_json)
        return ReportFiled(report_id=row.report_id, messages=len(stored), existing=True)

    async def file_report(self, dev: AuthedDevice, req: ReportRequest) -> ReportFiled:
        """File a report, or answer with the one this account already filed about the same
        message (`existing=True`, nothing stored)."""
        self._waiting[dev.account] += 1
        try:
            async with self._filing[dev.account]:
                existing = await self._existing_report(dev.account, req)
                if existing is not None:
                    return existing
                return await self._file_new_report(dev, req)
        finally:
            self._waiting[dev.account] -= 1
            if not self._waiting[dev.account]:
                del self._waiting[dev.account]
                del self._filing[dev.account]

    async def _file_new_report(self, dev: AuthedDevice, req: ReportRequest) -> ReportFiled:
        reported = req.message
        ids = [reported.content.message_id] + [c.content.message_id for c in req.context]
        if len(set(ids)) != len(ids):
            raise report_invalid("a message appears twice in the report")
        for c in req.context:
            same = c.to == reported.to and (
                reported.to.group is not None or c.sender.account == reported.sender.account
            )
            if not same:
                raise report_invalid("context messages come from another conversation")
            if c.received_at > reported.received_at:
                raise report_invalid("context messages precede the reported message")
        items = [_Verified(c, False) for c in sorted(req.context, key=lambda c: c.received_at)]
        items.append(_Verified(reported, True))
        for item in items:
            await self.franking.load(item.message.franking.key_id)
            self._verify_message(item.message)

        def _check(conn: Connection) -> None:
            for item in items:
                self._check_reporter(conn, dev, item.message)

        await self.db.read_async(_check)
        await self.limiter.check(dev.account)
        report_id = "r_" + secrets.token_urlsafe(18)
        attachment_rows = await to_thread.run_sync(self._open_attachments, report_id, items)
        stored = [
            {
                "message_id": i.message.content.message_id,
                "sender": i.message.sender.account,
                "sender_device": i.message.sender.device_id,
                "conversation": conversation_label(i.message.to.account, i.message.to.group),
                "sent_at": i.message.content.sent_at,
                "accepted_at": i.message.received_at,
                "text": i.message.content.text,
                "reported": i.reported,
            }
            for i in items
        ]
        created = now_ms(self.clock)

        def _tx(conn: Connection) -> None:
            report_pk = inserted_id(
                conn.execute(
                    insert(reports).values(
                        report_id=report_id,
                        status="open",
                        reporter=dev.account,
                        reported_account=reported.sender.account,
                        reported_device=reported.sender.device_id,
                        conversation=conversation_label(reported.to.account, reported.to.group),
                        reason=req.reason,
                        messages_json=json.dumps(stored),
                        created_at=created,
                        updated_at=created,
                        reported_message_id=reported.content.message_id,
                    )
                )
            )
            if attachment_rows:
                conn.execute(
                    insert(report_attachments),
                    [{"report_pk": report_pk, **row} for row in attachment_rows],
                )

        try:
            await self.db.transact_async(_tx)
        except IntegrityError:  # the same filing, taken by another process meanwhile
            existing = await self._existing_report(dev.account, req)
            if existing is None:
                raise
            return existing
        return ReportFiled(report_id=report_id, messages=len(items))
