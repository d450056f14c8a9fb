"""Byte encodings used on the wire: strict base64 and one canonical JSON form for signed data."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from accord.errors import InvalidInput


def b64encode(data: bytes) -> str:
    """Standard base64 with padding (what the wire uses for every byte field)."""
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, *, max_bytes: int, what: str = "value") -> bytes:
    """Strict standard base64 (padding required, no stray characters), with a size limit."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be a base64 string")
    if len(text) > 4 * ((max_bytes + 2) // 3):
        raise InvalidInput(f"{what} is larger than {max_bytes} bytes")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise InvalidInput(f"{what} is not valid base64") from None
    if len(raw) > max_bytes:
        raise InvalidInput(f"{what} is larger than {max_bytes} bytes")
    return raw


def b64decode_unpadded(text: str, *, max_bytes: int, what: str = "value") -> bytes:
    """Unpadded base64 as vodozemac prints keys and signatures."""
    if not isinstance(text, str) or "=" in text:
        raise InvalidInput(f"{what} must be unpadded base64")
    return b64decode(text + "=" * (-len(text) % 4), max_bytes=max_bytes, what=what)


def b64encode_unpadded(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _check_canonical(value: Any, depth: int = 0) -> None:
    if depth > 32:
        raise InvalidInput("structure too deeply nested")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if not -(2**53) < value < 2**53:
            raise InvalidInput("integer out of the canonical range")
        return
    if isinstance(value, list):
        for item in value:
            _check_canonical(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput("object keys must be strings")
            _check_canonical(item, depth + 1)
        return
    raise InvalidInput(f"type {type(value).__name__} has no canonical encoding")


def canonical_json(value: Any) -> bytes:
    """The one byte encoding of anything Accord signs or MACs.

    JSON with keys sorted by code point, no insignificant whitespace, UTF-8, integers only (no
    floats), within the range every JSON implementation represents exactly.
    """
    _check_canonical(value)
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")
