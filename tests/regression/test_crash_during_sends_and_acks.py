"""Issue 15, acceptance: SIGKILL of the server process while messages are being sent and
acknowledged, on SQLite and on PostgreSQL, then a restart on the same data: every send the
server acknowledged is delivered, each message is shown once, and no delivery the server
acknowledged taking back is handed out again.

Alice sends numbered messages in one thread while Bob receives and acknowledges in another;
Bob's client talks through a spy on its API that writes down which delivery ids each fetch
handed out and which acknowledgements the server confirmed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accord.client.client import AccordClient
from accord.errors import AccordError
from accord_testing import (
    TEST_KDF_COST,
    SendingThread,
    TestClock,
    eventually,
    start_server,
)

PASS = "test passphrase"
pytestmark = pytest.mark.timeout(300)


class AckSpy:
    """Wraps a client's `api.request`: what it does is unchanged, what it saw is kept."""

    def __init__(self, client: AccordClient) -> None:
        self.confirmed: set[int] = set()
        self.redelivered: list[int] = []
        self._lock = threading.Lock()
        self._request = client.api.request
        client.api.request = self  # type: ignore[method-assign]

    def __call__(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self._request(method, path, **kwargs)
        with self._lock:
            if method == "GET" and path == "/v1/messages":
                handed = {int(e["id"]) for e in answer["envelopes"]}
                self.redelivered += sorted(handed & self.confirmed)
            if method == "POST" and path == "/v1/messages/ack":
                self.confirmed |= set(kwargs["json"]["ids"])
        return answer


class ReceivingThread(threading.Thread):
    """Receives as `accord receive` does: fetch and store, then show what was stored and not
    yet shown (a receive cut short by the kill stored messages it never showed)."""

    def __init__(self, client: AccordClient) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.texts: list[str] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.receive_once()

    def receive_once(self) -> None:
        try:
            self.client.receive()
        except AccordError:
            self.failed += 1
            self.stop.wait(0.05)  # a load generator's backoff while the server is down
        for stored in self.client.unshown_messages():
            self.texts.append(stored.message.text)
            self.client.mark_shown(stored)


def test_sigkill_during_sends_and_acks_loses_and_repeats_nothing(
    tmp_path: Path, clock: TestClock, db_url: str | None, unique: Callable[[str], str]
) -> None:
    server = start_server(tmp_path / "server", clock=clock, db_url=db_url)
    try:
        alice = AccordClient.create_account(
            tmp_path / "alice",
            server.url,
            unique("alice"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        bob = AccordClient.create_account(
            tmp_path / "bob",
            server.url,
            unique("bob"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        spy = AckSpy(bob)
        sender, receiver = SendingThread(alice, bob.account_name), ReceivingThread(bob)
        sender.start()
        receiver.start()
        eventually(
            lambda: len(sender.acked) >= 10 and len(spy.confirmed) >= 3,
            "sends and acknowledgements under way",
        )
        server.kill()  # mid-stream: a send or an ack may be committed without its answer
        eventually(lambda: sender.failed >= 1, "a send refused by the killed server")
        server.start()  # the same data, the same address
        before = len(sender.acked), len(spy.confirmed)
        eventually(
            lambda: len(sender.acked) >= before[0] + 10 and len(spy.confirmed) > before[1],
            "sending and acknowledging resume after the restart",
        )
        sender.stop.set()
        sender.join(30)
        eventually(
            lambda: set(sender.acked) <= set(receiver.texts), "every acknowledged send received"
        )
        receiver.stop.set()
        receiver.join(30)
        receiver.receive_once()
        assert len(receiver.texts) == len(set(receiver.texts)), "a message was shown twice"
        assert spy.redelivered == [], "an acknowledged delivery was handed out again"
        assert bob.receive().messages == []
        alice.close()
        bob.close()
    finally:
        server.stop()
