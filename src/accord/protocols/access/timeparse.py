"""Durations as text, and times as ISO 8601: what warrants, notices and settings share.

DURATION is a non-negative integer and a unit: ``0s``, ``90s``, ``15m``, ``2h``, ``180d`` (the
lawful-access commands and the server's ACCORD_WARRANT_MAX_DURATION take them; notices show
them). Times are whole seconds since the Unix epoch (UTC) everywhere in this package, shown as
ISO 8601 UTC. TIME arguments relative to now are the command line's: `accord.cli.timeparse`.
"""

from __future__ import annotations

import datetime as dt
import re

from accord.errors import InvalidInput

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(0|[1-9][0-9]{0,9})([smhd])")


def parse_duration(text: str) -> int:
    """``180d`` -> 15552000 seconds. Raises `InvalidInput`."""
    if not isinstance(text, str):
        raise InvalidInput("duration must be text such as 30d, 2h, 90s")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise InvalidInput("duration must be an integer and a unit: s, m, h or d (e.g. 30d)")
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def format_time(seconds: int) -> str:
    """Seconds since the epoch as ISO 8601 UTC, e.g. ``2025-03-01T12:00:00Z``."""
    try:
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (ValueError, OverflowError, OSError):  # beyond what a calendar date can show
        return f"{seconds}s since the epoch (beyond year 9999)"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: int) -> str:
    """The largest whole unit: 2592000 -> ``30d``, 5400 -> ``90m``, 0 -> ``0s``."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNIT_SECONDS[unit] == 0:
            return f"{seconds // UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
