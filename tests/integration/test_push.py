"""WebSocket push: messages arrive as they are committed and are deleted once acknowledged.

One server per module and database kind; every test has its own accounts.
"""

from __future__ import annotations

import threading

import httpx

from accord.client.client import AccordClient
from accord_testing import TEST_KDF_COST, eventually

PASS = "test passphrase"


def test_push_delivers_and_acknowledges(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    token = bob._token(False)

    def bob_queue() -> list[object]:
        envelopes: list[object] = httpx.get(
            server.url + "/v1/messages", headers={"Authorization": f"Bearer {token}"}
        ).json()["envelopes"]
        return envelopes

    try:
        alice.send(bob.account_name, "queued before connecting")
        assert len(bob_queue()) == 1
        failures: list[BaseException] = []

        def later() -> None:
            try:
                # bob's socket is open once the queued message was pushed and acknowledged
                eventually(lambda: not bob_queue(), "bob's socket took the queued message")
                for i in range(3):
                    alice.send(bob.account_name, f"pushed {i}")
            except BaseException as exc:  # reported by the test's own thread
                failures.append(exc)

        t = threading.Thread(target=later)
        t.start()
        result = bob.receive_pushed(want=4, timeout_s=30)
        t.join()
        assert failures == []
        assert [m.text for m in result.messages] == ["queued before connecting"] + [
            f"pushed {i}" for i in range(3)
        ]
        # Acknowledged over the socket: the queue is empty now.
        eventually(lambda: bob_queue() == [], "bob's queue is empty")
    finally:
        alice.close()
        bob.close()


def test_push_rejects_bad_token(server):  # type: ignore[no-untyped-def]
    import pytest
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with (
        pytest.raises(InvalidStatus),
        connect(
            server.url.replace("http", "ws") + "/v1/ws",
            additional_headers={"Authorization": "Bearer nope"},
        ) as ws,
    ):
        ws.recv(timeout=5)
