"""Wire models of franking and abuse reports (docs/protocol/franking.md).

- `SendRequest.extensions["franking"]` carries the sender's commitment (`FrankingCommitment`);
- `Envelope.extensions["franking"]` carries it back with the server's tag (`FrankingStamp`);
- `Content.extensions["franking_key"]` (inside the ciphertext) carries the franking key;
- a `ReportRequest` reveals reported messages with their openings.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from accord.errors import InvalidInput
from accord.primitives.encoding import b64decode
from accord.protocols.franking import (
    COMMITMENT_BYTES,
    FRANKING_KEY_BYTES,
    TAG_BYTES,
    FrankedAttachment,
    FrankedMessage,
)
from accord.wire.common import AccountName, DeviceId, KeyB64, MessageId, Version, WireModel
from accord.wire.messaging import Content, Conversation, DeviceRef

FRANKING_EXTENSION = "franking"
FRANKING_KEY_EXTENSION = "franking_key"
MAX_REPORT_CONTEXT = 50
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,16}$")]
ReportId = Annotated[str, StringConstraints(pattern=r"^r_[A-Za-z0-9_-]{16,32}$")]
ReportReason = Annotated[str, StringConstraints(max_length=2000)]


class FrankingCommitment(WireModel):
    v: Version = 1
    commitment: KeyB64


class FrankingStamp(WireModel):
    """The commitment as the server accepted it, with its tag and the key id that made it."""

    v: Version = 1
    commitment: KeyB64
    key_id: KeyId
    tag: KeyB64


def franked_message(content: Content) -> FrankedMessage:
    """What the commitment covers of `content` (raises InvalidInput on malformed fields)."""
    return FrankedMessage(
        message_id=content.message_id,
        sender_account=content.sender.account,
        sender_device=content.sender.device_id,
        to_account=content.to.account,
        to_group=content.to.group,
        sent_at_ms=content.sent_at,
        text=content.text,
        attachments=tuple(
            FrankedAttachment(
                blob_id=a.blob_id,
                name=a.name,
                media_type=a.media_type,
                size=a.size,
                blob_sha256=b64decode(a.sha256, max_bytes=32, what="attachment digest"),
                key=b64decode(a.key, max_bytes=32, what="attachment key"),
            )
            for a in content.attachments
        ),
    )


def franking_key_of(content: Content) -> bytes:
    raw = content.extensions.get(FRANKING_KEY_EXTENSION)
    if not isinstance(raw, str):
        raise InvalidInput("message carries no franking key")
    key = b64decode(raw, max_bytes=FRANKING_KEY_BYTES, what="franking key")
    if len(key) != FRANKING_KEY_BYTES:
        raise InvalidInput("franking key must be 32 bytes")
    return key


def stamp_of(extensions: dict[str, Any]) -> FrankingStamp:
    """The server's stamp in an envelope's extensions (raises InvalidInput if absent or bad)."""
    raw = extensions.get(FRANKING_EXTENSION)
    if not isinstance(raw, dict):
        raise InvalidInput("message carries no franking tag")
    try:
        stamp = FrankingStamp.model_validate(raw)
    except ValueError:
        raise InvalidInput("malformed franking tag") from None
    commitment_bytes(stamp.commitment)
    if len(b64decode(stamp.tag, max_bytes=TAG_BYTES, what="franking tag")) != TAG_BYTES:
        raise InvalidInput("franking tag must be 32 bytes")
    return stamp


def commitment_bytes(value: str) -> bytes:
    raw = b64decode(value, max_bytes=COMMITMENT_BYTES, what="franking commitment")
    if len(raw) != COMMITMENT_BYTES:
        raise InvalidInput("franking commitment must be 32 bytes")
    return raw


# --- reports --------------------------------------------------------------------------------


class ReportedMessage(WireModel):
    """One revealed message: its content (with the franking key inside), and the envelope facts
    the server tagged."""

    content: Content
    sender: DeviceRef
    to: Conversation
    received_at: Annotated[int, Field(ge=0, le=2**53)]
    franking: FrankingStamp


class ReportRequest(WireModel):
    v: Version = 1
    reason: ReportReason = ""
    message: ReportedMessage
    context: Annotated[list[ReportedMessage], Field(max_length=MAX_REPORT_CONTEXT)] = []


class ReportFiled(WireModel):
    report_id: ReportId
    messages: int
    # True when this account had already filed a report about the same message: the answer
    # names that report and nothing new was stored (HTTP 200 instead of 201).
    existing: bool = False


ReportStatus = Literal["open", "dismissed", "warned", "suspended", "escalated"]
ReviewAction = Literal["dismiss", "warn", "suspend", "unsuspend", "escalate", "reopen"]


class ReviewedAttachment(WireModel):
    index: int
    name: str
    media_type: str
    size: int
    sha256: str  # hex digests of the plaintext, for exports ("" when the file was gone)
    md5: str
    available: bool
    viewed: bool


class ReviewedMessage(WireModel):
    message_id: MessageId
    sender: AccountName
    sender_device: DeviceId
    conversation: str
    sent_at: int
    accepted_at: int
    text: str
    reported: bool  # the message the report is about (the others are context)
    attachments: list[ReviewedAttachment]


class ReportSummary(WireModel):
    report_id: ReportId
    status: ReportStatus
    reported_account: AccountName
    reporter: AccountName
    conversation: str
    reason: str
    created_at: int
    updated_at: int
    messages: int
    attachments: int


class ReportDetail(ReportSummary):
    verified_sender: DeviceRef
    items: list[ReviewedMessage]


class ReportList(WireModel):
    reports: list[ReportSummary]


class AccountOverview(WireModel):
    account: AccountName
    created_at: int
    suspended: bool
    devices: int
    reports: int  # reports naming this account as sender
    warnings: int


class ReviewActionRequest(WireModel):
    action: ReviewAction
    note: Annotated[str, StringConstraints(max_length=2000)] = ""


class AuditEntry(WireModel):
    seq: int
    at: int
    actor: str
    action: str
    target: str
    note: str
    chain: str  # hex SHA-256 linking this entry to the one before


class AuditTrail(WireModel):
    entries: list[AuditEntry]


class ReviewerCreate(WireModel):
    name: AccountName
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    role: Literal["reviewer", "admin"] = "reviewer"


class ReviewerLogin(WireModel):
    name: AccountName
    password: Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class ReviewerToken(WireModel):
    token: str
    role: str
    expires_at: int


class Notice(WireModel):
    id: int
    kind: str
    text: str
    created_at: int


class NoticeList(WireModel):
    notices: list[Notice]


MAX_APPEAL_CHARS = 2000


class AppealRequest(WireModel):
    """`POST /v1/appeals`: a suspended account asks trust and safety to look again."""

    v: Version = 1
    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_APPEAL_CHARS)]


class Appeal(WireModel):
    id: int
    account: AccountName
    text: str
    status: Literal["open", "upheld", "lifted"]
    created_at: int
    decided_at: int | None = None


class AppealList(WireModel):
    appeals: list[Appeal]


class AppealDecision(WireModel):
    """`POST /v1/review/appeals/{id}/decision`: uphold the suspension, or lift it (admins)."""

    decision: Literal["uphold", "lift"]
    note: Annotated[str, StringConstraints(max_length=2000)] = ""
