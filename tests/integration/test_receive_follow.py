"""`accord receive --follow`: live messages, a reconnect after a server restart, and a clean
stop on SIGTERM and Ctrl-C with nothing lost or shown twice.

The follower is the real command in a child process (signals are the point); the server is this
module's own, because the test restarts it.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from accord.client.client import AccordClient
from accord_testing import PASS, TEST_KDF_COST, eventually, start_server


class _Follower:
    """`accord receive --follow --json` in a child process, its output read line by line."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "accord", "--home", str(home), "receive", "--follow", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "ACCORD_PASSPHRASE": PASS, **env},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.texts: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, count: int) -> list[str]:
        def enough() -> bool:
            while not self.lines.empty():
                self.texts.append(json.loads(self.lines.get())["text"])
            return len(self.texts) >= count

        eventually(enough, f"{count} messages printed by receive --follow")
        return self.texts

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=60)
        self.wait_for(len(self.texts))
        return code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_follow_prints_live_reconnects_and_stops_cleanly(  # type: ignore[no-untyped-def]
    tmp_path, module_clock, unique, sig, cli
):
    server = start_server(tmp_path / "server", clock=module_clock)
    bob = cli("bob")
    bob_home = bob.home
    alice: Any = None
    follower = None
    try:
        bob_name = unique("bob")
        bob.run("account", "create", bob_name, "--server", server.url)
        alice = AccordClient.create_account(
            tmp_path / "alice",
            server.url,
            unique("alice"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        alice.send(bob_name, "queued before")
        follower = _Follower(bob_home, module_clock.env)
        assert follower.wait_for(1) == ["queued before"]
        alice.send(bob_name, "live")
        assert follower.wait_for(2)[-1] == "live"
        server.stop()
        server.start()  # the same port: the follower reconnects by itself
        alice.send(bob_name, "after the restart")
        assert follower.wait_for(3)[-1] == "after the restart"
        assert follower.stop(sig) == 0
        assert follower.texts == ["queued before", "live", "after the restart"]
        # Nothing was acknowledged unshown, nothing is shown twice.
        again = bob.run("receive", "--json")
        assert again.stdout == ""
    finally:
        if follower is not None and follower.proc.poll() is None:
            follower.proc.kill()
        if alice is not None:
            alice.close()
        server.stop()
