"""The store-key agent (`accord agent`, docs/key-agent.md) with real agent processes: commands
run on its key exactly as on the passphrase, its socket is the user's alone, it forgets the key
after its idle timeout (on a moved clock) or when stopped, and the key never reaches the disk."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from pathlib import Path
from typing import Any

from accord.client.key_agent import (
    AgentReply,
    AgentRequest,
    KeyAgent,
    agent_store_key,
    ask_agent,
    socket_path,
)
from accord.client.store import LocalStore
from accord.clock import SYSTEM_CLOCK
from accord.primitives.encoding import b64encode
from accord.primitives.storage_crypto import StoreKey
from accord_testing import (
    PASS,
    TEST_KDF_COST,
    Cli,
    TestClock,
    eventually,
    modules_loaded,
    within,
)

NO_PASSPHRASE = {"ACCORD_PASSPHRASE": ""}
HEAVY_FOR_A_TEXT = (
    "numpy",
    "PIL",
    "rbcl",
    "sqlalchemy",
    "fastapi",
    "rich",
    "accord.server",
    "accord.protocols.detection",
    "accord.protocols.private_matching.log_entries",
)
# With no warrant active on the device, a send reads the lawful-access state without the
# warrant, approver, agency and record modules (they load as soon as there is one); it files no
# report either.
NOT_FOR_A_TEXT_WITHOUT_WARRANT = (
    "accord.client.access",
    "accord.client.disclosures",
    "accord.protocols.access.log_entries",
    "accord.protocols.access.warrant",
    "accord.protocols.access.approvers",
    "accord.protocols.access.agency",
    "accord.protocols.access.records",
    "accord.protocols.access.audit",
    "pyhpke",
    "accord.wire.reports",
)


def _store_key(home: Path) -> StoreKey:
    store = LocalStore(home)
    try:
        store.unlock(PASS)
        assert store.store_key is not None
        return store.store_key
    finally:
        store.close()


def _new_store(home: Path) -> None:
    """A home holding only its unlocking parameters: all the agent needs."""
    store = LocalStore(home)
    try:
        store.initialise(PASS, TEST_KDF_COST)
    finally:
        store.close()


def _files_containing(root: Path, needles: list[bytes]) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if any(n in data for n in needles):
                found.append(path)
    return found


def test_commands_run_on_the_agents_key_as_on_the_passphrase(  # type: ignore[no-untyped-def]
    sqlite_server, cli, module_clock, unique
):
    a, b = unique("alice"), unique("bob")
    alice, bob = cli("alice"), cli("bob")
    for c, name in ((alice, a), (bob, b)):
        c.run("account", "create", name, "--server", sqlite_server.url)
    without_passphrase = Cli(alice.home, env={**module_clock.env, **NO_PASSPHRASE})

    on_passphrase = alice.run("send", b, "sent on the passphrase")
    refused = without_passphrase.run("send", b, "no key", check=False)
    assert refused.returncode == 2 and "ACCORD_PASSPHRASE" in refused.stderr

    started = alice.run("agent", "start", "--timeout", "5m")
    try:
        assert "exits after 5m unused" in started.stdout
        sock = socket_path(alice.home)
        assert stat.S_ISSOCK(sock.stat().st_mode)
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert "agent running for" in alice.run("agent", "status").stdout
        again = alice.run("agent", "start")
        assert "already holds the key" in again.stdout

        on_agent = without_passphrase.run("send", b, "sent on the agent's key")
        # Identical output either way: the message id, and the same warning on stderr.
        for result in (on_passphrase, on_agent):
            (message_id,) = result.stdout.split()
            assert len(message_id) == 22
        assert on_agent.stderr == on_passphrase.stderr
        received = [
            json.loads(line) for line in bob.run("receive", "--json").stdout.split("\n") if line
        ]
        assert [m["text"] for m in received] == [
            "sent on the passphrase",
            "sent on the agent's key",
        ]
        assert "sent on the agent's key" in without_passphrase.run("history", b).stdout
    finally:
        stopped = alice.run("agent", "stop")
    assert "stopped" in stopped.stdout
    eventually(lambda: not sock.exists(), "the agent removes its socket")
    assert without_passphrase.run("send", b, "no agent now", check=False).returncode == 2
    assert "no agent" in alice.run("agent", "status", check=False).stdout

    key = _store_key(alice.home).value
    assert _files_containing(alice.home, [key, b64encode(key).encode()]) == []


def test_a_command_that_asked_for_the_passphrase_starts_the_agent_when_asked(  # type: ignore[no-untyped-def]
    sqlite_server, cli, module_clock, unique
):
    """ACCORD_AGENT=1: the first command unlocks with the passphrase and leaves the key with a
    new agent; the next runs without the passphrase. A text send loads no image, matching or
    server code, and on a device with no warrant no lawful-access protocol module."""
    a, b = unique("alice"), unique("bob")
    alice, bob = cli("alice"), cli("bob")
    for c, name in ((alice, a), (bob, b)):
        c.run("account", "create", name, "--server", sqlite_server.url)
    env = {**module_clock.env, "ACCORD_PASSPHRASE": PASS, "ACCORD_AGENT": "1"}
    try:
        _, loaded = modules_loaded(["--home", str(alice.home), "send", b, "first"], env)
        assert within(loaded, HEAVY_FOR_A_TEXT) == []
        assert within(loaded, NOT_FOR_A_TEXT_WITHOUT_WARRANT) == []
        assert agent_store_key(alice.home) == _store_key(alice.home)
        _, loaded = modules_loaded(
            ["--home", str(alice.home), "send", b, "second"], {**module_clock.env, **NO_PASSPHRASE}
        )
        assert within(loaded, (*HEAVY_FOR_A_TEXT, *NOT_FOR_A_TEXT_WITHOUT_WARRANT)) == []
    finally:
        alice.run("agent", "stop")
    assert [
        json.loads(line)["text"]
        for line in bob.run("receive", "--json").stdout.splitlines()
        if line
    ] == ["first", "second"]


def test_the_agent_forgets_the_key_after_its_idle_timeout(tmp_path: Path) -> None:
    clock = TestClock(tmp_path / "clock")
    home = tmp_path / "home"
    _new_store(home)
    user = Cli(home, env=clock.env)
    user.run("agent", "start", "--timeout", "60s")
    try:
        key = _store_key(home)
        clock.advance(40)
        assert agent_store_key(home) == key  # a use restarts the idle time
        clock.advance(40)
        assert agent_store_key(home) == key
        clock.advance(61)
        # Asked before its next look at the clock it refuses; after that it is gone: either way
        # it hands out no key.
        assert ask_agent(home, AgentRequest.STATUS) in (None, AgentReply(ok=False, value="expired"))
        eventually(lambda: not socket_path(home).exists(), "the expired agent exits")
        assert agent_store_key(home) is None
    finally:
        user.run("agent", "stop")


def test_a_stale_agent_key_falls_back_to_the_passphrase(tmp_path: Path) -> None:
    """An agent still holding the key of a store that was made again since: the command asks
    for the passphrase as if no agent ran."""
    home = tmp_path / "home"
    _new_store(home)
    user = Cli(home)
    user.run("agent", "start")
    try:
        for suffix in ("", "-wal", "-shm"):
            (home / f"accord.db{suffix}").unlink(missing_ok=True)
        _new_store(home)
        assert agent_store_key(home) != _store_key(home)
        from accord.cli.messaging import _client_from_agent

        assert _client_from_agent(home) is None
    finally:
        user.run("agent", "stop")


def test_another_users_process_gets_no_answer(tmp_path: Path) -> None:
    """The agent checks its peer's uid (SO_PEERCRED): here it serves another uid than the test
    runs as, so the test's process is that other user and gets nothing."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    agent = KeyAgent(
        home, StoreKey(bytes(32)), idle_timeout_s=60, clock=SYSTEM_CLOCK, owner_uid=os.getuid() + 1
    )
    replies: list[Any] = []
    try:
        asking = threading.Thread(target=lambda: replies.append(ask_agent(home, AgentRequest.KEY)))
        asking.start()
        assert agent.answer_next(30)
        asking.join(timeout=30)
        assert replies == [None]
    finally:
        agent.close()
    assert not socket_path(home).exists()


