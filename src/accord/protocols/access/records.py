"""Intercepted records: sealed by the target's client to the agency, opened by the agency.

Each record copies one message the target's device sent or received during the window, filtered
to the warrant's scope (content: plaintext, attachment keys and digests; metadata: parties,
conversation, message id and time), with the device's sequence number. It is sealed with HPKE
(RFC 9180 base mode, a fresh ephemeral key per record) to the agency's registered key:

- ``info`` = canonical ``{purpose, agency_key_id}``: the key the warrant names;
- ``aad`` = canonical ``{purpose, warrant_id, device_id, seq}``: a record cannot be moved to
  another warrant, device or position without failing to open. Sequence numbers count per
  device (each device of the target keeps its own stream, starting at 0).

HPKE base mode alone does not say who sealed a record: the agency's key is public, so anyone,
the provider included, can seal a well-formed record. Each payload therefore carries the
target device's Ed25519 signature (its identity key, the one registered in the transparency
log) over canonical ``{purpose, warrant_id, device_id, seq, content_hash}``, where
``content_hash`` is the SHA-256 of the payload without its signature. The agency verifies it
against the device key it read from the log; a record that fails is a problem
(``record_forged``), never content.

The provider stores the sealed records and can neither open nor undetectably forge, alter,
drop, replay or reorder them: the agency's `RecordOpener` checks the stream in order and
reports gaps, and refuses forged, tampered, replayed, reordered, out-of-window and out-of-scope
records.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.errors import AuthorizationError, InvalidInput, ProtocolError, VerificationError
from accord.primitives.encoding import canonical_json
from accord.primitives.hpke import (
    HPKE_ENC_BYTES,
    HpkePrivateKey,
    HpkeSealed,
    hpke_open,
    hpke_seal,
)
from accord.primitives.signing import verify_ed25519
from accord.protocols.access import _codec as c
from accord.protocols.access.agency import AgencyKey, AgencyKeyId
from accord.protocols.access.approvers import HASH_BYTES
from accord.protocols.access.device import VerifiedWarrant, check_warrant_window
from accord.protocols.access.warrant import Scope, Warrant, WarrantId

RECORD_INFO_PURPOSE = "accord-intercept-record-info-v1"
RECORD_AAD_PURPOSE = "accord-intercept-record-v1"
RECORD_PAYLOAD_PURPOSE = "accord-intercept-payload-v1"
RECORD_SIGNATURE_PURPOSE = "accord-intercept-record-signature-v1"
MAX_SIGNATURE_CHARS = 128

RecordSigner = Callable[[bytes], str]
"""Signs with the target device's logged Ed25519 identity key (unpadded base64 signature)."""
MAX_RECORD_CIPHERTEXT_BYTES = 256 * 1024
MAX_PLAINTEXT_BYTES = 128 * 1024
MAX_ATTACHMENTS = 32
MAX_RECIPIENTS = 1024
MAX_SEQ = 2**53 - 1


class Direction(enum.StrEnum):
    SENT = "sent"
    RECEIVED = "received"


@dataclass(frozen=True)
class InterceptedAttachment:
    """The attachment's content key and ciphertext digest (enough to fetch and decrypt it)."""

    key: bytes
    digest: bytes

    def to_obj(self) -> dict[str, Any]:
        return {"key": c.b64(self.key), "digest": c.b64(self.digest)}

    @classmethod
    def from_obj(cls, obj: object) -> InterceptedAttachment:
        o = c.require_keys(obj, {"key", "digest"}, what="attachment")
        return cls(c.get_b64(o, "key", max_bytes=64), c.get_b64(o, "digest", max_bytes=64))


@dataclass(frozen=True)
class InterceptedMessage:
    """One message as the target's client saw it (input to `RecordSealer.seal`)."""

    direction: Direction
    occurred_at: int
    sender: str
    recipients: tuple[str, ...]
    conversation_id: str
    message_id: str
    plaintext: bytes
    attachments: tuple[InterceptedAttachment, ...] = ()


@dataclass(frozen=True)
class OpenedRecord:
    """A record the agency opened; fields outside the warrant's scope are None."""

    device_id: str
    seq: int
    direction: Direction
    occurred_at: int
    metadata: dict[str, Any] | None
    plaintext: bytes | None
    attachments: tuple[InterceptedAttachment, ...] | None


