"""Rate-limit counts in the database (accord.server.limits.SqlCounters): two engines on one
database stand for two server processes, or one process before and after a restart. The report
limit is the example; its count is shared, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import pytest

from accord.clock import ManualClock
from accord.errors import RateLimited
from accord.server.limits import DEFAULT_REPORT_BURST, SqlCounters, report_limiter
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head


def _run(fn: Callable[..., Awaitable[None]], *args: object) -> None:
    """`anyio.run` in a thread of its own: another test in this worker process (the browser
    tests' sync Playwright) may have left an event loop running in the main thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(anyio.run, fn, *args).result()


def _database(url: str) -> Database:
    engine = make_engine(url)
    upgrade_to_head(engine)
    return Database(engine)


def test_report_counts_are_shared_by_every_process_on_the_database(
    tmp_path: Path, db_url: str | None
) -> None:
    url = db_url or sqlite_url(tmp_path)
    clock = ManualClock()
    one, other = _database(url), _database(url)
    try:
        first = report_limiter(clock=clock, counters=SqlCounters(one, clock=clock))
        second = report_limiter(clock=clock, counters=SqlCounters(other, clock=clock))

        async def file(limiter_count: int) -> None:
            for _ in range(limiter_count):
                await first.check("mallory")

        _run(file, DEFAULT_REPORT_BURST)
        with pytest.raises(RateLimited) as refused:
            _run(second.check, "mallory")
        assert refused.value.retry_after_s == 30
        _run(second.check, "someone-else")  # counted per account
        clock.advance(30)
        _run(second.check, "mallory")
        assert SqlCounters(one, clock=clock).purge_expired() == 0
        clock.advance(3600)
        assert SqlCounters(one, clock=clock).purge_expired() == 2
    finally:
        one.dispose()
        other.dispose()


def test_a_key_longer_than_the_column_is_kept_by_its_digest(tmp_path: Path) -> None:
    clock = ManualClock()
    db = _database(sqlite_url(tmp_path))
    try:
        limiter = report_limiter(clock=clock, counters=SqlCounters(db, clock=clock))
        long_name = "n" * 5000  # a reviewer name or address no wire limit cut short

        async def take(count: int) -> None:
            for _ in range(count):
                await limiter.check(long_name)

        _run(take, DEFAULT_REPORT_BURST)
        with pytest.raises(RateLimited):
            _run(limiter.check, long_name)
    finally:
        db.dispose()
