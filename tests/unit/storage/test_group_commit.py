"""The SQLite group-commit writer: jobs committed together, each rolled back alone when it fails.

Jobs are submitted back to back so the writer takes several in one transaction; whatever the
batching, a failed job leaves nothing behind and the others' rows are all there.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Column, Connection, Integer, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError

from accord.storage.db import Database, make_engine, sqlite_url

_meta = MetaData()
_rows = Table("rows", _meta, Column("id", Integer, primary_key=True), Column("tag", String(16)))


def _insert(row_id: int, tag: str) -> object:
    def job(conn: Connection) -> int:
        conn.execute(insert(_rows).values(id=row_id, tag=tag))
        return row_id

    return job


def _insert_then_collide(row_id: int) -> object:
    """Writes a row, then fails on a duplicate key: its own row must not survive."""

    def job(conn: Connection) -> int:
        conn.execute(insert(_rows).values(id=row_id, tag="partial"))
        conn.execute(insert(_rows).values(id=1, tag="duplicate"))
        return row_id

    return job


def _nested_then_fail(row_id: int) -> object:
    """Uses a savepoint of its own (as voucher processing does), then fails after it."""

    def job(conn: Connection) -> int:
        with conn.begin_nested():
            conn.execute(insert(_rows).values(id=row_id, tag="nested"))
        raise RuntimeError("refused after the nested savepoint")

    return job


def test_a_failed_job_rolls_back_alone(tmp_path: Path) -> None:
    db = Database(make_engine(sqlite_url(tmp_path)))
    try:
        _meta.create_all(db.engine)
        db.transact(_insert(1, "first"))
        jobs = [
            _insert(2, "ok"),
            _insert_then_collide(3),
            _insert(4, "ok"),
            _nested_then_fail(5),
            _insert(6, "ok"),
        ]
        assert db._writer is not None
        futures = [db._writer.submit_future(job) for job in jobs]  # type: ignore[arg-type]
        assert futures[0].result() == 2
        with pytest.raises(IntegrityError):
            futures[1].result()
        assert futures[2].result() == 4
        with pytest.raises(RuntimeError):
            futures[3].result()
        assert futures[4].result() == 6
        with db.read() as conn:
            stored = {int(i): str(t) for i, t in conn.execute(select(_rows.c.id, _rows.c.tag))}
        assert stored == {1: "first", 2: "ok", 4: "ok", 6: "ok"}
    finally:
        db.dispose()
