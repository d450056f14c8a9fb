"""Review actions counted per day in the transparency log, and what an auditor can check of them.

Once a day the server appends ``accord.review.daily_counts.v1`` for the previous UTC day: how
many times reviewers took each action on reports and on private-matching threshold events
(exports included), and how many threshold events were reviewed for the first time that day.
The entry names no account, report, event or reviewer. `parse_daily_counts` accepts only the
canonical bytes with every field present; `audit_review_counts` is the auditor's side (steps R1
to R4 of docs/console.md, "Review counts in the transparency log").
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar

from accord.errors import InvalidInput
from accord.primitives.encoding import canonical_json
from accord.protocols.translog.entries import TAG_REVIEW_DAILY_COUNTS

REVIEW_TAG_MARK = b'"type":"accord.review.'
"""A cheap filter for the log's review entries (each is parsed strictly afterwards)."""

REPORT_COUNTED_ACTIONS = ("dismiss", "warn", "suspend", "unsuspend", "escalate", "reopen", "export")
EVENT_COUNTED_ACTIONS = (
    "confirm",
    "dismiss",
    "escalate",
    "suspend",
    "unsuspend",
    "reopen",
    "export",
)
EVENT_DECISIONS = ("confirm", "dismiss", "escalate", "suspend")
"""Actions that decide an event (its first one makes it 'reviewed')."""

DAY_MS = 86_400_000
MAX_COUNT = 2**40
MAX_ENTRY_BYTES = 4096
STALE_AFTER_DAYS = 2
"""R4: the newest count may lag the log's newest map head by this many days (a day ends, the
server emits on its next tick)."""


def day_of(ms: int) -> date:
    """The UTC day of a millisecond timestamp."""
    return datetime.fromtimestamp(ms / 1000, UTC).date()


def day_start_ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class ReviewDailyCounts:
    """One UTC day's review actions, by action, for reports and for threshold events."""

    TYPE: ClassVar[str] = TAG_REVIEW_DAILY_COUNTS

    day: date
    reports: Mapping[str, int]
    events: Mapping[str, int]
    threshold_events_first_reviewed: int

    def __post_init__(self) -> None:
        for counts, actions in (
            (self.reports, REPORT_COUNTED_ACTIONS),
            (self.events, EVENT_COUNTED_ACTIONS),
        ):
            if set(counts) != set(actions) or not all(_is_count(v) for v in counts.values()):
                raise InvalidInput("review counts name every counted action with a count")
        if not _is_count(self.threshold_events_first_reviewed):
            raise InvalidInput("review counts are whole numbers in range")

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "type": self.TYPE,
                "day": self.day.isoformat(),
                "reports": dict(self.reports),
                "events": dict(self.events),
                "threshold_events_first_reviewed": self.threshold_events_first_reviewed,
            }
        )


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT


def parse_daily_counts(data: bytes) -> ReviewDailyCounts:
    """The entry, if `data` is exactly its canonical encoding; `InvalidInput` otherwise."""
    if len(data) > MAX_ENTRY_BYTES:
        raise InvalidInput("review counts entry too large")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise InvalidInput("review counts entry is not JSON") from None
    if not isinstance(obj, dict) or obj.get("type") != TAG_REVIEW_DAILY_COUNTS:
        raise InvalidInput("not a review counts entry")
    day_text, reports, events = obj.get("day"), obj.get("reports"), obj.get("events")
    if (
        not isinstance(day_text, str)
        or not isinstance(reports, dict)
        or not isinstance(events, dict)
    ):
        raise InvalidInput("review counts entry is malformed")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise InvalidInput("review counts day is malformed") from None
    entry = ReviewDailyCounts(
        day=day,
        reports=reports,
        events=events,
        threshold_events_first_reviewed=obj.get("threshold_events_first_reviewed"),  # type: ignore[arg-type]
    )
    if entry.to_bytes() != data:
        raise InvalidInput("review counts entry is not in canonical form")
    return entry


# --------------------------------------------------------------------------------------------
# The auditor's side


@dataclass
class ReviewCountsAudit:
    """What `audit_review_counts` recomputed: days covered, totals by action, findings."""

    days: int = 0
    first_day: date | None = None
    last_day: date | None = None
    reports: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)
    threshold_events_first_reviewed: int = 0
    threshold_crossings: int = 0
    findings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "first_day": self.first_day.isoformat() if self.first_day else None,
            "last_day": self.last_day.isoformat() if self.last_day else None,
            "reports": self.reports,
            "events": self.events,
            "threshold_events_first_reviewed": self.threshold_events_first_reviewed,
            "threshold_crossings": self.threshold_crossings,
        }


def audit_review_counts(
    counts: Sequence[tuple[int, bytes]],
    crossing_hours: Sequence[tuple[int, int]],
    *,
    newest_map_head_ms: int | None,
) -> ReviewCountsAudit:
    """Check the log's daily review counts (`counts`: (index, entry bytes), in log order)
    against the threshold crossings it holds (`crossing_hours`: (index, hour in ms)).

    R1: every count entry parses. R2: the days follow one another without a gap or a repeat.
    R3: by the end of each day, no more threshold events were first reviewed than crossings the
    log held before the count entry, from hours before the day ended. R4: the newest day is at
    most `STALE_AFTER_DAYS` before the day of the log's newest map head.
    """
    audit = ReviewCountsAudit(
        reports=dict.fromkeys(REPORT_COUNTED_ACTIONS, 0),
        events=dict.fromkeys(EVENT_COUNTED_ACTIONS, 0),
        threshold_crossings=len(crossing_hours),
    )
    previous: date | None = None
    by_index = sorted(crossing_hours)
    seen_hours: list[int] = []  # hours of the crossings before the current count entry, sorted
    taken = 0
    reported_excess = 0
    for index, data in counts:
        while taken < len(by_index) and by_index[taken][0] < index:
            bisect.insort(seen_hours, by_index[taken][1])
            taken += 1
        try:
            entry = parse_daily_counts(data)  # R1
        except InvalidInput as exc:
            audit.findings.append(f"log entry {index}: {exc.message}")
            continue
        if previous is not None and entry.day != previous + timedelta(days=1):  # R2
            what = "repeats or goes back" if entry.day <= previous else "skips a day"
            audit.findings.append(
                f"log entry {index}: review counts for {entry.day} {what} after {previous}"
            )
        previous = entry.day
        audit.days += 1
        audit.first_day = audit.first_day or entry.day
        audit.last_day = entry.day
        for action, n in entry.reports.items():
            audit.reports[action] += n
        for action, n in entry.events.items():
            audit.events[action] += n
        audit.threshold_events_first_reviewed += entry.threshold_events_first_reviewed
        day_end = day_start_ms(entry.day) + DAY_MS
        logged = bisect.bisect_left(seen_hours, day_end)
        excess = audit.threshold_events_first_reviewed - logged
        if excess > reported_excess:  # R3, said once for each review the log cannot back
            reported_excess = excess
            audit.findings.append(
                f"log entry {index}: {audit.threshold_events_first_reviewed} threshold events "
                f"reviewed by the end of {entry.day}, but only {logged} crossings logged"
            )
    if previous is not None and newest_map_head_ms is not None:  # R4
        lag = (day_of(newest_map_head_ms) - previous).days
        if lag > STALE_AFTER_DAYS:
            audit.findings.append(
                f"the newest review counts are for {previous}, {lag} days before the log's "
                "newest map head"
            )
    return audit
