"""Review actions counted per day into the transparency log (docs/console.md, "Review counts in
the transparency log").

`ReviewCountsPublisher.publish_due`, run by the server's housekeeping, appends one
`accord.review.daily_counts.v1` entry for every whole UTC day, by the server's clock, that has
none yet: from the first day the audit trail holds to yesterday (a server whose audit trail is
empty appends none), in order. The counts come from the audit trail, which records every
review action. A day's row in `review_count_days` is inserted before its entry is appended, so
two server processes never append the same day, nor a day before the one another is appending
(`CLAIM_WAIT_MS`); a failed append removes the row, and the next run tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.protocols.review_counts import (
    DAY_MS,
    EVENT_COUNTED_ACTIONS,
    EVENT_DECISIONS,
    REPORT_COUNTED_ACTIONS,
    ReviewDailyCounts,
    day_of,
    day_start_ms,
)
from accord.server.translog import LogService
from accord.storage.db import Database
from accord.storage.schema import pm_events, review_audit, review_count_days

log = logging.getLogger("accord.server.review_counts")

MAX_DAYS_PER_RUN = 31
"""Days appended in one run (a server catching up after a long stop does so over a few runs)."""

CLAIM_WAIT_MS = 10 * 60 * 1000
"""How long a day recorded but not yet appended holds back the next one (so days reach the log
in order from several processes); after that its process is taken to have died and the day is
left out, which the audit reports as a skipped day."""

EXPORT_ACTIONS = {"export_xml": "export", "export_json": "export"}
REPORT_TARGET_PREFIX = "r_"
EVENT_TARGET_PREFIX = "e_"


class ReviewCountsPublisher:
    def __init__(self, db: Database, log_service: LogService, *, clock: Clock = SYSTEM_CLOCK):
        self.db = db
        self.log = log_service
        self.clock = clock

    def publish_due(self) -> list[date]:
        """Append the counts of every day that is over and not yet logged; return those days."""
        now = now_ms(self.clock)
        yesterday = day_of(now) - timedelta(days=1)
        with self.db.read() as conn:
            last = conn.execute(
                select(review_count_days).order_by(review_count_days.c.day.desc()).limit(1)
            ).first()
            first_at = conn.execute(select(func.min(review_audit.c.at))).scalar()
        if last is not None and last.log_index is None and now - last.emitted_at < CLAIM_WAIT_MS:
            return []  # another process is appending that day: the next day comes after it
        if last is not None:
            day = date.fromisoformat(last.day) + timedelta(days=1)
        elif first_at is not None:
            day = day_of(int(first_at))
        else:
            return []  # no review yet: the counts start on the audit trail's first day
        published: list[date] = []
        while day <= yesterday and len(published) < MAX_DAYS_PER_RUN:
            if not self._publish(day):
                break  # another process holds this day
            published.append(day)
            day += timedelta(days=1)
        return published

    def _publish(self, day: date) -> bool:
        def _claim(conn: Connection) -> ReviewDailyCounts:
            conn.execute(
                insert(review_count_days).values(
                    day=day.isoformat(), log_index=None, emitted_at=now_ms(self.clock)
                )
            )
            return count_day(conn, day)

        try:
            counts = self.db.transact(_claim)
        except IntegrityError:
            return False
        try:
            index = self.log.append([counts.to_bytes()])
        except Exception:
            self.db.transact(
                lambda conn: conn.execute(
                    delete(review_count_days).where(review_count_days.c.day == day.isoformat())
                )
            )
            raise
        self.db.transact(
            lambda conn: conn.execute(
                update(review_count_days)
                .where(review_count_days.c.day == day.isoformat())
                .values(log_index=index)
            )
        )
        log.info("review counts for %s appended to the log at %d", day, index)
        return True


def count_day(conn: Connection, day: date) -> ReviewDailyCounts:
    """The review actions of one UTC day, from the audit trail."""
    start = day_start_ms(day)
    end = start + DAY_MS
    counted = {*REPORT_COUNTED_ACTIONS, *EVENT_COUNTED_ACTIONS, *EXPORT_ACTIONS}
    rows: Sequence[Any] = conn.execute(
        select(review_audit.c.action, review_audit.c.target).where(
            review_audit.c.at >= start, review_audit.c.at < end, review_audit.c.action.in_(counted)
        )
    ).all()
    reports = dict.fromkeys(REPORT_COUNTED_ACTIONS, 0)
    events = dict.fromkeys(EVENT_COUNTED_ACTIONS, 0)
    decided_events: set[str] = set()
    for row in rows:
        action = EXPORT_ACTIONS.get(row.action, row.action)
        if row.target.startswith(REPORT_TARGET_PREFIX) and action in reports:
            reports[action] += 1
        elif row.target.startswith(EVENT_TARGET_PREFIX) and action in events:
            events[action] += 1
            if action in EVENT_DECISIONS:
                decided_events.add(row.target)
    return ReviewDailyCounts(
        day=day,
        reports=reports,
        events=events,
        threshold_events_first_reviewed=_first_reviewed_threshold_events(
            conn, decided_events, before=start
        ),
    )


def _first_reviewed_threshold_events(conn: Connection, decided: set[str], *, before: int) -> int:
    """How many of the events `decided` are threshold crossings with no decision before."""
    if not decided:
        return 0
    crossings = set(
        conn.execute(
            select(pm_events.c.event_id).where(
                pm_events.c.event_id.in_(decided), pm_events.c.kind == "threshold"
            )
        ).scalars()
    )
    if not crossings:
        return 0
    earlier = set(
        conn.execute(
            select(review_audit.c.target).where(
                review_audit.c.target.in_(crossings),
                review_audit.c.action.in_(EVENT_DECISIONS),
                review_audit.c.at < before,
            )
        ).scalars()
    )
    return len(crossings - earlier)
