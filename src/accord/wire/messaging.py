"""Wire models of the messaging protocol (docs/protocol/messaging.md).

Two layers:
- what the server sees: accounts, device bundles, one-time keys, `SendRequest` envelopes with
  per-device Olm ciphertexts and an optional Megolm ciphertext, and `Envelope`s it delivers;
- what only devices see, inside the ciphertexts: `Content` (padded before encryption).
`extensions` on both layers is where later protocol parts attach their data (franking
commitments, safety vouchers, lawful-access records); version 1 defines no mandatory keys.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, ValidationError, model_validator

from accord.errors import DecryptionError
from accord.primitives.encoding import canonical_json
from accord.protocols.messaging import pad_payload, unpad_payload
from accord.wire.common import (
    MAX_DEVICES_PER_SEND,
    MAX_ONE_TIME_KEYS_PER_UPLOAD,
    AccountName,
    BlobId,
    DeviceId,
    GroupName,
    KeyB64,
    MessageId,
    SignatureB64,
    Version,
    WireModel,
)

MAX_TEXT_CHARS = 65536  # a message's text, in characters
MAX_ATTACHMENTS = 32  # per message
# The server's one answer for a group that does not exist or is not the caller's; the client
# tells the two apart from the group states it holds.
GROUP_NOT_FOUND_CODE = "group_not_found"
B64Body = Annotated[str, StringConstraints(max_length=1_400_000, min_length=4)]
DeliveryId = Annotated[int, Field(ge=1, le=2**62)]
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}$")]
# Fields of this type take `= Field(default_factory=dict)`: a default given where the field is
# declared is one type checkers see, so callers may leave `extensions` out.
Extensions = Annotated[dict[str, Any], Field(max_length=16)]


# --- devices and keys ---------------------------------------------------------------------


class DeviceKeys(WireModel):
    """A device's identity, self-signed with its Ed25519 key (see `device_bundle_payload`)."""

    account: AccountName
    device_id: DeviceId
    ed25519: KeyB64
    curve25519: KeyB64
    signature: SignatureB64


class DeviceApproval(WireModel):
    """An existing device of the account vouching for a new one."""

    approver_device_id: DeviceId
    signature: SignatureB64


class DeviceRecord(WireModel):
    keys: DeviceKeys
    approval: DeviceApproval | None = None
    created_at: int
    # Where the device's registration sits in the transparency log, and (in device lists) its
    # inclusion proof at the size of the list's checkpoint.
    log_index: Annotated[int, Field(ge=0, le=2**62)] | None = None
    inclusion_proof: Annotated[
        list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=64)
    ] = []


class CreateAccountRequest(WireModel):
    v: Version = 1
    device: DeviceKeys
    # Required by a closed deployment (`accord server --registration-token-file`).
    registration_token: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = (
        None
    )


class AccountCreated(WireModel):
    account: AccountName
    device_id: DeviceId


class ChallengeRequest(WireModel):
    account: AccountName
    device_id: DeviceId


class Challenge(WireModel):
    challenge: Annotated[str, StringConstraints(max_length=64)]
    expires_at: int


class TokenRequest(WireModel):
    account: AccountName
    device_id: DeviceId
    challenge: Annotated[str, StringConstraints(max_length=64)]
    signature: SignatureB64


class Token(WireModel):
    token: str
    expires_at: int


class OneTimeKey(WireModel):
    key_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{1,32}$")]
    key: KeyB64
    signature: SignatureB64


class PublishKeysRequest(WireModel):
    v: Version = 1
    one_time_keys: Annotated[list[OneTimeKey], Field(max_length=MAX_ONE_TIME_KEYS_PER_UPLOAD)] = []
    fallback_key: OneTimeKey | None = None


class KeyCount(WireModel):
    one_time_keys: int
    fallback_key: bool


class DeviceRef(WireModel):
    account: AccountName
    device_id: DeviceId


class ClaimKeysRequest(WireModel):
    devices: Annotated[list[DeviceRef], Field(min_length=1, max_length=MAX_DEVICES_PER_SEND)]


class ClaimedKey(WireModel):
    device: DeviceRecord
    one_time_key: OneTimeKey | None
    fallback: bool = False


class ClaimedKeys(WireModel):
    keys: list[ClaimedKey]


class DeviceList(WireModel):
    account: AccountName
    devices: list[DeviceRecord]
    checkpoint: Annotated[str, StringConstraints(max_length=65536)] | None = None


class LinkRequest(WireModel):
    v: Version = 1
    device: DeviceKeys


class LinkCreated(WireModel):
    request_id: str
    expires_at: int


class PendingLink(WireModel):
    request_id: str
    device: DeviceKeys
    expires_at: int


class ApproveLinkRequest(WireModel):
    approval: DeviceApproval


class RevokeDeviceRequest(WireModel):
    """Remove a device (this one or another) from the calling device's account; signed by the
    calling device over `revocation_payload` (docs/protocol/transparency.md, K8)."""

    v: Version = 1
    revoked_at: Annotated[int, Field(ge=0, le=2**53)]
    signature: SignatureB64


# --- groups -------------------------------------------------------------------------------


