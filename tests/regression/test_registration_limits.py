"""Issue 15, finding 5: account creation had no limit (200 accounts in 0.9 s, each a permanent
log entry), and the review desk's limits counted per process only.

- new accounts and device link requests are limited per client address: 429
  `registration_throttled` with Retry-After, a count that holds across a restart and across
  a second process on the same database (SQLite and PostgreSQL);
- a closed deployment requires its registration token (`--registration-token-file`);
- a reviewer locked out stays locked out when the server restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from accord.client.client import AccordClient
from accord.errors import AccordError, RateLimited
from accord.server.limits import LOGIN_FREE_FAILURES_PER_NAME, LOGIN_LOCKOUT_BASE_S
from accord.server.process import ServerProcess
from accord_testing import TEST_KDF_COST, TestClock, start_server

PASS = "test passphrase"
ACCOUNT_BURST = 3
ACCOUNT_RATE_PER_S = 0.001  # one every 1000 s after the burst
REGISTRATION_TOKEN = "closed-deployment-token-1234"
pytestmark = pytest.mark.timeout(300)


def _create(server_url: str, home: Path, name: str, **kwargs: object) -> AccordClient:
    return AccordClient.create_account(
        home, server_url, name, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True, **kwargs
    )  # type: ignore[arg-type]


def test_account_creation_is_limited_per_address_across_restarts_and_processes(
    tmp_path: Path, clock: TestClock, db_url: str | None, unique: Callable[[str], str]
) -> None:
    limits = ["--account-rate", str(ACCOUNT_RATE_PER_S), "--account-burst", str(ACCOUNT_BURST)]
    data = tmp_path / "server"
    first = start_server(data, clock=clock, db_url=db_url, extra_args=limits)
    second: ServerProcess | None = None
    try:
        for i in range(ACCOUNT_BURST):
            _create(first.url, tmp_path / f"h{i}", unique(f"user{i}")).close()
        with pytest.raises(RateLimited) as refused:
            _create(first.url, tmp_path / "over", unique("over"))
        assert refused.value.code == "registration_throttled"
        assert refused.value.retry_after_s > 1  # from the Retry-After header
        assert (tmp_path / "over" / "accord.db").exists(), "refused for now: the keys stay"

        # A raw request sees the problem document and the header.
        with AccordClient(tmp_path / "over", PASS) as kept:
            keys = kept._ctx.identity.device_keys().model_dump()
        answer = httpx.post(f"{first.url}/v1/link-requests", json={"v": 1, "device": keys})
        assert answer.status_code == 429 and answer.json()["code"] == "registration_throttled"
        assert int(answer.headers["Retry-After"]) > 1

        first.stop()
        first.start()  # a restart forgets nothing
        with pytest.raises(RateLimited):
            _create(first.url, tmp_path / "after-restart", unique("restart"))
        second = start_server(data, clock=clock, db_url=db_url, extra_args=limits)
        with pytest.raises(RateLimited):  # nor does another process on the same database
            _create(second.url, tmp_path / "other-process", unique("process"))

        clock.advance(1 / ACCOUNT_RATE_PER_S + 1)
        resumed = _create(first.url, tmp_path / "over", unique("over"))  # same home, same keys
        resumed.close()
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_a_closed_deployment_requires_its_registration_token(
    tmp_path: Path, clock: TestClock, unique: Callable[[str], str], cli: Callable[[str], Any]
) -> None:
    token_file = tmp_path / "registration-token"
    token_file.write_text(REGISTRATION_TOKEN + "\n")
    server = start_server(
        tmp_path / "server",
        clock=clock,
        extra_args=["--registration-token-file", str(token_file)],
    )
    try:
        with pytest.raises(AccordError) as missing:
            _create(server.url, tmp_path / "a", unique("alice"))
        assert missing.value.code == "registration_token_required"
        assert not (tmp_path / "a" / "accord.db").exists(), "refused for good: keys cleared"
        with pytest.raises(AccordError) as wrong:
            _create(server.url, tmp_path / "a", unique("alice"), registration_token="guess" * 4)
        assert wrong.value.code == "registration_token_invalid"

        carol = cli("carol")
        carol.env.update({**clock.env, "ACCORD_REGISTRATION_TOKEN": "nope"})
        failed = carol.run(
            "account", "create", unique("carol"), "--server", server.url, check=False
        )
        assert failed.returncode != 0
        assert "registration_token_invalid" in failed.stderr
        carol.env["ACCORD_REGISTRATION_TOKEN"] = REGISTRATION_TOKEN
        made = carol.run("account", "create", unique("carol"), "--server", server.url)
        assert "created" in made.stdout
    finally:
        server.stop()


def test_a_reviewer_lockout_survives_a_restart(
    tmp_path: Path, clock: TestClock, db_url: str | None, unique: Callable[[str], str]
) -> None:
    server = start_server(tmp_path / "server", clock=clock, db_url=db_url)
    rita, password = unique("rita"), "correct horse battery staple"
    try:
        made = httpx.post(
            f"{server.url}/v1/reviewers",
            json={"name": rita, "password": password},
            headers={"Authorization": f"Bearer {server.admin_token()}"},
            timeout=60,
        )
        assert made.status_code == 201

        def login(pw: str) -> httpx.Response:
            return httpx.post(
                f"{server.url}/v1/review/login", json={"name": rita, "password": pw}, timeout=120
            )

        for _ in range(LOGIN_FREE_FAILURES_PER_NAME + 1):
            assert login("wrong password, wrong").status_code == 401
        server.stop()
        server.start()
        refused = login(password)
        assert refused.status_code == 429 and refused.json()["code"] == "login_throttled"
        clock.advance(LOGIN_LOCKOUT_BASE_S)
        assert login(password).status_code == 200
    finally:
        server.stop()
