"""What a witness remembers: per log (origin), the last checkpoint it cosigned.

`WitnessStateStore` is the interface; `SqliteWitnessStateStore` keeps the state in one SQLite
file (WAL, ``synchronous=FULL``) under a state directory, so it survives restarts. Checking the
old size and recording the new checkpoint happen in one ``BEGIN IMMEDIATE`` transaction, which
serialises concurrent requests (also across processes sharing the directory) and rules out the
roll-back race described in tlog-witness.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from accord.errors import ConfigurationError

T = TypeVar("T")

STATE_FILE_NAME = "witness-state.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cosigned_checkpoints (
    origin TEXT PRIMARY KEY,
    tree_size TEXT NOT NULL,
    root_hash BLOB NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class LogState:
    """The latest checkpoint cosigned for one log."""

    origin: str
    size: int
    root_hash: bytes
    checkpoint: str
    updated_at: int


class StateTransaction(ABC):
    """One atomic read-check-write of a log's state."""

    @abstractmethod
    def current(self) -> LogState | None: ...

    @abstractmethod
    def record(self, size: int, root_hash: bytes, checkpoint: str) -> None: ...


class WitnessStateStore(ABC):
    @abstractmethod
    def update(self, origin: str, step: Callable[[StateTransaction], T]) -> T:
        """Run ``step`` atomically for ``origin``: what it records is committed only if it
        returns; if it raises, nothing changes."""

    @abstractmethod
    def get(self, origin: str) -> LogState | None: ...


class SqliteWitnessStateStore(WitnessStateStore):
    def __init__(self, state_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the state directory: {exc.strerror}") from None
        self.path = state_dir / STATE_FILE_NAME
        self._clock = clock
        self._lock = threading.Lock()
        with self._connect() as conn:
            conn.execute(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    def get(self, origin: str) -> LogState | None:
        with self._connect() as conn:
            return _read(conn, origin)

    def update(self, origin: str, step: Callable[[StateTransaction], T]) -> T:
        with self._lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = step(_SqliteTransaction(conn, origin, self._clock))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result


class _SqliteTransaction(StateTransaction):
    def __init__(self, conn: sqlite3.Connection, origin: str, clock: Callable[[], float]):
        self._conn = conn
        self._origin = origin
        self._clock = clock

    def current(self) -> LogState | None:
        return _read(self._conn, self._origin)

    def record(self, size: int, root_hash: bytes, checkpoint: str) -> None:
        self._conn.execute(
            "INSERT INTO cosigned_checkpoints (origin, tree_size, root_hash, checkpoint, "
            "updated_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE SET "
            "tree_size = excluded.tree_size, root_hash = excluded.root_hash, "
            "checkpoint = excluded.checkpoint, updated_at = excluded.updated_at",
            (self._origin, str(size), root_hash, checkpoint, int(self._clock())),
        )


def _read(conn: sqlite3.Connection, origin: str) -> LogState | None:
    row = conn.execute(
        "SELECT tree_size, root_hash, checkpoint, updated_at FROM cosigned_checkpoints "
        "WHERE origin = ?",
        (origin,),
    ).fetchone()
    if row is None:
        return None
    size, root_hash, checkpoint, updated_at = row
    return LogState(origin, int(size), bytes(root_hash), str(checkpoint), int(updated_at))