class GroupState(WireModel):
    """Membership of a group, signed by a device of one of its admins."""

    v: Version = 1
    group: GroupName
    version: Annotated[int, Field(ge=1, le=2**40)]
    admins: Annotated[list[AccountName], Field(min_length=1, max_length=64)]
    members: Annotated[list[AccountName], Field(min_length=1, max_length=1000)]

    @model_validator(mode="after")
    def _admins_are_members(self) -> GroupState:
        if len(set(self.members)) != len(self.members) or len(set(self.admins)) != len(self.admins):
            raise ValueError("duplicate names")
        if not set(self.admins) <= set(self.members):
            raise ValueError("every admin must be a member")
        return self


class SignedGroupState(WireModel):
    state: GroupState
    signer: DeviceRef
    signature: SignatureB64


# --- messages -----------------------------------------------------------------------------


class OlmBody(WireModel):
    type: Literal[0, 1]
    body: B64Body


class DeviceCopy(WireModel):
    """The Olm ciphertext for one recipient device."""

    account: AccountName
    device_id: DeviceId
    olm: OlmBody


class Conversation(WireModel):
    """Exactly one of: a 1:1 conversation with `account`, or a `group`."""

    account: AccountName | None = None
    group: GroupName | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Conversation:
        if (self.account is None) == (self.group is None):
            raise ValueError("a conversation names exactly one account or one group")
        return self


class SendRequest(WireModel):
    v: Version = 1
    message_id: MessageId
    to: Conversation
    recipients: Annotated[list[DeviceRef], Field(max_length=MAX_DEVICES_PER_SEND)]
    copies: Annotated[list[DeviceCopy], Field(max_length=MAX_DEVICES_PER_SEND)]
    megolm: B64Body | None = None
    megolm_session_id: SessionId | None = None
    extensions: Extensions = Field(default_factory=dict)
    # The attachment blobs the message carries: the server keeps them while it is queued.
    blobs: Annotated[list[BlobId], Field(max_length=MAX_ATTACHMENTS)] = []

    @model_validator(mode="after")
    def _megolm_has_session(self) -> SendRequest:
        if (self.megolm is None) != (self.megolm_session_id is None):
            raise ValueError("megolm and megolm_session_id go together")
        return self


class SendAccepted(WireModel):
    message_id: MessageId
    accepted_at: int
    devices: int


class StaleDevices(WireModel):
    """409 answer to a send whose device list is out of date."""

    code: Literal["stale_devices"] = "stale_devices"
    message: str
    missing: list[DeviceRef]
    extra: list[DeviceRef]


class Envelope(WireModel):
    """What one device receives for one message."""

    v: Version = 1
    id: int
    message_id: MessageId
    sender: DeviceRef
    to: Conversation
    olm: OlmBody | None = None
    megolm: B64Body | None = None
    megolm_session_id: SessionId | None = None
    received_at: int
    extensions: Extensions = Field(default_factory=dict)


class EnvelopeBatch(WireModel):
    envelopes: list[Envelope]
    more: bool


class AckRequest(WireModel):
    ids: Annotated[list[DeliveryId], Field(min_length=1, max_length=1000)]


class AckResult(WireModel):
    acked: int


class BlobCreated(WireModel):
    blob_id: str
    size: int


# --- inside the ciphertext (only devices see these) ---------------------------------------


class AttachmentRef(WireModel):
    blob_id: BlobId
    name: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    media_type: Annotated[str, StringConstraints(max_length=127)]
    size: Annotated[int, Field(ge=0, le=2**53)]
    sha256: KeyB64
    key: KeyB64


class Content(WireModel):
    """A message as its sender wrote it."""

    v: Version = 1
    type: Literal["message"] = "message"
    message_id: MessageId
    sender: DeviceRef
    to: Conversation
    sent_at: int
    text: Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
    attachments: Annotated[list[AttachmentRef], Field(max_length=MAX_ATTACHMENTS)] = []
    extensions: Extensions = Field(default_factory=dict)


class GroupKeyShare(WireModel):
    """A sender's Megolm session key, sent to each member device over Olm."""

    v: Version = 1
    type: Literal["group_key"] = "group_key"
    group: GroupName
    sender: DeviceRef
    session_id: SessionId
    session_key: Annotated[str, StringConstraints(max_length=512)]


class MatchingSecretShare(WireModel):
    """The account's private-matching secret and image count, sent by the device that approved a
    new one to the account's other devices over Olm, so every device adds to one count
    (docs/protocol/private-matching.md, C2)."""

    v: Version = 1
    type: Literal["matching_secret"] = "matching_secret"
    sender: DeviceRef
    secret: KeyB64
    images: Annotated[int, Field(ge=0, le=2**53)]


# --- inner payloads -----------------------------------------------------------------------


def encode_payload(model: WireModel) -> bytes:
    """Step 7: canonical bytes of an inner payload, padded to a size bucket before encryption."""
    return pad_payload(canonical_json(model.model_dump(mode="json")))


def decode_payload(padded: bytes) -> Content | GroupKeyShare | MatchingSecretShare:
    """Step 11: parse a decrypted payload. Anything malformed is one `DecryptionError`."""
    raw = unpad_payload(padded)
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise DecryptionError()
        if data.get("type") == "group_key":
            return GroupKeyShare.model_validate(data)
        if data.get("type") == "matching_secret":
            return MatchingSecretShare.model_validate(data)
        return Content.model_validate(data)
    except (ValueError, ValidationError, RecursionError):
        raise DecryptionError() from None
