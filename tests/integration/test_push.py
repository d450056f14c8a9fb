"""WebSocket push: messages arrive as they are committed and are deleted once acknowledged."""

from __future__ import annotations

import threading
import time

import httpx

from accord.client.client import AccordClient

PASS = "test passphrase"


def test_push_delivers_and_acknowledges(server, tmp_path):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS)
    bob = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    try:
        alice.send("bob", "queued before connecting")

        def later() -> None:
            time.sleep(1.0)
            for i in range(3):
                alice.send("bob", f"pushed {i}")

        t = threading.Thread(target=later)
        t.start()
        result = bob.receive_pushed(want=4, timeout_s=30)
        t.join()
        assert [m.text for m in result.messages] == ["queued before connecting"] + [
            f"pushed {i}" for i in range(3)
        ]
        # Acknowledged over the socket: the queue is empty now.
        deadline = time.monotonic() + 10
        token = bob._token(False)
        while time.monotonic() < deadline:
            queue = httpx.get(
                server.url + "/v1/messages", headers={"Authorization": f"Bearer {token}"}
            ).json()["envelopes"]
            if not queue:
                break
            time.sleep(0.1)
        assert queue == []
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
