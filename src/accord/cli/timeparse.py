"""TIME arguments, as the lawful-access commands take them.

TIME is ISO 8601 with a time zone (``2025-03-01T12:00:00Z``, ``2025-03-01T13:00:00+01:00``) or
relative to now: ``now``, ``+90s``, ``+2h``, ``-1d``; the result is whole seconds since the Unix
epoch (UTC). DURATION arguments and the formatting of both are shared with the client and the
server: `accord.protocols.access.timeparse`.
"""

from __future__ import annotations

import datetime as dt
import re

from accord.errors import InvalidInput
from accord.protocols.access.timeparse import UNIT_SECONDS

MAX_TIME_S = 253402300799
"""9999-12-31T23:59:59Z: the largest time accepted."""

_RELATIVE = re.compile(r"([+-])(0|[1-9][0-9]{0,9})([smhd])")


def parse_time(text: str, *, now: int) -> int:
    """An absolute ISO 8601 time (with zone) or ``now`` / ``+N<unit>`` / ``-N<unit>``."""
    if not isinstance(text, str):
        raise InvalidInput("time must be text")
    value = text.strip()
    if value == "now":
        result = now
    elif (match := _RELATIVE.fullmatch(value)) is not None:
        offset = int(match.group(2)) * UNIT_SECONDS[match.group(3)]
        result = now + offset if match.group(1) == "+" else now - offset
    else:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            raise InvalidInput("time must be ISO 8601 or now, +90s, +2h, +30d") from None
        if parsed.tzinfo is None:
            raise InvalidInput("an ISO 8601 time needs a time zone (e.g. Z or +01:00)")
        result = int(parsed.timestamp())
        if parsed.microsecond:
            raise InvalidInput("times are whole seconds")
    if not 0 <= result <= MAX_TIME_S:
        raise InvalidInput("time out of range")
    return result
