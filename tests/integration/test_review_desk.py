"""A review desk that cannot be flooded (docs/console.md, "Limits"), through the real server.

Reviewer logins are throttled per name and per client address and every failed or refused
attempt is audited; Argon2id runs in a small fixed pool, so a login flood is refused instead of
growing the server's memory; a reporter files a message once; reserved names are refused.

One server per module and database kind; tests use their own names. Every request here comes
from 127.0.0.1, so the address's failures add up across tests: the flood runs last and moves
the module's clock past the failure memory afterwards.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from accord.client.client import AccordClient
from accord.errors import AccordError
from accord.server.limits import (
    DEFAULT_REPORT_BURST,
    LOGIN_FAILURE_MEMORY_S,
    LOGIN_FREE_FAILURES_PER_NAME,
    LOGIN_LOCKOUT_BASE_S,
)
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"
REVIEWER_PASSWORD = "correct horse battery staple"
FLOOD_LOGINS = 40
MAX_SERVER_RSS_KIB = 1024 * 1024  # a generous bound: the flood grew an unbounded server to 2.4 GB
pytestmark = pytest.mark.timeout(300)
ON_SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _operator(server: Any) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token()}"},
        timeout=60,
    )


def _login(server: Any, name: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/review/login", json={"name": name, "password": password}, timeout=120
    )


def _audit(server: Any) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    after = 0
    with _operator(server) as op:
        while page := op.get("/v1/review/audit", params={"after": after, "limit": 1000}).json()[
            "entries"
        ]:
            entries += page
            after = page[-1]["seq"]
    return entries


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_reviewer_login_is_throttled_and_audited(server, unique):  # type: ignore[no-untyped-def]
    rita = unique("rita")
    with _operator(server) as op:
        made = op.post("/v1/reviewers", json={"name": rita, "password": REVIEWER_PASSWORD})
        assert made.status_code == 201
    wrong = "not the password at all"
    for _ in range(LOGIN_FREE_FAILURES_PER_NAME + 1):
        assert _login(server, rita, wrong).status_code == 401
    refused = _login(server, rita, REVIEWER_PASSWORD)  # even the right password waits
    assert refused.status_code == 429
    assert refused.json()["code"] == "login_throttled"
    assert int(refused.headers["Retry-After"]) == LOGIN_LOCKOUT_BASE_S

    mine = [e for e in _audit(server) if e["target"] == rita]
    assert [e["action"] for e in mine] == ["create_reviewer"] + ["login_failed"] * (
        LOGIN_FREE_FAILURES_PER_NAME + 1
    ) + ["login_throttled"]
    assert all(e["actor"] == "system" for e in mine[1:])
    assert all("127.0.0.1" in e["note"] for e in mine[1:])
    assert not any(wrong in e["note"] or REVIEWER_PASSWORD in e["note"] for e in mine)

    server.clock.advance(LOGIN_LOCKOUT_BASE_S)
    assert _login(server, rita, REVIEWER_PASSWORD).status_code == 200


def test_the_same_report_filed_twice_is_one_report(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    for n in range(DEFAULT_REPORT_BURST + 1):
        alice.send(bob.account_name, f"unwanted {n}")
    messages = bob.receive().messages
    assert len(messages) == DEFAULT_REPORT_BURST + 1
    first = bob.report(messages[0].id, reason="spam")
    assert bob.report(messages[0].id, reason="spam again") == first

    evidence = messages[0].evidence
    assert evidence is not None
    again = httpx.post(
        f"{server.url}/v1/reports",
        json={"message": evidence.model_dump(mode="json")},
        headers={"Authorization": f"Bearer {bob._token(False)}"},
        timeout=30,
    )
    assert again.status_code == 200
    assert again.json() == {"report_id": first, "messages": 1, "existing": True}
    with _operator(server) as op:
        listing = op.get("/v1/review/reports", params={"account": alice.account_name}).json()
    assert [r["report_id"] for r in listing["reports"]] == [first]

    # New reports are limited per account: a burst, then one every 30 s.
    for m in messages[1:DEFAULT_REPORT_BURST]:
        bob.report(m.id)
    with pytest.raises(AccordError) as refused:
        bob.report(messages[DEFAULT_REPORT_BURST].id)
    assert refused.value.code == "rate_limited"
    server.clock.advance(30)
    bob.report(messages[DEFAULT_REPORT_BURST].id)
    alice.close()
    bob.close()


def test_a_suspended_account_reads_and_appeals_and_an_admin_decides(  # type: ignore[no-untyped-def]
    server, tmp_path, unique
):
    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    alice.send(bob.account_name, "abuse")
    (abuse,) = bob.receive().messages
    report_id = bob.report(abuse.id, reason="abuse")
    with _operator(server) as op:
        op.post(f"/v1/review/reports/{report_id}/actions", json={"action": "suspend"})
    with pytest.raises(AccordError) as refused:
        alice.send(bob.account_name, "still here?")
    assert refused.value.code == "account_suspended"
    assert alice.receive().messages == []  # reading still works

    appeal_id = alice.appeal("My phone was stolen; it was not me.")
    with pytest.raises(AccordError) as twice:
        alice.appeal("again")
    assert twice.value.code == "appeal_open"
    with pytest.raises(AccordError) as not_suspended:
        bob.appeal("nothing to appeal")
    assert not_suspended.value.code == "not_suspended"

    rita = unique("rita")
    with _operator(server) as op:
        op.post("/v1/reviewers", json={"name": rita, "password": REVIEWER_PASSWORD})
        listing = op.get("/v1/review/appeals", params={"status": "open"}).json()["appeals"]
    assert {"id": appeal_id, "account": alice.account_name} in [
        {"id": a["id"], "account": a["account"]} for a in listing
    ]
    token = _login(server, rita, REVIEWER_PASSWORD).json()["token"]
    as_reviewer = httpx.post(
        f"{server.url}/v1/review/appeals/{appeal_id}/decision",
        json={"decision": "lift"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert as_reviewer.status_code == 403  # lifting is for admins, as unsuspending is
    with _operator(server) as op:
        decided = op.post(
            f"/v1/review/appeals/{appeal_id}/decision", json={"decision": "lift", "note": "ok"}
        ).json()
    assert decided["status"] == "lifted"
    assert any("lifted the suspension" in n for n in alice.receive().notices)
    alice.send(bob.account_name, "back, and sorry")
    assert [m.text for m in bob.receive().messages] == ["back, and sorry"]
    actions = [(e["action"], e["target"]) for e in _audit(server)]
    assert ("appeal", f"appeal/{appeal_id}") in actions
    assert ("appeal_lifted", f"appeal/{appeal_id}") in actions
    alice.close()
    bob.close()


@pytest.mark.parametrize(
    "name", ["operator", "admin", "system", "accord", "root", "server", "accord-support"]
)
def test_reserved_names_are_refused(server, tmp_path, name):  # type: ignore[no-untyped-def]
    with pytest.raises(AccordError) as refused:
        AccordClient.create_account(
            tmp_path / "a", server.url, name, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
    assert refused.value.code == "name_reserved"
    with _operator(server) as op:
        answer = op.post("/v1/reviewers", json={"name": name, "password": REVIEWER_PASSWORD})
    assert answer.status_code == 400 and answer.json()["code"] == "name_reserved"


@ON_SQLITE
def test_argon2_work_is_bounded_under_a_login_flood(server, unique):  # type: ignore[no-untyped-def]
    pid = server.proc.pid
    peak = [_rss_kib(pid)]
    done = threading.Event()

    def sample() -> None:  # a bounded poll of the server's memory until the flood is over
        while not done.wait(0.01):
            peak.append(_rss_kib(pid))

    names = [unique(f"flood{i}") for i in range(FLOOD_LOGINS)]
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=FLOOD_LOGINS) as pool:
            futures = [pool.submit(_login, server, n, "wrong password here") for n in names]
            health = httpx.get(f"{server.url}/v1/health", timeout=60)  # while the flood runs
            answers = [f.result() for f in futures]
    finally:
        done.set()
        sampler.join()
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 429, 503}, statuses
    refused = [a for a in answers if a.status_code in (429, 503)]
    assert refused, statuses
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert {a.json()["code"] for a in refused} <= {"login_busy", "login_throttled"}
    assert health.status_code == 200
    assert max(peak) < MAX_SERVER_RSS_KIB, max(peak)

    flood = [e for e in _audit(server) if e["target"] in set(names)]
    assert len(flood) == FLOOD_LOGINS  # every attempt audited: failed, busy or throttled
    server.clock.advance(LOGIN_FAILURE_MEMORY_S + 1)  # 127.0.0.1 starts again
