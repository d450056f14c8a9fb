"""Message franking: verifiable abuse reports under end-to-end encryption.

Steps (docs/protocol/franking.md):
    1. The sender draws a fresh 256-bit franking key `kf` per message.
    2. commitment = HMAC-SHA256(kf, "accord.franking.commitment.v1" || canonical(message)), where
       `message` is the plaintext, each attachment's ciphertext digest and key, and the
       conversation context (message id, sender account and device, conversation, sent time).
       `kf` travels inside the encrypted payload, the commitment outside it.
    3. The server tags: tag = HMAC-SHA256(ks[key_id], "accord.franking.tag.v1" ||
       canonical(commitment, sender, recipient or group, accepted time, message id)), under its
       own rotating key, and keeps no per-message state.
    4. The recipient opens the commitment with `kf` and drops a message that does not open, so
       a sender cannot send anything that could not later be reported.
    5. A report reveals the message, `kf`, the commitment and the tag; the server recomputes both
       MACs (constant-time comparisons) and so knows who sent what to whom, and when.

HMAC-SHA256 is a committing MAC under a random key (finding two openings of one commitment is a
SHA-256 collision); it is the construction of Facebook's and of Grubbs et al.'s franking.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import NewType

from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import b64encode, canonical_json

FRANKING_KEY_BYTES = 32
COMMITMENT_BYTES = 32
TAG_BYTES = 32
SERVER_KEY_BYTES = 32
COMMITMENT_DOMAIN = b"accord.franking.commitment.v1\x00"
TAG_DOMAIN = b"accord.franking.tag.v1\x00"

FrankingKey = NewType("FrankingKey", bytes)
Commitment = NewType("Commitment", bytes)
FrankingTag = NewType("FrankingTag", bytes)


def conversation_label(to_account: str | None, to_group: str | None) -> str:
    """How a tag names where a message went: "account:NAME" or "group:NAME"."""
    if (to_account is None) == (to_group is None):
        raise InvalidInput("a conversation names exactly one account or one group")
    return f"account:{to_account}" if to_account is not None else f"group:{to_group}"


@dataclass(frozen=True, slots=True)
class FrankedAttachment:
    """What the commitment binds of an attachment: the blob it names, its ciphertext digest
    and its key (key-committing encryption makes that blob open to one plaintext only)."""

    blob_id: str
    name: str
    media_type: str
    size: int
    blob_sha256: bytes
    key: bytes


@dataclass(frozen=True, slots=True)
class FrankedMessage:
    """A message as the commitment sees it. Exactly one of `to_account`, `to_group` is set."""

    message_id: str
    sender_account: str
    sender_device: str
    to_account: str | None
    to_group: str | None
    sent_at_ms: int
    text: str
    attachments: tuple[FrankedAttachment, ...] = ()

    def __post_init__(self) -> None:
        if (self.to_account is None) == (self.to_group is None):
            raise InvalidInput("a franked message names exactly one account or one group")

    @property
    def conversation(self) -> str:
        return conversation_label(self.to_account, self.to_group)


@dataclass(frozen=True, slots=True)
class TagContext:
    """What the server binds to a commitment when it accepts a message (step 3)."""

    sender_account: str
    sender_device: str
    conversation: str  # "account:NAME" or "group:NAME"
    accepted_at_ms: int
    message_id: str


def new_franking_key() -> FrankingKey:
    return FrankingKey(os.urandom(FRANKING_KEY_BYTES))


def _message_bytes(message: FrankedMessage) -> bytes:
    return COMMITMENT_DOMAIN + canonical_json(
        {
            "message_id": message.message_id,
            "sender": [message.sender_account, message.sender_device],
            "conversation": message.conversation,
            "sent_at": message.sent_at_ms,
            "text": message.text,
            "attachments": [
                {
                    "blob_id": a.blob_id,
                    "name": a.name,
                    "media_type": a.media_type,
                    "size": a.size,
                    "sha256": b64encode(a.blob_sha256),
                    "key": b64encode(a.key),
                }
                for a in message.attachments
            ],
        }
    )


def commit_message(key: FrankingKey, message: FrankedMessage) -> Commitment:
    """Step 2."""
    if len(key) != FRANKING_KEY_BYTES:
        raise InvalidInput("franking key must be 32 bytes")
    return Commitment(hmac.new(key, _message_bytes(message), hashlib.sha256).digest())


def verify_commitment(key: bytes, message: FrankedMessage, commitment: bytes) -> None:
    """Steps 4 and 5: raise unless `commitment` opens to `message` under `key`."""
    if len(key) != FRANKING_KEY_BYTES or len(commitment) != COMMITMENT_BYTES:
        raise VerificationError("franking commitment does not open")
    expected = commit_message(FrankingKey(key), message)
    if not hmac.compare_digest(expected, commitment):
        raise VerificationError("franking commitment does not open")


def _tag_bytes(commitment: bytes, context: TagContext) -> bytes:
    return TAG_DOMAIN + canonical_json(
        {
            "commitment": b64encode(commitment),
            "sender": [context.sender_account, context.sender_device],
            "conversation": context.conversation,
            "accepted_at": context.accepted_at_ms,
            "message_id": context.message_id,
        }
    )


def tag_commitment(server_key: bytes, commitment: bytes, context: TagContext) -> FrankingTag:
    """Step 3, on the server."""
    if len(server_key) != SERVER_KEY_BYTES:
        raise InvalidInput("franking server key must be 32 bytes")
    if len(commitment) != COMMITMENT_BYTES:
        raise InvalidInput("franking commitment must be 32 bytes")
    return FrankingTag(
        hmac.new(server_key, _tag_bytes(commitment, context), hashlib.sha256).digest()
    )


def verify_tag(server_key: bytes, commitment: bytes, context: TagContext, tag: bytes) -> None:
    """Step 5, on the server: raise unless the server itself tagged this commitment in this
    context."""
    if len(commitment) != COMMITMENT_BYTES or len(tag) != TAG_BYTES:
        raise VerificationError("franking tag does not verify")
    expected = tag_commitment(server_key, commitment, context)
    if not hmac.compare_digest(expected, tag):
        raise VerificationError("franking tag does not verify")
