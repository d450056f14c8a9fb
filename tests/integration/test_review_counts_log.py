"""A real server process (SQLite and PostgreSQL) counts each day's review actions into its
transparency log by itself, from its housekeeping on the injected clock, one entry per day; and
`accord log audit` checks them: here it catches a review of a threshold event whose crossing
the log never got (R3, docs/console.md "Review counts in the transparency log")."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from typing import Any

import httpx

from accord.clock import now_ms
from accord.protocols.review_counts import day_of, parse_daily_counts
from accord.storage.db import make_engine, sqlite_url
from accord_testing import Cli, eventually, plant_threshold_event

DAY_S = 86_400
HOUR_S = 3_600

# Housekeeping (what the moved clock made due) runs every 0.2 s instead of every 5.
SERVER_ENV = {"ACCORD_HOUSEKEEPING_INTERVAL": "0.2"}


def _count_entries(url: str) -> list[Any]:
    size = httpx.get(f"{url}/v1/log/info").json()["size"]
    entries = httpx.get(f"{url}/v1/log/entries", params={"start": 0, "end": size}).json()
    return [
        parse_daily_counts(data)
        for data in map(base64.b64decode, entries["entries"])
        if b'"type":"accord.review.daily_counts.v1"' in data
    ]


def test_the_server_logs_each_day_s_review_counts_and_the_audit_checks_them(
    server: Any, cli: Callable[[str], Cli], unique: Callable[[str], str]
) -> None:
    clock = server.clock
    operator = {"Authorization": f"Bearer {server.admin_token()}"}
    password = secrets.token_urlsafe(16)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        created = http.post(
            "/v1/reviewers",
            json={"name": unique("rita"), "password": password, "role": "reviewer"},
            headers=operator,
        )
        assert created.status_code == 201, created.text
        engine = make_engine(server.db_url or sqlite_url(server.data_dir))
        try:
            event_id = plant_threshold_event(engine, unique("mallory"), now_ms(clock))
        finally:
            engine.dispose()
        confirmed = http.post(
            f"/v1/review/events/{event_id}/actions",
            json={"action": "confirm"},
            headers=operator,
        )
        assert confirmed.status_code == 200, confirmed.text
    first_day = day_of(now_ms(clock))

    # Two days and an hour later, the server's own housekeeping appends both days.
    clock.advance(2 * DAY_S + HOUR_S)
    counted = eventually(
        lambda: (found := _count_entries(server.url)) and len(found) >= 2 and found,
        "the review counts of two days",
    )
    assert [c.day for c in counted] == [first_day, day_of(now_ms(clock) - DAY_S * 1000)]
    assert counted[0].events["confirm"] == 1 and counted[0].threshold_events_first_reviewed == 1
    assert sum(counted[1].events.values()) == 0

    # The event was reviewed, but the log holds no crossing for it: the audit says so.
    audited = cli("auditor").run("log", "audit", "--server", server.url, "--json", check=False)
    assert audited.returncode == 1, audited.stderr
    report = json.loads(audited.stdout)
    assert report["review_counts"]["days"] == 2
    assert report["review_counts"]["events"]["confirm"] == 1
    assert len(report["findings"]) == 1
    assert "1 threshold events reviewed" in report["findings"][0]
    assert "only 0 crossings logged" in report["findings"][0]
    text = cli("auditor").run("log", "audit", "--server", server.url, check=False).stdout
    assert "review counts: 2 days" in text and "threshold events: confirm 1" in text
