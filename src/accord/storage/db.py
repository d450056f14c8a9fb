"""Database engines: embedded SQLite by default, PostgreSQL for scale.

SQLite runs in WAL mode with `synchronous=FULL`, so a committed transaction survives a crash of
the process and of the machine; write transactions take the lock up front (`BEGIN IMMEDIATE`)
and are serialised in-process, so they never fail half-way with "database is locked".
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from anyio import CapacityLimiter, to_thread
from sqlalchemy import Connection, CursorResult, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from accord.errors import ConfigurationError

SQLITE_BUSY_TIMEOUT_S = 30
MAX_GROUP_COMMIT = 256
_SAVEPOINT = "SAVEPOINT accord_job"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT accord_job"
_RELEASE_SAVEPOINT = "RELEASE SAVEPOINT accord_job"

T = TypeVar("T")
PG_WORKER_THREADS = 32
_PG_LIMITER: list[CapacityLimiter] = []


def _pg_limiter() -> CapacityLimiter:
    """Worker threads for PostgreSQL calls (one per pooled connection, at most)."""
    if not _PG_LIMITER:
        _PG_LIMITER.append(CapacityLimiter(PG_WORKER_THREADS))
    return _PG_LIMITER[0]


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an `INSERT` of one row added."""
    key = result.inserted_primary_key
    if key is None:
        raise TypeError("not the result of an INSERT of one row")
    return int(key[0])


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
            max_overflow=8,
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
        try:
            return create_engine(
                parsed, pool_size=PG_WORKER_THREADS, max_overflow=8, pool_pre_ping=True
            )
        except ImportError:
            raise ConfigurationError(
                "PostgreSQL needs the 'postgres' extra: pip install 'accord[postgres]'"
            ) from None
    raise ConfigurationError(f"unsupported database backend {backend!r}")


@contextmanager
def begin_write(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its first statement (``BEGIN IMMEDIATE``
    on SQLite). A plain transaction that reads and then writes fails at once with "database
    is locked" if another process committed to the same file in between (its snapshot is
    stale, so SQLite cannot wait); this one waits its turn instead."""
    with engine.connect().execution_options(accord_write=True) as conn, conn.begin():
        yield conn


class GroupCommitWriter:
    """One writer thread that commits many small write transactions with one fsync.

    Each job runs in its own SAVEPOINT inside a shared transaction, so a job that fails rolls
    back alone; the callers are answered only after the shared COMMIT returned, so an
    acknowledged write is durable. On SQLite every commit is an fsync (about 3 ms here), and
    one writer at a time is all SQLite allows: batching is what lets it keep up with load.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[tuple[Callable[[Connection], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, job: Callable[[Connection], T]) -> T:
        return self.submit_future(job).result()

    def submit_future(self, job: Callable[[Connection], T]) -> Future[T]:
        with self._lock:  # started on first use, and again after close()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="accord-writer", daemon=True
                )
                self._thread.start()
            future: Future[T] = Future()
            self._queue.put((job, future))
        return future

    def close(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < MAX_GROUP_COMMIT:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[tuple[Callable[[Connection], Any], Future[Any]]]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self.engine.connect().execution_options(accord_write=True) as conn:
                with conn.begin():
                    # The savepoint is issued on the driver's connection: one fixed name, not
                    # a statement SQLAlchemy names and compiles afresh for every job.
                    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    for job, future in batch:
                        cursor.execute(_SAVEPOINT)
                        try:
                            result = job(conn)
                        except BaseException as exc:  # handed to the caller below
                            cursor.execute(_ROLLBACK_TO_SAVEPOINT)
                            cursor.execute(_RELEASE_SAVEPOINT)
                            outcomes.append((future, None, exc))
                        else:
                            cursor.execute(_RELEASE_SAVEPOINT)
                            outcomes.append((future, result, None))
                    cursor.close()
        except BaseException as exc:  # the shared commit failed: nobody's write happened
            for _job, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)


class Database:
    """An engine plus the two kinds of transaction the services use."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._writer = GroupCommitWriter(engine) if self.is_sqlite else None

    def transact(self, job: Callable[[Connection], T]) -> T:
        """Run `job` in a write transaction; return only after it committed durably.

        On SQLite jobs are group-committed by one writer thread; on PostgreSQL each runs in
        its own transaction (PostgreSQL groups concurrent commits itself).
        """
        if self._writer is not None:
            return self._writer.submit(job)
        with self.engine.connect() as conn, conn.begin():
            return job(conn)

    async def transact_async(self, job: Callable[[Connection], T]) -> T:
        """`transact` for the event loop: waits for the commit without holding a thread."""
        if self._writer is not None:
            return await asyncio.wrap_future(self._writer.submit_future(job))
        return await to_thread.run_sync(self.transact, job, limiter=_pg_limiter())

    async def read_async(self, job: Callable[[Connection], T]) -> T:
        """Run a read-only `job`. SQLite reads are short local calls, run on the event loop
        itself (handing them to threads costs more in lock traffic than they take);
        PostgreSQL reads wait on the network, so they go to worker threads."""
        if self.is_sqlite:
            return self._read(job)
        return await to_thread.run_sync(self._read, job, limiter=_pg_limiter())

    def _read(self, job: Callable[[Connection], T]) -> T:
        with self.read() as conn:
            return job(conn)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(accord_write=False) as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self.engine.dispose()