def test_only_the_owner_can_reach_the_socket(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    agent = KeyAgent(home, StoreKey(bytes(32)), idle_timeout_s=60, clock=SYSTEM_CLOCK)
    try:
        if os.getuid() != 0:
            return  # another uid is needed to knock; the modes are checked above
        pid = os.fork()
        if pid == 0:  # the child becomes "nobody" and tries the socket
            code = 1
            try:
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(os.fspath(socket_path(home)))
            except PermissionError:
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        agent.close()


def test_a_later_agent_takes_over_and_the_earlier_one_leaves_its_socket(tmp_path: Path) -> None:
    """A second agent for the same home (the first one's key went stale, say) binds the socket
    anew; the first one sees that it is no longer reachable, exits, and removes nothing."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    first = KeyAgent(home, StoreKey(bytes(32)), idle_timeout_s=60, clock=SYSTEM_CLOCK)
    second = KeyAgent(home, StoreKey(bytes([7]) * 32), idle_timeout_s=60, clock=SYSTEM_CLOCK)
    try:
        assert first.done() and not second.done()
        first.close()
        assert socket_path(home).exists()
        replies: list[Any] = []
        asking = threading.Thread(target=lambda: replies.append(agent_store_key(home)))
        asking.start()
        assert second.answer_next(30)
        asking.join(timeout=30)
        assert replies == [StoreKey(bytes([7]) * 32)]
    finally:
        second.close()
    assert not socket_path(home).exists()
