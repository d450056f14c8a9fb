"""The reviewers' audit trail is append-only in the database itself, on SQLite and PostgreSQL,
and its hash chain exposes any rewritten entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError

from accord.server.review import GENESIS_CHAIN, audit_link, verify_audit_chain
from accord.storage.db import make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.storage.schema import review_audit
from accord.wire.reports import AuditEntry


def _check_append_only(url: str) -> None:
    engine = make_engine(url)
    try:
        upgrade_to_head(engine)
        link = audit_link(GENESIS_CHAIN, 1, "rita", "suspend", "r_x", "")
        with engine.begin() as conn:
            conn.execute(
                insert(review_audit).values(
                    at=1, actor="rita", action="suspend", target="r_x", note="", chain=link
                )
            )
        for statement in (
            "UPDATE review_audit SET action = 'dismiss'",
            "DELETE FROM review_audit",
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT action FROM review_audit")).scalar_one() == "suspend"
    finally:
        engine.dispose()


def test_audit_is_append_only_sqlite(tmp_path: Path) -> None:
    _check_append_only(sqlite_url(tmp_path))


@pytest.mark.postgres
def test_audit_is_append_only_postgres(fresh_pg_url: str) -> None:
    _check_append_only(fresh_pg_url)


def _entries(actions: list[str]) -> list[AuditEntry]:
    out, previous = [], GENESIS_CHAIN
    for seq, action in enumerate(actions, start=1):
        previous = audit_link(previous, seq, "rita", action, "r_x", "")
        out.append(
            AuditEntry(
                seq=seq,
                at=seq,
                actor="rita",
                action=action,
                target="r_x",
                note="",
                chain=previous.hex(),
            )
        )
    return out


def test_the_chain_exposes_a_rewritten_or_dropped_entry() -> None:
    entries = _entries(["view_attachment", "suspend", "escalate"])
    assert verify_audit_chain(entries)
    rewritten = [entries[0], entries[1].model_copy(update={"action": "dismiss"}), entries[2]]
    assert not verify_audit_chain(rewritten)
    assert not verify_audit_chain([entries[0], entries[2]])
