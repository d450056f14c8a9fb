"""Shared by the tests beyond fixtures: the test Argon2id cost, the movable clock, servers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from accord.clock import CLOCK_OFFSET_ENV, OffsetFileClock, write_clock_offset
from accord.primitives.storage_crypto import KdfCost

T = TypeVar("T")

EVENTUALLY_TIMEOUT_S = 60.0
EVENTUALLY_POLL_S = 0.05


def eventually(check: Callable[[], T], what: str, *, timeout_s: float = EVENTUALLY_TIMEOUT_S) -> T:
    """Poll `check` until it returns a true value, and return that value.

    Only for work another process or thread completes on its own (a server's background
    worker, a socket taking its queue, a process starting or cleaning up): time-dependent
    behaviour never waits here, tests move the `TestClock` instead. Bounded: fails naming
    `what` after `timeout_s`, which is a limit for a loaded machine, never a measurement.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        time.sleep(EVENTUALLY_POLL_S)


# A cheap Argon2id for the local stores tests create (the default is RFC 9106's 64 MiB, t=3).
TEST_KDF_COST = KdfCost(time_cost=1, memory_kib=1024, parallelism=1)


class TestClock(OffsetFileClock):
    """The system clock plus an offset that the test moves forward; every server process and
    client that reads the same file (`env`) sees the same time."""

    __test__ = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._moved = 0.0
        write_clock_offset(path, 0.0)

    @property
    def env(self) -> dict[str, str]:
        return {CLOCK_OFFSET_ENV: str(self.path)}

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._moved += seconds
        write_clock_offset(self.path, self._moved)

    def advance_past(self, when_s: float) -> None:
        """Move forward until the clock reads later than `when_s` (a whole second later)."""
        gap = when_s - self.time()
        if gap >= 0:
            self.advance(gap + 1.0)


def start_server(
    data_dir: Path,
    *,
    clock: TestClock,
    db_url: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    from accord.server.process import ServerProcess

    proc = ServerProcess(
        data_dir, db_url=db_url, extra_args=extra_args, env={**clock.env, **(env or {})}
    )
    proc.clock = clock  # type: ignore[attr-defined]
    return proc.start()


class server_database:
    """The database of a `start_server` process, opened beside it as its operator would (to
    look at what it stored, or to change it behind its back): `with server_database(p) as
    engine`."""

    def __init__(self, server: Any) -> None:
        from accord.storage.db import make_engine, sqlite_url

        self.engine = make_engine(server.db_url or sqlite_url(server.data_dir))

    def __enter__(self) -> Any:
        return self.engine

    def __exit__(self, *_exc: object) -> None:
        self.engine.dispose()


SENDER_BACKOFF_S = 0.05


class SendingThread(threading.Thread):
    """Sends numbered messages (`m1`, `m2`, ...) as fast as the server takes them, remembering
    which sends the server acknowledged; a refused or failed send is counted and, after a short
    backoff (a load generator's, not a wait for a result), the next is tried."""

    def __init__(self, client: Any, to: str) -> None:
        super().__init__(daemon=True)
        self.client, self.to = client, to
        self.acked: list[str] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from accord.errors import AccordError

        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self.client.send(self.to, f"m{n}")
            except AccordError:
                self.failed += 1
                self.stop.wait(SENDER_BACKOFF_S)
                continue
            self.acked.append(f"m{n}")
