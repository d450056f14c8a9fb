"""Strict readers for the canonical JSON objects of this package (no I/O, no pydantic).

Every object Accord signs, commits to or logs here has exactly one byte encoding:
`canonical_json` of a dict of strings, integers, booleans, lists and dicts; byte strings are
lowercase hex (hashes, ids) or standard padded base64 (keys, signatures, ciphertexts). Readers
refuse unknown or missing keys, wrong types and non-canonical byte encodings, and
`decode_canonical` refuses any input that is not the canonical encoding of what it parses.
"""

from __future__ import annotations

import json
import re
from typing import Any

from accord.errors import InvalidInput, TooLarge
from accord.primitives.encoding import b64decode, b64encode, canonical_json

MAX_OBJECT_BYTES = 1 << 20
"""Largest encoded object accepted by `decode_canonical` (1 MiB)."""

_HEX = re.compile(r"[0-9a-f]*")
_IDENT = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")

Obj = dict[str, Any]


def _reject_float(text: str) -> Any:
    raise InvalidInput("numbers must be integers")


def _reject_constant(text: str) -> Any:
    raise InvalidInput("invalid number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> Obj:
    out: Obj = {}
    for key, value in pairs:
        if key in out:
            raise InvalidInput("duplicate key")
        out[key] = value
    return out


def decode_canonical(data: bytes, *, what: str) -> Obj:
    """Parse ``data`` as a JSON object and require it to be in canonical form."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput(f"{what} must be bytes")
    raw = bytes(data)
    if len(raw) > MAX_OBJECT_BYTES:
        raise TooLarge(f"{what} exceeds the size limit")
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise InvalidInput(f"{what} is not valid JSON") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    if canonical_json(value) != raw:
        raise InvalidInput(f"{what} is not in canonical form")
    return value


def require_keys(obj: object, keys: set[str], *, what: str) -> Obj:
    if not isinstance(obj, dict):
        raise InvalidInput(f"{what} must be an object")
    if set(obj) != keys:
        raise InvalidInput(f"{what} has missing or unknown fields")
    return obj


def get_str(obj: Obj, key: str, *, max_len: int = 256, allow_empty: bool = False) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string")
    check_text(value, key, max_len=max_len, allow_empty=allow_empty)
    return value


def check_text(value: object, what: str, *, max_len: int = 256, allow_empty: bool = False) -> str:
    """A printable one-line string of at most ``max_len`` characters."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    if (not value and not allow_empty) or len(value) > max_len:
        raise InvalidInput(f"{what} must be 1..{max_len} characters")
    if not value.isprintable():
        raise InvalidInput(f"{what} contains control characters")
    return value


def check_ident(value: object, what: str) -> str:
    """An identifier: lowercase letters, digits, '.', '_', '-'; at most 64 characters."""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise InvalidInput(f"{what} must be a lowercase identifier")
    return value


def get_int(obj: Obj, key: str, *, minimum: int = 0, maximum: int = 2**53 - 1) -> int:
    return check_int(obj[key], key, minimum=minimum, maximum=maximum)


def check_int(value: object, what: str, *, minimum: int = 0, maximum: int = 2**53 - 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{what} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{what} out of range")
    return value


def hex_bytes(data: bytes) -> str:
    return data.hex()


def get_hex(obj: Obj, key: str, *, size: int) -> bytes:
    return parse_hex(obj[key], key, size=size)


def parse_hex(value: object, what: str, *, size: int) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise InvalidInput(f"{what} must be {size} bytes of lowercase hex")
    return bytes.fromhex(value)


def b64(data: bytes) -> str:
    return b64encode(data)


def get_b64(obj: Obj, key: str, *, max_bytes: int, size: int | None = None) -> bytes:
    value = obj[key]
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a base64 string")
    raw = b64decode(value, max_bytes=max_bytes, what=key)
    if b64encode(raw) != value:
        raise InvalidInput(f"{key} is not canonical base64")
    if size is not None and len(raw) != size:
        raise InvalidInput(f"{key} must be {size} bytes")
    return raw


def get_list(obj: Obj, key: str, *, max_items: int) -> list[Any]:
    value = obj[key]
    if not isinstance(value, list):
        raise InvalidInput(f"{key} must be a list")
    if len(value) > max_items:
        raise InvalidInput(f"{key} has too many items")
    return value
