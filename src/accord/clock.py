"""Time, injectable: every reading of the wall or monotonic clock in Accord goes through a Clock.

Warrant windows, disclosure dates, franking key periods, token lifetimes and rate-limit buckets
all depend on the time. Code takes a `Clock` (default `SYSTEM_CLOCK`) so that tests move time
instead of sleeping:
- `ManualClock` for code running in the test's own process;
- `OffsetFileClock` for a server or CLI process started by a test: the process reads an offset
  in seconds from a file the test writes (`ACCORD_CLOCK_OFFSET_FILE`), so the test can jump its
  clock forward. A process running on such a clock says so in its log at start.

Nothing here is trusted across parties: clients never take the server's time for a check that
protects them, and an operator could set its machine's clock anyway.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Protocol

CLOCK_OFFSET_ENV = "ACCORD_CLOCK_OFFSET_FILE"
MAX_OFFSET_FILE_BYTES = 64


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for intervals and deadlines)."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK: Clock = SystemClock()


class ManualClock:
    """A clock that moves only when told to; both readings advance together."""

    def __init__(self, start_s: float = 1_800_000_000.0) -> None:
        self._now = float(start_s)
        self._mono = 1_000.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += seconds
            self._mono += seconds

    def set(self, now_s: float) -> None:
        """Jump the wall clock forward to `now_s` (the monotonic clock follows)."""
        self.advance(max(0.0, now_s - self.time()))


class OffsetFileClock:
    """The system clock plus an offset in seconds read from a file (re-read when it changes).

    A missing or empty file means no offset. Offsets only add: a test moves time forward.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._offset = 0.0

    def offset(self) -> float:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return 0.0
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._offset = _read_offset(self.path)
                self._stamp = stamp
            return self._offset

    def time(self) -> float:
        return time.time() + self.offset()

    def monotonic(self) -> float:
        return time.monotonic() + self.offset()


def _read_offset(path: Path) -> float:
    with path.open("rb") as f:
        raw = f.read(MAX_OFFSET_FILE_BYTES + 1)
    text = raw.decode("ascii", "replace").strip()
    if not text or len(raw) > MAX_OFFSET_FILE_BYTES:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if value >= 0 and value == value and value != float("inf") else 0.0


def write_clock_offset(path: Path, offset_s: float) -> None:
    """Set the offset an `OffsetFileClock` reads (atomically: readers see old or new)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(repr(float(offset_s)))
    os.replace(tmp, path)


def clock_from_env() -> Clock:
    """`OffsetFileClock` when `ACCORD_CLOCK_OFFSET_FILE` is set, else the system clock."""
    where = os.environ.get(CLOCK_OFFSET_ENV)
    return OffsetFileClock(Path(where)) if where else SYSTEM_CLOCK


def now_s(clock: Clock = SYSTEM_CLOCK) -> int:
    """Whole seconds since the epoch."""
    return int(clock.time())


def now_ms(clock: Clock = SYSTEM_CLOCK) -> int:
    """Milliseconds since the epoch."""
    return int(clock.time() * 1000)
