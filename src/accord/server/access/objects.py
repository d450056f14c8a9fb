"""Signed objects as requests carry them: canonically re-encoded (bounding their size), then
read strictly. Anything malformed is `InvalidInput` (or `TooLarge`), whatever the input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from accord.errors import TooLarge
from accord.primitives.encoding import canonical_json

MAX_SIGNED_OBJECT_BYTES = 64 * 1024
MAX_RECORD_OBJECT_BYTES = 512 * 1024
"""A sealed record as it travels: up to 256 KiB of ciphertext, in base64, and its labels."""


def parse_signed_object(
    obj: dict[str, Any],
    reader: Callable[[object], Any],
    what: str,
    *,
    max_bytes: int = MAX_SIGNED_OBJECT_BYTES,
) -> Any:
    """Re-encode a signed object canonically (bounding its size) and read it strictly."""
    data = canonical_json(obj)
    if len(data) > max_bytes:
        raise TooLarge(f"{what} exceeds {max_bytes} bytes")
    return reader(obj)
