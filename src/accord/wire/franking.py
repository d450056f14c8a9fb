"""Wire form of message franking (docs/protocol/franking.md).

- `SendRequest.extensions["franking"]` carries the sender's commitment (`FrankingCommitment`);
- `Envelope.extensions["franking"]` carries it back with the server's tag (`FrankingStamp`);
- `Content.extensions["franking_key"]` (inside the ciphertext) carries the franking key.

Reports, which reveal franked messages, are in `accord.wire.reports`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import StringConstraints

from accord.errors import InvalidInput
from accord.primitives.encoding import b64decode
from accord.protocols.franking import (
    COMMITMENT_BYTES,
    FRANKING_KEY_BYTES,
    TAG_BYTES,
    FrankedAttachment,
    FrankedMessage,
)
from accord.wire.common import KeyB64, Version, WireModel
from accord.wire.messaging import Content

FRANKING_EXTENSION = "franking"
FRANKING_KEY_EXTENSION = "franking_key"
KeyId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,16}$")]


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
