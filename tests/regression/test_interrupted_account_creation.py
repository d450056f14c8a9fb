"""Issue 15, finding 6: Ctrl-C (or a kill) during `accord account create` orphaned the name for
good (the server registered it, the client deleted its keys) or wedged the home ("already
holds an account" / "no account").

The real command runs in a child process and talks to the real server through a relay that,
at a chosen request, stops passing the server's answers back: the child is then stuck at that
step of creation, and gets a real SIGINT or SIGKILL. The steps:
- `pinning`: before anything about the device was sent (its first request, the log's info);
- `registered`: the server has registered the account and logged the device (checked in the
  server's database), and its answer never reached the child;
- `publishing`: the answer came, the one-time keys are on their way.
Each time the same command, run again with the same home, finishes the creation, and the
account then sends and receives. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from accord.client.client import AccordClient
from accord.storage.schema import accounts, devices
from accord_testing import TEST_KDF_COST, eventually, server_database

PASS = "test passphrase"
pytestmark = pytest.mark.timeout(300)

# The request at which the relay stops answering, per step of creation.
HOLD_AT = {
    "pinning": b"GET /v1/log/info ",
    "registered": b"POST /v1/accounts ",
    "publishing": b"POST /v1/keys ",
}
RELAY_CHUNK_BYTES = 65536


class HoldingRelay:
    """A TCP relay to the server on a loopback port of its own. Once a request that contains
    `hold_at` has passed, the server's answers on that connection are swallowed (`held` is
    set); `release()` turns every later connection into a plain relay."""

    def __init__(self, target_port: int, hold_at: bytes) -> None:
        self.target_port = target_port
        self.hold_at: bytes | None = hold_at
        self.held = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def release(self) -> None:
        self.hold_at = None

    def close(self) -> None:
        for s in [self._listener, *self._sockets]:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            holding = threading.Event()
            threading.Thread(
                target=self._pump, args=(client, upstream, holding, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, holding, False), daemon=True
            ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, holding: threading.Event, requests: bool
    ) -> None:
        while True:
            try:
                data = src.recv(RELAY_CHUNK_BYTES)
            except OSError:
                return
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if requests and self.hold_at is not None and self.hold_at in data:
                holding.set()
                self.held.set()
            if not requests and holding.is_set():
                continue  # the answer is lost on the way
            try:
                dst.sendall(data)
            except OSError:
                return


def _server_database_account(server: Any, name: str) -> tuple[int | None, ...] | None:
    """What the server's own database holds for account `name`: the log index of each device
    (None: not logged yet), or None without an account. Read as the operator would."""
    with server_database(server) as engine, engine.connect() as conn:
        rows = conn.execute(
            select(devices.c.log_index)
            .join(accounts, accounts.c.id == devices.c.account_id)
            .where(accounts.c.name == name)
        ).all()
        exists = conn.execute(select(accounts.c.id).where(accounts.c.name == name)).first()
    return None if exists is None else tuple(r.log_index for r in rows)


def _accord(home: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The real command in a child process (the process boundary is the point here)."""
    return subprocess.Popen(
        [sys.executable, "-m", "accord", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ACCORD_PASSPHRASE": PASS, **env},
    )


def _run(home: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    child = _accord(home, env, *args)
    out, err = child.communicate(timeout=300)
    return child.returncode, out, err


@pytest.fixture
def peer(server: Any, tmp_path: Path, unique: Callable[[str], str]) -> Iterator[AccordClient]:
    bob = AccordClient.create_account(
        tmp_path / "bob", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    yield bob
    bob.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["sigint", "sigkill"])
@pytest.mark.parametrize("step", list(HOLD_AT))
def test_account_creation_killed_at_each_step_resumes_and_the_account_works(
    server: Any,
    peer: AccordClient,
    module_clock: Any,
    tmp_path: Path,
    unique: Callable[[str], str],
    step: str,
    sig: signal.Signals,
) -> None:
    name, home = unique("alice"), tmp_path / "alice"
    relay = HoldingRelay(server.port, HOLD_AT[step])
    try:
        child = _accord(
            home,
            module_clock.env,
            "account",
            "create",
            name,
            "--server",
            relay.url,
            "--insecure-dev",
        )
        eventually(relay.held.is_set, f"account create stuck at {step}")
        if step == "registered":
            eventually(
                lambda: (_server_database_account(server, name) or (None,))[0] is not None,
                "the server registered and logged the device",
            )
        child.send_signal(sig)
        _out, err = child.communicate(timeout=120)
        assert child.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
        assert "Traceback" not in err
        on_server = _server_database_account(server, name)
        if step == "pinning":
            assert on_server is None, "nothing was sent: nothing registered"
        else:
            assert on_server is not None and on_server[0] is not None

        relay.release()
        env = module_clock.env
        code, out, err = _run(
            home, env, "account", "create", name, "--server", relay.url, "--insecure-dev"
        )
        assert code == 0, err
        assert f"account {name} created" in out
        assert len(_server_database_account(server, name) or ()) == 1, "one device, no orphan"

        assert _run(home, env, "send", peer.account_name, f"hello after {step}")[0] == 0
        assert [m.text for m in peer.receive().messages] == [f"hello after {step}"]
        peer.send(name, "and back")
        code, out, err = _run(home, env, "receive")
        assert code == 0 and "and back" in out, err
    finally:
        relay.close()
