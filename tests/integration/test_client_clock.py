"""The client reads time only from the clock it is given."""

from __future__ import annotations

import time

import pytest

from accord.client.client import AccordClient
from accord.clock import ManualClock

PASS = "test passphrase"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_messages_are_dated_by_the_clients_clock(server, tmp_path):  # type: ignore[no-untyped-def]
    clock = ManualClock(start_s=int(time.time()) + 3 * 86_400)
    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS, clock=clock)
    bob = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    try:
        alice.send("bob", "from three days ahead")
        clock.advance(60)
        alice.send("bob", "a minute later")
        [first, second] = bob.receive().messages
        assert first.sent_at == (clock.time() - 60) * 1000
        assert second.sent_at == clock.time() * 1000
    finally:
        alice.close()
        bob.close()
