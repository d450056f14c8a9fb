"""Issue 15, finding 3: a kill or Ctrl-C in the middle of `accord receive` hid messages (8 of
30, 6 of 6): they were stored and acknowledged before they were printed.

Here the real command runs in a child process, its standard output a pipe the test reads one
message at a time, and gets a real SIGINT while a message sits in the pipe unread. What the
reader took before the signal counts as shown; everything else, the message left in the pipe
included, is printed by the next `receive`, each message once; `history` has them all.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from typing import Any

import pytest

from accord_testing import eventually

MESSAGES = 6
READ_BEFORE_SIGNAL = 2
pytestmark = pytest.mark.timeout(300)


def _unread_bytes(fd: int) -> int:
    raw = fcntl.ioctl(fd, termios.FIONREAD, struct.pack("i", 0))
    return int(struct.unpack("i", raw)[0])


def test_sigint_while_receive_prints_hides_nothing(  # type: ignore[no-untyped-def]
    sqlite_server: Any, cli: Callable[[str], Any], unique: Callable[[str], str], module_clock
) -> None:
    a, b = unique("alice"), unique("bob")
    alice, bob = cli("alice"), cli("bob")
    alice.run("account", "create", a, "--server", sqlite_server.url)
    bob.run("account", "create", b, "--server", sqlite_server.url)
    sent = [alice.run("send", b, f"burst {i}").stdout.strip() for i in range(MESSAGES)]

    child = subprocess.Popen(
        [sys.executable, "-m", "accord", "--home", str(bob.home), "receive", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **bob.env, **module_clock.env},
    )
    assert child.stdout is not None
    taken = [json.loads(child.stdout.readline())["id"] for _ in range(READ_BEFORE_SIGNAL)]
    out_fd = child.stdout.fileno()
    eventually(lambda: _unread_bytes(out_fd) > 0, "the next message waiting in the pipe")
    child.send_signal(signal.SIGINT)
    left_in_pipe, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert b"Traceback" not in err
    assert [json.loads(line)["id"] for line in left_in_pipe.splitlines()] == [
        sent[READ_BEFORE_SIGNAL]
    ], "one message was out but never taken"

    rest = [json.loads(line)["id"] for line in bob.run("receive", "--json").stdout.splitlines()]
    assert taken + rest == sent, "each message taken once, none hidden"
    assert bob.run("receive", "--json").stdout == ""
    history = [json.loads(line)["id"] for line in bob.run("history", "--json").stdout.splitlines()]
    assert history == sent
