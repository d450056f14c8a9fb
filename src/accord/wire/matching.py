"""Wire models of private threshold matching (docs/protocol/private-matching.md).

Safety vouchers travel in a send request's `extensions` under `VOUCHERS_EXTENSION`: a list of
`VoucherItem`, one per image attachment, each naming the blob it travels with. The server takes
them out of the request before the message is stored, so recipients never receive them.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from accord.errors import InvalidInput
from accord.wire.common import AccountName, BlobId, DeviceId, WireModel

VOUCHERS_EXTENSION = "vouchers"
#: As many vouchers as a message can carry attachments (`Content.attachments`).
MAX_VOUCHERS_PER_MESSAGE = 32
#: Largest voucher any table may ask for (the defaults make 10,964 bytes); a table whose
#: parameters need more is refused when it is built, so a message's vouchers always fit in
#: `services.MAX_EXTENSIONS_BYTES`.
MAX_VOUCHER_BYTES = 12_288
MAX_VOUCHER_B64_CHARS = 4 * ((MAX_VOUCHER_BYTES + 2) // 3)

HexDigest = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
EventId = Annotated[str, StringConstraints(pattern=r"^e_[A-Za-z0-9_-]{16,32}$")]


def matching_account_id(account: str) -> bytes:
    """The identity an account's vouchers are bound to and counted under.

    Every device of an account holds the same matching secret (a linked device receives it from
    the device that approved it, end to end encrypted), so shares are counted per account:
    linking a new device does not start a new count.
    """
    if not account or "/" in account:
        raise InvalidInput("malformed account name")
    return account.encode()


class VoucherItem(WireModel):
    blob_id: BlobId
    voucher: Annotated[
        str, StringConstraints(min_length=4, max_length=MAX_VOUCHER_B64_CHARS)
    ]  # base64


class MatchingParamsModel(WireModel):
    band_count: int
    band_bits: int
    threshold: int
    synthetic_rate_ppm: int
    detection_dim: int
    epoch_images: int


class TableInfo(WireModel):
    """The current blinded table, with what a client needs to check its digest is logged."""

    v: Literal[1] = 1
    table_version: int
    digest: HexDigest
    size: int
    params: MatchingParamsModel
    voucher_bytes: int
    published_at: int
    log_index: Annotated[int, Field(ge=0, le=2**62)]
    log_entry: Annotated[str, StringConstraints(max_length=32_768)]  # base64 of the entry
    checkpoint: Annotated[str, StringConstraints(max_length=65_536)]
    inclusion_proof: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=64)
    ]


class PublishTableRequest(WireModel):
    """Operator: build and publish a table from banks (default: every bank)."""

    banks: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]],
        Field(max_length=64),
    ] = []
    band_count: Annotated[int, Field(ge=1, le=128)] | None = None
    band_bits: Annotated[int, Field(ge=8, le=128)] | None = None
    threshold: Annotated[int, Field(ge=2, le=64)] | None = None
    synthetic_rate_ppm: Annotated[int, Field(ge=0, le=200_000)] | None = None
    detection_dim: Annotated[int, Field(ge=2, le=1024)] | None = None
    epoch_images: Annotated[int, Field(ge=1, le=10_000_000)] | None = None


class TableSummary(WireModel):
    table_version: int
    digest: HexDigest
    size: int
    banked_hashes: int
    elements: int
    params: MatchingParamsModel
    banks: list[dict[str, str]]
    published_at: int
    retired_at: int | None
    log_index: int | None
    delta_from: HexDigest | None = None
    """Built from this table; the delta is at GET /v1/matching/tables/{digest}/delta?from=..."""
    delta_size: int | None = None


JobId = Annotated[str, StringConstraints(pattern=r"^j_[A-Za-z0-9_-]{16,32}$")]


class JobError(WireModel):
    code: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,64}$")]
    message: Annotated[str, StringConstraints(max_length=1000)]


class PublishJob(WireModel):
    """Operator: a table being built and published in the background (`POST
    /v1/matching/tables` answers 202 with this; `GET /v1/matching/jobs/{job_id}` follows it)."""

    job_id: JobId
    state: Literal["reading", "building", "logging", "done", "failed"]
    slots_done: Annotated[int, Field(ge=0, le=2**32)]
    slots: Annotated[int, Field(ge=0, le=2**32)]
    started_at: int
    table: TableSummary | None = None
    error: JobError | None = None


class MatchingStatus(WireModel):
    """Operator view: tables, the processing queue and counts (never an account's details)."""

    tables: list[TableSummary]
    queued: int
    accounts: int  # accounts that have sent vouchers
    vouchers_processed: int
    vouchers_rejected: int
    opened_shares: int
    crossings: int
    crossings_unlogged: int  # crossed, their log entry not appended yet
    events: int


class EventImage(WireModel):
    index: int
    voucher_id: str
    bank: str
    entry_id: int
    label: str
    distance: int
    pdq: str
    derivative_png: str  # base64 of a 64 x 64 grayscale PNG


class ReviewEventSummary(WireModel):
    event_id: EventId
    kind: Literal["threshold", "additional"]
    status: str
    account: AccountName
    device_id: DeviceId
    epoch: int
    table_version: int
    images: int
    discarded_band_collisions: int
    created_at: int
    log_index: int | None


ReviewEventAction = Literal["confirm", "dismiss", "suspend", "unsuspend", "escalate", "reopen"]


class EventActionRequest(WireModel):
    action: ReviewEventAction
    note: Annotated[str, StringConstraints(max_length=2000)] = ""


class ReviewEventList(WireModel):
    events: list[ReviewEventSummary]


class ReviewEventDetail(WireModel):
    event: ReviewEventSummary
    images: list[EventImage]
