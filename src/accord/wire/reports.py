"""Wire models of abuse reports and their review (docs/protocol/franking.md, docs/console.md).

A `ReportRequest` reveals reported messages with their openings: each `ReportedMessage` carries
the franking key inside its content and the server's stamp (`accord.wire.franking`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from accord.wire.common import AccountName, DeviceId, MessageId, Version, WireModel
from accord.wire.franking import FrankingStamp
from accord.wire.messaging import Content, Conversation, DeviceRef

MAX_REPORT_CONTEXT = 50
ReportId = Annotated[str, StringConstraints(pattern=r"^r_[A-Za-z0-9_-]{16,32}$")]
ReportReason = Annotated[str, StringConstraints(max_length=2000)]


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