@dataclass(frozen=True)
class SealedRecord:
    """What the client uploads and the provider stores: routing fields in clear, rest sealed."""

    warrant_id: WarrantId
    device_id: str
    seq: int
    enc: bytes
    ciphertext: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.warrant_id, bytes) or len(self.warrant_id) != HASH_BYTES:
            raise InvalidInput("warrant id must be 32 bytes")
        c.check_text(self.device_id, "device id", max_len=128)
        c.check_int(self.seq, "sequence number", maximum=MAX_SEQ)
        if not isinstance(self.enc, bytes) or len(self.enc) != HPKE_ENC_BYTES:
            raise InvalidInput("enc must be 32 bytes")
        if (
            not isinstance(self.ciphertext, bytes)
            or len(self.ciphertext) > MAX_RECORD_CIPHERTEXT_BYTES
        ):
            raise InvalidInput("record ciphertext too large")

    def to_obj(self) -> dict[str, Any]:
        return {
            "warrant_id": self.warrant_id.hex(),
            "device_id": self.device_id,
            "seq": self.seq,
            "enc": c.b64(self.enc),
            "ciphertext": c.b64(self.ciphertext),
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_obj())

    @classmethod
    def from_bytes(cls, data: bytes) -> SealedRecord:
        o = c.require_keys(
            c.decode_canonical(data, what="record"),
            {"warrant_id", "device_id", "seq", "enc", "ciphertext"},
            what="record",
        )
        return cls(
            warrant_id=WarrantId(c.get_hex(o, "warrant_id", size=HASH_BYTES)),
            device_id=c.get_str(o, "device_id", max_len=128),
            seq=c.get_int(o, "seq", maximum=MAX_SEQ),
            enc=c.get_b64(o, "enc", max_bytes=HPKE_ENC_BYTES, size=HPKE_ENC_BYTES),
            ciphertext=c.get_b64(o, "ciphertext", max_bytes=MAX_RECORD_CIPHERTEXT_BYTES),
        )


def record_info(agency_key_id: AgencyKeyId) -> bytes:
    return canonical_json({"purpose": RECORD_INFO_PURPOSE, "agency_key_id": agency_key_id.hex()})


def record_aad(warrant_id: WarrantId, device_id: str, seq: int) -> bytes:
    return canonical_json(
        {
            "purpose": RECORD_AAD_PURPOSE,
            "warrant_id": warrant_id.hex(),
            "device_id": device_id,
            "seq": seq,
        }
    )


def record_signature_message(
    warrant_id: WarrantId, device_id: str, seq: int, content_hash: bytes
) -> bytes:
    """What the target's device signs for each record."""
    return canonical_json(
        {
            "purpose": RECORD_SIGNATURE_PURPOSE,
            "warrant_id": warrant_id.hex(),
            "device_id": device_id,
            "seq": seq,
            "content_hash": content_hash.hex(),
        }
    )


def _payload(
    warrant: Warrant, device_id: str, seq: int, msg: InterceptedMessage, sign: RecordSigner
) -> bytes:
    content = None
    if Scope.CONTENT in warrant.scope:
        content = {
            "plaintext": c.b64(msg.plaintext),
            "attachments": [a.to_obj() for a in msg.attachments],
        }
    metadata = None
    if Scope.METADATA in warrant.scope:
        metadata = {
            "sender": msg.sender,
            "recipients": list(msg.recipients),
            "conversation_id": msg.conversation_id,
            "message_id": msg.message_id,
        }
    body = {
        "purpose": RECORD_PAYLOAD_PURPOSE,
        "warrant_id": warrant.warrant_id.hex(),
        "device_id": device_id,
        "seq": seq,
        "direction": msg.direction.value,
        "occurred_at": msg.occurred_at,
        "content": content,
        "metadata": metadata,
    }
    content_hash = hashlib.sha256(canonical_json(body)).digest()
    signature = sign(record_signature_message(warrant.warrant_id, device_id, seq, content_hash))
    return canonical_json({**body, "signature": signature})


