"""The C2SP tlog-witness ``add-checkpoint`` request body.

    old <size>\\n
    <base64 consistency proof hash>\\n      (zero to 63 lines)
    \\n
    <checkpoint note>

Parsing only: nothing here is authenticated (the checkpoint is verified by `service`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from accord.errors import InvalidInput, TooLarge
from accord.protocols.translog.merkle import HASH_SIZE_BYTES, MAX_TREE_SIZE

MAX_ADD_CHECKPOINT_BYTES = 128 * 1024
"""Largest request body accepted: a checkpoint with dozens of signatures and a full proof fit
in a few kB; the margin leaves room for post-quantum cosignatures."""

MAX_PROOF_LINES = 63
"""tlog-witness: clients MUST NOT send more than 63 consistency proof lines."""

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]{0,19})")
_HASH_LINE = re.compile(r"[A-Za-z0-9+/]{43}=")


@dataclass(frozen=True)
class AddCheckpointRequest:
    """An unverified add-checkpoint request."""

    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str


def parse_add_checkpoint_request(body: bytes) -> AddCheckpointRequest:
    """Split and syntax-check a request body. Raises `InvalidInput` (`TooLarge` if too big)."""
    if not isinstance(body, bytes):
        raise InvalidInput("request body must be bytes")
    if len(body) > MAX_ADD_CHECKPOINT_BYTES:
        raise TooLarge("request body exceeds the size limit")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("request body is not UTF-8") from None
    first, sep, rest = text.partition("\n")
    match = _OLD_LINE.fullmatch(first)
    if not sep or match is None:
        raise InvalidInput("request must start with an 'old <size>' line")
    old_size = int(match.group(1))
    if old_size > MAX_TREE_SIZE:
        raise InvalidInput("old size out of range")
    proof: list[bytes] = []
    while True:
        line, sep, rest = rest.partition("\n")
        if not sep:
            raise InvalidInput("request has no blank line before the checkpoint")
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise InvalidInput("too many consistency proof lines")
        proof.append(_decode_hash(line))
    if not rest:
        raise InvalidInput("request has no checkpoint")
    return AddCheckpointRequest(old_size, tuple(proof), rest)


def _decode_hash(line: str) -> bytes:
    if not _HASH_LINE.fullmatch(line):
        raise InvalidInput("consistency proof line is not a base64 hash")
    try:
        raw = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("consistency proof line is not a base64 hash") from None
    if len(raw) != HASH_SIZE_BYTES or base64.b64encode(raw).decode("ascii") != line:
        raise InvalidInput("consistency proof line is not a canonical base64 hash")
    return raw


def format_add_checkpoint_request(old_size: int, proof: list[bytes], checkpoint: str) -> bytes:
    """The request body a log (or a test) sends."""
    lines = [f"old {old_size}", *(base64.b64encode(p).decode("ascii") for p in proof), ""]
    return ("\n".join(lines) + "\n" + checkpoint).encode("utf-8")
