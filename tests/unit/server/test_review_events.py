"""Threshold events get the actions of reports through the real ASGI app (confirm, dismiss,
suspend and its undo, escalate, reopen, export as a CyberTipline-shaped package), each audited;
once a day is over the server appends that day's review counts to the transparency log, and
`accord log audit` checks them (docs/console.md, "Threshold events" and "Review counts in the
transparency log").

The event itself is planted in the database as the matching worker writes one, with its
crossing appended to the log: the whole path from a client's vouchers to an event is tested in
tests/integration/test_private_matching.py and, with these actions, in
tests/browser/test_console_events.py.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from accord.client.audit import audit_log
from accord.client.client import AccordClient
from accord.clock import now_ms
from accord.protocols.private_matching.log_entries import ThresholdCrossing
from accord.protocols.review_counts import (
    EVENT_COUNTED_ACTIONS,
    REPORT_COUNTED_ACTIONS,
    ReviewDailyCounts,
    day_of,
    parse_daily_counts,
)
from accord.server.app import create_app
from accord.server.assembly import Services
from accord.server.config import ServerConfig
from accord.server.review_counts import CLAIM_WAIT_MS
from accord.storage.schema import accounts, review_count_days
from accord_testing import PASS, TEST_KDF_COST, TestClock, plant_threshold_event

DAY_S = 86_400
HOUR_S = 3_600


@dataclass
class World:
    http: TestClient
    services: Services
    clock: TestClock
    root: Path
    reviewer: dict[str, str]  # Authorization headers
    admin: dict[str, str]
    operator: dict[str, str]  # never expires, unlike the sessions


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("review-events")
    clock = TestClock(root / "clock")
    # Housekeeping is run by the tests themselves (`housekeep()`), at the times they choose.
    config = ServerConfig(data_dir=root / "server", clock=clock, housekeeping_interval_s=3600)
    app = create_app(config)
    with TestClient(app) as http:
        services: Services = app.state.services
        operator = {"Authorization": f"Bearer {services.admin_token}"}
        headers = {}
        for name, role in (("rita", "reviewer"), ("ada", "admin")):
            password = secrets.token_urlsafe(16)
            created = http.post(
                "/v1/reviewers",
                json={"name": name, "password": password, "role": role},
                headers=operator,
            )
            assert created.status_code == 201, created.text
            token = http.post("/v1/review/login", json={"name": name, "password": password})
            headers[name] = {"Authorization": f"Bearer {token.json()['token']}"}
        AccordClient.create_account(
            root / "mallory",
            "http://testserver",
            "mallory",
            PASS,
            transport=http._transport,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        ).close()
        yield World(http, services, clock, root, headers["rita"], headers["ada"], operator)


def _plant_event(world: World, account: str = "mallory") -> str:
    """A threshold event as the matching worker stores one, with its crossing in the log."""
    at = now_ms(world.clock)
    world.services.log.append([ThresholdCrossing.at(at, secrets.token_bytes(32)).to_bytes()])
    return plant_threshold_event(world.services.db.engine, account, at)


def _act(world: World, event_id: str, action: str, who: dict[str, str] | None = None) -> Any:
    return world.http.post(
        f"/v1/review/events/{event_id}/actions",
        json={"action": action, "note": f"{action} by test"},
        headers=who or world.reviewer,
    )


def _suspended(world: World) -> bool:
    with world.services.db.read() as conn:
        return bool(
            conn.execute(select(accounts.c.suspended).where(accounts.c.name == "mallory")).scalar()
        )


def _audited(world: World, target: str) -> list[tuple[str, str]]:
    trail = world.http.get("/v1/review/audit?limit=1000", headers=world.operator)
    return [(e["actor"], e["action"]) for e in trail.json()["entries"] if e["target"] == target]


def test_an_event_gets_the_actions_of_a_report_each_audited(world: World) -> None:
    event_id = _plant_event(world)
    confirmed = _act(world, event_id, "confirm")
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed" and confirmed.json()["event_id"] == event_id

    assert _act(world, event_id, "suspend").json()["status"] == "suspended"
    assert _suspended(world)
    refused = _act(world, event_id, "unsuspend")  # lifting a suspension is for admins
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert _act(world, event_id, "unsuspend", world.admin).json()["status"] == "open"
    assert not _suspended(world)

    not_yet = world.http.get(f"/v1/review/events/{event_id}/export", headers=world.reviewer)
    assert not_yet.status_code == 409
    assert _act(world, event_id, "escalate").json()["status"] == "escalated"
    package = world.http.get(f"/v1/review/events/{event_id}/export", headers=world.reviewer)
    assert package.status_code == 200 and package.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(package.content)) as z:
        assert z.namelist() == ["report.xml", "case.json"]
        report = SafeET.fromstring(z.read("report.xml"))
        case = json.loads(z.read("case.json"))
    assert report.findtext("personOrUserReported/espIdentifier") == "mallory"
    assert "bank standins, entry 7 (stand-in)" in (
        report.findtext("internetDetails/chatImIncident/additionalInfo") or ""
    )
    assert case["event_id"] == event_id and case["reviewer"] == "rita"
    assert case["notes"] == "escalate by test" and case["images"][0]["distance_bits"] == 3
    as_json = world.http.get(
        f"/v1/review/events/{event_id}/export?format=json", headers=world.reviewer
    )
    assert json.loads(as_json.content) == case

    assert _audited(world, event_id) == [
        ("rita", "confirm"),
        ("rita", "suspend"),
        ("ada", "unsuspend"),
        ("rita", "escalate"),
        ("rita", "export_xml"),
        ("rita", "export_json"),
    ]


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/v1/review/events/{event}/actions", {"action": "warn"}, 400),  # reports only
        ("/v1/review/events/{event}/actions", {"action": "confirm", "note": "x" * 2001}, 400),
        ("/v1/review/events/e_AAAAAAAAAAAAAAAAAAAAAA/actions", {"action": "confirm"}, 404),
        ("/v1/review/events/r_AAAAAAAAAAAAAAAAAAAAAA/actions", {"action": "confirm"}, 400),
    ],
)
def test_bad_event_actions_are_problems(
    world: World, path: str, body: dict[str, str], status: int
) -> None:
    event_id = _plant_event(world)
    answer = world.http.post(path.format(event=event_id), json=body, headers=world.reviewer)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert _audited(world, event_id) == []
    unauthenticated = world.http.post(path.format(event=event_id), json=body)
    assert unauthenticated.status_code == 401


def _count_entries(world: World) -> list[tuple[int, ReviewDailyCounts]]:
    size = world.http.get("/v1/log/info").json()["size"]
    found = []
    for start in range(0, size, 1000):
        page = world.http.get(f"/v1/log/entries?start={start}&end={min(size, start + 1000)}")
        for offset, encoded in enumerate(page.json()["entries"]):
            data = base64.b64decode(encoded)
            if b'"type":"accord.review.daily_counts.v1"' in data:
                found.append((start + offset, parse_daily_counts(data)))
    return found


def _trail_counts(world: World, day: Any) -> tuple[dict[str, int], dict[str, int], int]:
    """The day's review actions as the audit trail API lists them, and the events decided
    (every event here is planted and decided on the same day: each decision is a first one)."""
    reports = dict.fromkeys(REPORT_COUNTED_ACTIONS, 0)
    events = dict.fromkeys(EVENT_COUNTED_ACTIONS, 0)
    decided = set()
    trail = world.http.get("/v1/review/audit?limit=1000", headers=world.operator)
    for e in trail.json()["entries"]:
        action = "export" if e["action"].startswith("export_") else e["action"]
        if day_of(e["at"]) != day:
            continue
        if e["target"].startswith("e_") and action in events:
            events[action] += 1
            if action in ("confirm", "dismiss", "escalate", "suspend"):
                decided.add(e["target"])
        elif e["target"].startswith("r_") and action in reports:
            reports[action] += 1
    return reports, events, len(decided)


def test_each_day_s_review_counts_go_into_the_log_once_and_the_audit_checks_them(
    world: World,
) -> None:
    first = _plant_event(world)
    second = _plant_event(world)
    for event_id, action in ((first, "confirm"), (second, "dismiss"), (second, "reopen")):
        assert _act(world, event_id, action).status_code == 200
    today = day_of(now_ms(world.clock))
    expected_reports, expected_events, decided = _trail_counts(world, today)
    world.services.housekeeping.housekeep()
    assert _count_entries(world) == []  # the day is not over

    world.clock.advance(DAY_S + HOUR_S)
    world.services.housekeeping.housekeep()
    world.services.housekeeping.housekeep()  # a second run appends nothing more
    ((index, counts),) = _count_entries(world)
    assert counts.day == today
    assert dict(counts.events) == expected_events and dict(counts.reports) == expected_reports
    assert counts.events["confirm"] >= 1 and counts.events["reopen"] >= 1
    assert counts.threshold_events_first_reviewed == decided >= 2

    audited = audit_log(
        "http://testserver", world.root / "auditor-1", transport=world.http._transport
    )
    assert audited.findings == [] and audited.review is not None
    assert (audited.review.days, audited.review.last_day) == (1, today)
    assert audited.review.events == expected_events
    assert audited.counts["accord.review.daily_counts.v1"] == 1

    # A provider that appends a second count for the same day is caught.
    world.services.log.append([counts.to_bytes()])
    caught = audit_log(
        "http://testserver", world.root / "auditor-2", transport=world.http._transport
    )
    assert len(caught.findings) == 1 and "repeats or goes back" in caught.findings[0]
    assert index < world.services.log.store.size()


def test_a_day_being_appended_elsewhere_holds_back_the_next_until_its_process_is_gone(
    world: World,
) -> None:
    publisher = world.services.housekeeping.review_counts
    assert publisher is not None
    publisher.publish_due()
    last = _count_entries(world)[-1][1].day
    world.clock.advance(2 * DAY_S)
    claimed = (last + timedelta(days=1)).isoformat()
    world.services.db.transact(
        lambda conn: conn.execute(
            insert(review_count_days).values(day=claimed, emitted_at=now_ms(world.clock))
        )
    )
    assert publisher.publish_due() == []  # another process may be appending that day
    world.clock.advance(CLAIM_WAIT_MS / 1000 + 1)
    assert publisher.publish_due() == [last + timedelta(days=2)]
    assert [c.day for _, c in _count_entries(world)][-2:] == [last, last + timedelta(days=2)]