class RecordSealer:
    """The target device's side: seal each in-window message to the agency, in sequence.

    Persist `next_seq` with the device state and pass it back when recreating the sealer, so a
    restart never reuses a sequence number.
    """

    def __init__(
        self,
        verified: VerifiedWarrant,
        *,
        device_id: str,
        sign: RecordSigner,
        next_seq: int = 0,
    ) -> None:
        if not isinstance(verified, VerifiedWarrant):
            raise InvalidInput("only a verified warrant can start interception")
        self._verified = verified
        self._sign = sign
        self.device_id = c.check_text(device_id, "device id", max_len=128)
        self.next_seq = c.check_int(next_seq, "sequence number", maximum=MAX_SEQ)

    def __repr__(self) -> str:
        return f"RecordSealer(device_id={self.device_id!r}, next_seq={self.next_seq})"

    def seal(self, message: InterceptedMessage, *, now: int) -> SealedRecord:
        """Seal one message. Outside the window (now or the message's time) it refuses."""
        warrant = self._verified.signed_warrant.warrant
        check_warrant_window(warrant.start_time, warrant.end_time, now=now)
        check_warrant_window(warrant.start_time, warrant.end_time, now=message.occurred_at)
        if len(message.plaintext) > MAX_PLAINTEXT_BYTES:
            raise InvalidInput("message too large to intercept")
        seq = self.next_seq
        key: AgencyKey = self._verified.agency_key
        sealed = hpke_seal(
            key.public_key,
            _payload(warrant, self.device_id, seq, message, self._sign),
            info=record_info(key.key_id),
            aad=record_aad(warrant.warrant_id, self.device_id, seq),
            aead=key.aead,
        )
        self.next_seq = seq + 1
        return SealedRecord(warrant.warrant_id, self.device_id, seq, sealed.enc, sealed.ciphertext)


def check_record_upload(warrant: Warrant, record: SealedRecord, *, now: int) -> None:
    """The provider's check before storing an uploaded record: right warrant, inside the window.

    It refuses records for a warrant whose window has not started or is over. It cannot check
    the content (it holds no key); the agency does.
    """
    if not hmac.compare_digest(record.warrant_id, warrant.warrant_id):
        raise AuthorizationError("record is for another warrant", code="record_wrong_warrant")
    check_warrant_window(warrant.start_time, warrant.end_time, now=now)


@dataclass
class _Stream:
    next_seq: int = 0
    opened: set[int] = field(default_factory=set)
    gaps: list[tuple[int, int]] = field(default_factory=list)


