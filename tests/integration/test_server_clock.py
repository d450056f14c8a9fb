"""A server process started with ACCORD_CLOCK_OFFSET_FILE keeps its time as the system time plus
the offset in that file (accord.clock): a test moves the server's clock forward by writing the
file, and lifetimes that depend on it (tokens, challenges, franking key periods) end without
the test sleeping."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from accord.client.client import AccordClient
from accord.clock import CLOCK_OFFSET_ENV, SYSTEM_CLOCK, now_ms, write_clock_offset
from accord.errors import AccordError
from accord.server.franking import FRANKING_RETAIN_MS, FRANKING_ROTATE_MS
from accord.server.messaging import TOKEN_TTL_MS
from accord.server.process import ServerProcess

PASS = "test passphrase"
MARGIN_S = 3600


def _server(tmp_path: Path, db_url: str | None) -> tuple[ServerProcess, Path]:
    offset = tmp_path / "clock-offset"
    server = ServerProcess(tmp_path / "server", db_url=db_url, env={CLOCK_OFFSET_ENV: str(offset)})
    return server, offset


def test_a_token_expires_when_the_server_clock_passes_its_lifetime(tmp_path, db_url):  # type: ignore[no-untyped-def]
    server, offset = _server(tmp_path, db_url)
    with server:
        assert "TESTING CLOCK" in server.log_path.read_text()  # said once, at start
        alice = AccordClient.create_account(
            tmp_path / "alice", server.url, "alice", PASS, insecure_dev=True
        )
        try:
            old = {"Authorization": f"Bearer {alice._token(False)}"}
            assert httpx.get(f"{server.url}/v1/keys/count", headers=old).status_code == 200

            moved_s = TOKEN_TTL_MS // 1000 + MARGIN_S
            write_clock_offset(offset, moved_s)
            refused = httpx.get(f"{server.url}/v1/keys/count", headers=old)
            assert refused.status_code == 401
            assert refused.json()["code"] == "unauthenticated"

            challenge = httpx.post(
                f"{server.url}/v1/auth/challenge",
                json={"account": "alice", "device_id": alice.device_id},
            ).json()
            assert challenge["expires_at"] > now_ms(SYSTEM_CLOCK) + moved_s * 1000
            fresh = {"Authorization": f"Bearer {alice._token(True)}"}
            assert httpx.get(f"{server.url}/v1/keys/count", headers=fresh).status_code == 200
        finally:
            alice.close()


def test_a_franking_key_retires_when_the_server_clock_passes_its_retention(tmp_path, db_url):  # type: ignore[no-untyped-def]
    server, offset = _server(tmp_path, db_url)
    with server:
        alice = AccordClient.create_account(
            tmp_path / "alice", server.url, "alice", PASS, insecure_dev=True
        )
        bob = AccordClient.create_account(
            tmp_path / "bob", server.url, "bob", PASS, insecure_dev=True
        )
        try:
            alice.send("bob", "reported after a year")
            (message,) = bob.receive().messages

            write_clock_offset(offset, (FRANKING_RETAIN_MS + FRANKING_ROTATE_MS) // 1000 + MARGIN_S)
            with pytest.raises(AccordError) as refused:
                bob.report(message.id, reason="too late")
            assert refused.value.code == "franking_key_expired"
        finally:
            alice.close()
            bob.close()
