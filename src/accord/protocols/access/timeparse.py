"""TIME and DURATION arguments, as the lawful-access commands take them.

TIME is ISO 8601 with a time zone (``2025-03-01T12:00:00Z``, ``2025-03-01T13:00:00+01:00``) or
relative to now: ``now``, ``+90s``, ``+2h``, ``-1d``. DURATION is a non-negative integer and a
unit: ``0s``, ``90s``, ``15m``, ``2h``, ``180d``. Times are whole seconds since the Unix epoch
(UTC) everywhere in this package.
"""

from __future__ import annotations

import datetime as dt
import re

from accord.errors import InvalidInput

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_TIME_S = 253402300799
"""9999-12-31T23:59:59Z: the largest time accepted."""

_DURATION = re.compile(r"(0|[1-9][0-9]{0,9})([smhd])")
_RELATIVE = re.compile(r"([+-])(0|[1-9][0-9]{0,9})([smhd])")


def parse_duration(text: str) -> int:
    """``180d`` -> 15552000 seconds. Raises `InvalidInput`."""
    if not isinstance(text, str):
        raise InvalidInput("duration must be text such as 30d, 2h, 90s")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput("duration must be an integer and a unit: s, m, h or d (e.g. 30d)")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


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


def format_time(seconds: int) -> str:
    """Seconds since the epoch as ISO 8601 UTC, e.g. ``2025-03-01T12:00:00Z``."""
    moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: int) -> str:
    """The largest whole unit: 2592000 -> ``30d``, 5400 -> ``90m``, 0 -> ``0s``."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNIT_SECONDS[unit] == 0:
            return f"{seconds // UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