class RecordOpener:
    """The agency's side: open one warrant's records in the order the provider returns them.

    ``device_keys`` maps each of the target's device ids to its Ed25519 identity key as the
    transparency log holds it; a record not signed by its device's logged key raises
    `ProtocolError` (``record_forged``, or ``record_unknown_device`` for a device the log does
    not list) and is not returned. Per device, sequence numbers must increase. A jump leaves a
    visible gap (`gaps`); a number already opened is a replay and one below the next expected
    is a reordering: both raise `ProtocolError`. A record that fails to open (tampered, moved
    to another warrant, device or position, or sealed to another key) raises `DecryptionError`.
    A record dated outside the window or carrying data outside the scope raises `ProtocolError`
    and is not returned. State changes only when a record is accepted.
    """

    def __init__(
        self,
        warrant: Warrant,
        agency_key: AgencyKey,
        private_key: HpkePrivateKey,
        *,
        device_keys: Mapping[str, str],
    ) -> None:
        if not hmac.compare_digest(agency_key.key_id, warrant.delivery_key_id):
            raise InvalidInput("this warrant is delivered to another agency key")
        if private_key.public_key() != agency_key.public_key:
            raise InvalidInput("private key does not belong to this agency key")
        self._warrant = warrant
        self._agency_key = agency_key
        self._private_key = private_key
        self._device_keys = dict(device_keys)
        self._streams: dict[str, _Stream] = {}

    def __repr__(self) -> str:
        return "RecordOpener(...)"

    @property
    def gaps(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """Per device: half-open ranges [first, end) of sequence numbers never received."""
        return {d: tuple(s.gaps) for d, s in self._streams.items() if s.gaps}

    def counts(self) -> dict[str, int]:
        return {d: len(s.opened) for d, s in self._streams.items()}

    def open(self, record: SealedRecord) -> OpenedRecord:
        w = self._warrant
        if not hmac.compare_digest(record.warrant_id, w.warrant_id):
            raise ProtocolError("record belongs to another warrant", code="record_wrong_warrant")
        stream = self._streams.get(record.device_id, _Stream())
        if record.seq in stream.opened:
            raise ProtocolError(f"record {record.seq} replayed", code="record_replayed")
        if record.seq < stream.next_seq:
            raise ProtocolError(
                f"record {record.seq} arrived out of order", code="record_reordered"
            )
        plaintext = hpke_open(
            self._private_key,
            HpkeSealed(record.enc, record.ciphertext),
            info=record_info(self._agency_key.key_id),
            aad=record_aad(record.warrant_id, record.device_id, record.seq),
            aead=self._agency_key.aead,
        )
        opened = self._parse(record, plaintext)
        if record.seq > stream.next_seq:
            stream.gaps.append((stream.next_seq, record.seq))
        stream.next_seq = record.seq + 1
        stream.opened.add(record.seq)
        self._streams[record.device_id] = stream
        return opened

    def open_all(self, records: Iterable[SealedRecord]) -> list[OpenedRecord]:
        return [self.open(r) for r in records]

    def _parse(self, record: SealedRecord, plaintext: bytes) -> OpenedRecord:
        w = self._warrant
        try:
            o = c.require_keys(
                c.decode_canonical(plaintext, what="record payload"),
                {
                    "purpose",
                    "warrant_id",
                    "device_id",
                    "seq",
                    "direction",
                    "occurred_at",
                    "content",
                    "metadata",
                    "signature",
                },
                what="record payload",
            )
        except InvalidInput:
            raise ProtocolError("record payload is malformed", code="record_malformed") from None
        self._check_signature(record, o)
        same = (
            o["purpose"] == RECORD_PAYLOAD_PURPOSE
            and o["warrant_id"] == record.warrant_id.hex()
            and o["device_id"] == record.device_id
            and o["seq"] == record.seq
        )
        if not same:
            raise ProtocolError(
                "record payload does not match its envelope", code="record_malformed"
            )
        occurred_at = c.check_int(o["occurred_at"], "occurred_at")
        if not w.start_time <= occurred_at < w.end_time:
            raise ProtocolError(
                "record is dated outside the warrant window", code="record_outside_window"
            )
        if o["direction"] not in ("sent", "received"):
            raise ProtocolError("record payload is malformed", code="record_malformed")
        content, metadata = o["content"], o["metadata"]
        if (content is not None) != (Scope.CONTENT in w.scope) or (metadata is not None) != (
            Scope.METADATA in w.scope
        ):
            raise ProtocolError(
                "record carries data outside the warrant's scope", code="record_outside_scope"
            )
        plaintext_out: bytes | None = None
        attachments: tuple[InterceptedAttachment, ...] | None = None
        try:
            if content is not None:
                co = c.require_keys(content, {"plaintext", "attachments"}, what="content")
                plaintext_out = c.get_b64(co, "plaintext", max_bytes=MAX_PLAINTEXT_BYTES)
                attachments = tuple(
                    InterceptedAttachment.from_obj(a)
                    for a in c.get_list(co, "attachments", max_items=MAX_ATTACHMENTS)
                )
            if metadata is not None:
                c.require_keys(
                    metadata,
                    {"sender", "recipients", "conversation_id", "message_id"},
                    what="metadata",
                )
        except InvalidInput:
            raise ProtocolError("record payload is malformed", code="record_malformed") from None
        return OpenedRecord(
            device_id=record.device_id,
            seq=record.seq,
            direction=Direction(o["direction"]),
            occurred_at=occurred_at,
            metadata=metadata,
            plaintext=plaintext_out,
            attachments=attachments,
        )

    def _check_signature(self, record: SealedRecord, payload: dict[str, Any]) -> None:
        """The record was signed by its device's logged key, over its own position and
        content (a record sealed by anyone else, the provider included, is refused)."""
        key = self._device_keys.get(record.device_id)
        if key is None:
            raise ProtocolError(
                f"record {record.seq} comes from a device the log does not list for the target",
                code="record_unknown_device",
            )
        body = {k: v for k, v in payload.items() if k != "signature"}
        signature = payload["signature"]
        message = record_signature_message(
            record.warrant_id,
            record.device_id,
            record.seq,
            hashlib.sha256(canonical_json(body)).digest(),
        )
        try:
            if not isinstance(signature, str) or len(signature) > MAX_SIGNATURE_CHARS:
                raise VerificationError("malformed signature")
            verify_ed25519(key, message, signature)
        except (VerificationError, InvalidInput):
            raise ProtocolError(
                f"record {record.seq} is not signed by the target device's logged key",
                code="record_forged",
            ) from None
