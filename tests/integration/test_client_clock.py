"""The client reads time only from the clock it is given."""

from __future__ import annotations

import time

from accord.client.client import AccordClient
from accord.clock import ManualClock
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"


def test_messages_are_dated_by_the_clients_clock(sqlite_server, tmp_path, unique):  # type: ignore[no-untyped-def]
    server = sqlite_server
    clock = ManualClock(start_s=int(time.time()) + 3 * 86_400)
    alice = AccordClient.create_account(
        tmp_path / "a",
        server.url,
        unique("alice"),
        PASS,
        clock=clock,
        kdf_cost=TEST_KDF_COST,
        insecure_dev=True,
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    try:
        alice.send(unique("bob"), "from three days ahead")
        clock.advance(60)
        alice.send(unique("bob"), "a minute later")
        [first, second] = bob.receive().messages
        assert first.sent_at == (clock.time() - 60) * 1000
        assert second.sent_at == clock.time() * 1000
    finally:
        alice.close()
        bob.close()
