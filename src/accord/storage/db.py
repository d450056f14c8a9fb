"""Database engines: embedded SQLite by default, PostgreSQL for scale.

SQLite runs in WAL mode with `synchronous=FULL`, so a committed transaction survives a crash of
the process and of the machine; write transactions take the lock up front (`BEGIN IMMEDIATE`)
and are serialised in-process, so they never fail half-way with "database is locked".
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from accord.errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_S = 30


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'accord.db').resolve()}"


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError("unrecognised database URL") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            pool_size=8,
            max_overflow=16,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("accord_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        return create_engine(parsed, pool_size=10, max_overflow=20, pool_pre_ping=True)
    raise ConfigurationError(f"unsupported database backend {backend!r}")


class Database:
    """An engine plus the two kinds of transaction the services use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock() if self.is_sqlite else None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that commits (durably) on leaving the block, or rolls back."""
        if self._write_lock is not None:
            with self._write_lock, self._begin(write=True) as conn:
                yield conn
        else:
            with self._begin(write=True) as conn:
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self._begin(write=False) as conn:
            yield conn

    @contextmanager
    def _begin(self, *, write: bool) -> Iterator[Connection]:
        with self.engine.connect().execution_options(accord_write=write) as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
