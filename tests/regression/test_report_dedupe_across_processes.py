"""Issue 15, finding 4: one reporter filed the same report 100 times in a second. Filing was
made idempotent per reporter and message, but only within one server process (a lock in
memory); two processes behind one address could each store the report. Now the database holds
one report per (reporter, message) (a unique index), so the same filing sent to two processes at
once is one report, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from accord.client.client import AccordClient
from accord.storage.schema import reports
from accord.wire.reports import ReportedMessage, ReportRequest
from accord_testing import TEST_KDF_COST, TestClock, server_database, start_server

PASS = "test passphrase"
FILINGS_PER_PROCESS = 4
pytestmark = pytest.mark.timeout(300)


def test_one_report_filed_at_once_through_two_processes_is_one_report(
    tmp_path: Path, clock: TestClock, db_url: str | None, unique: Callable[[str], str]
) -> None:
    data = tmp_path / "server"
    first = start_server(data, clock=clock, db_url=db_url)
    second = start_server(data, clock=clock, db_url=db_url)
    try:
        alice = AccordClient.create_account(
            tmp_path / "a",
            first.url,
            unique("alice"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        bob = AccordClient.create_account(
            tmp_path / "b",
            first.url,
            unique("bob"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        message_id = alice.send(bob.account_name, "something to report")
        bob.receive()
        (evidence,) = [r["evidence"] for r in bob.store.messages() if r.get("evidence")]
        body = ReportRequest(
            reason="abuse", message=ReportedMessage.model_validate(evidence), context=[]
        ).model_dump()
        headers = {"Authorization": f"Bearer {bob._token(False)}"}

        start = threading.Barrier(2 * FILINGS_PER_PROCESS)
        answers: list[httpx.Response] = []

        def file(url: str) -> None:
            start.wait()
            answers.append(httpx.post(f"{url}/v1/reports", json=body, headers=headers, timeout=120))

        threads = [
            threading.Thread(target=file, args=(proc.url,))
            for proc in (first, second)
            for _ in range(FILINGS_PER_PROCESS)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)

        assert sorted(a.status_code for a in answers) == [200] * (2 * FILINGS_PER_PROCESS - 1) + [
            201
        ]
        assert len({a.json()["report_id"] for a in answers}) == 1
        with server_database(first) as engine, engine.connect() as conn:
            stored = conn.execute(
                select(func.count())
                .select_from(reports)
                .where(reports.c.reported_message_id == message_id)
            ).scalar_one()
        assert stored == 1
        alice.close()
        bob.close()
    finally:
        first.stop()
        second.stop()
