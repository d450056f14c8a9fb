"""Daily review counts in the log: one canonical encoding, every mutation refused, and the
auditor's checks R1-R4 (docs/console.md, "Review counts in the transparency log")."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.review_counts import (
    DAY_MS,
    EVENT_COUNTED_ACTIONS,
    REPORT_COUNTED_ACTIONS,
    ReviewDailyCounts,
    audit_review_counts,
    day_start_ms,
    parse_daily_counts,
)

DAY = date(2026, 12, 5)


def _counts(day: date = DAY, *, first_reviewed: int = 0, **events: int) -> ReviewDailyCounts:
    return ReviewDailyCounts(
        day=day,
        reports={a: 0 for a in REPORT_COUNTED_ACTIONS} | {"dismiss": 2},
        events={a: events.get(a, 0) for a in EVENT_COUNTED_ACTIONS},
        threshold_events_first_reviewed=first_reviewed,
    )


def test_the_encoding_is_canonical_and_round_trips() -> None:
    entry = _counts(first_reviewed=1, confirm=1)
    data = entry.to_bytes()
    assert data.startswith(b'{"day":"2026-12-05","events":{"confirm":1,')
    assert b'"type":"accord.review.daily_counts.v1"' in data
    assert parse_daily_counts(data) == entry


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.replace(b'"confirm":1', b'"confirm":-1'),
        lambda d: d.replace(b'"confirm":1', b'"confirm":1.0'),
        lambda d: d.replace(b'"confirm":1', b'"confirm":true'),
        lambda d: d.replace(b'"confirm":1,', b""),  # an action missing
        lambda d: d.replace(b'"confirm":1', b'"confirm":1,"warn":0'),  # an unknown action
        lambda d: d.replace(b"2026-12-05", b"2026-13-05"),
        lambda d: d.replace(b"2026-12-05", b"2026-12-5"),
        lambda d: d.replace(b'{"day"', b'{ "day"'),  # not canonical
        lambda d: d.replace(b"daily_counts.v1", b"daily_counts.v2"),
        lambda d: d[:-1],
        lambda d: d.replace(b',"type"', b',"extra":1,"type"'),
    ],
)
def test_any_mutation_is_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    data = _counts(first_reviewed=1, confirm=1).to_bytes()
    with pytest.raises(InvalidInput):
        parse_daily_counts(mutate(data))


@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_are_refused(data: bytes) -> None:
    try:
        entry = parse_daily_counts(data)
    except InvalidInput:
        return
    assert entry.to_bytes() == data


def _log(*days: ReviewDailyCounts, start: int = 10) -> list[tuple[int, bytes]]:
    return [(start + i, d.to_bytes()) for i, d in enumerate(days)]


def test_consecutive_days_consistent_with_the_crossings_pass() -> None:
    crossing_hour = day_start_ms(DAY) + 3_600_000
    audit = audit_review_counts(
        _log(_counts(first_reviewed=1, confirm=1), _counts(DAY + timedelta(days=1))),
        [(3, crossing_hour)],
        newest_map_head_ms=day_start_ms(DAY) + 2 * DAY_MS,
    )
    assert audit.findings == []
    assert (audit.days, audit.first_day, audit.last_day) == (2, DAY, DAY + timedelta(days=1))
    assert audit.reports["dismiss"] == 4 and audit.events["confirm"] == 1
    assert audit.threshold_events_first_reviewed == 1 and audit.threshold_crossings == 1


def test_a_repeated_or_skipped_day_is_found() -> None:
    repeated = audit_review_counts(_log(_counts(), _counts()), [], newest_map_head_ms=None)
    assert ["repeats or goes back" in f for f in repeated.findings] == [True]
    skipped = audit_review_counts(
        _log(_counts(), _counts(DAY + timedelta(days=2))), [], newest_map_head_ms=None
    )
    assert ["skips a day" in f for f in skipped.findings] == [True]


def test_more_events_reviewed_than_crossings_logged_is_found() -> None:
    # The only crossing is logged after the count entry, or happened after the day: neither
    # can back a review counted that day.
    late_in_log = audit_review_counts(
        _log(_counts(first_reviewed=1)), [(11, day_start_ms(DAY))], newest_map_head_ms=None
    )
    after_the_day = audit_review_counts(
        _log(_counts(first_reviewed=1)), [(3, day_start_ms(DAY) + DAY_MS)], newest_map_head_ms=None
    )
    for audit in (late_in_log, after_the_day):
        assert len(audit.findings) == 1 and "only 0 crossings logged" in audit.findings[0]


def test_counts_that_stop_are_found() -> None:
    """The day just over may not be counted yet; two days later it must be."""
    on_time = audit_review_counts(
        _log(_counts()), [], newest_map_head_ms=day_start_ms(DAY) + 2 * DAY_MS
    )
    assert on_time.findings == []
    late = audit_review_counts(
        _log(_counts()), [], newest_map_head_ms=day_start_ms(DAY) + 3 * DAY_MS
    )
    assert len(late.findings) == 1 and "3 days before" in late.findings[0]


def test_an_entry_that_does_not_parse_is_found() -> None:
    audit = audit_review_counts(
        [(7, b'{"type":"accord.review.daily_counts.v1"}')], [], newest_map_head_ms=None
    )
    assert audit.findings and audit.findings[0].startswith("log entry 7:") and audit.days == 0


def test_an_unbacked_review_is_reported_once_not_every_day_after() -> None:
    audit = audit_review_counts(
        _log(_counts(first_reviewed=1), _counts(DAY + timedelta(days=1))),
        [],
        newest_map_head_ms=None,
    )
    assert len(audit.findings) == 1 and "2026-12-05" in audit.findings[0]
