"""Shared pieces of the versioned wire format."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

WIRE_VERSION = 1

# Limits on anything that arrives from outside. Decoded sizes are checked again where bytes are
# decoded; these bound the JSON before it is looked at.
MAX_NAME_CHARS = 64
MAX_KEY_B64_CHARS = 64
MAX_SIGNATURE_B64_CHARS = 128
MAX_OLM_BODY_BYTES = 1 << 20
MAX_DEVICES_PER_SEND = 1024
MAX_ONE_TIME_KEYS_PER_UPLOAD = 200
MAX_REQUEST_BYTES = 8 << 20

AccountName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", max_length=MAX_NAME_CHARS)
]
GroupName = AccountName

# Names no account or reviewer may take: the audit trail and notices use some of them for the
# server itself (the operator acts as "operator"), and a look-alike would read as the service.
RESERVED_NAMES = frozenset({"operator", "admin", "system", "accord", "root", "server"})
RESERVED_NAME_PREFIX = "accord-"


def is_reserved_name(name: str) -> bool:
    folded = name.casefold()
    return folded in RESERVED_NAMES or folded.startswith(RESERVED_NAME_PREFIX)


DeviceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{4,32}$")]
# An attachment blob's id on the server: random, a capability (server.blobs).
BlobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
MessageId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,43}$")]
KeyB64 = Annotated[str, StringConstraints(max_length=MAX_KEY_B64_CHARS, min_length=1)]
SignatureB64 = Annotated[str, StringConstraints(max_length=MAX_SIGNATURE_B64_CHARS, min_length=1)]
Version = Annotated[int, Field(ge=1, le=WIRE_VERSION)]


class WireModel(BaseModel):
    """Base of every wire model: unknown fields are an error, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, defer_build=True)


class ErrorBody(WireModel):
    code: str
    message: str
