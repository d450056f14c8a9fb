"""The lawful-access flow through the client library, on SQLite and PostgreSQL: what is sent and
received by the target inside the window reaches the agency, in order, and nothing else; the
server keeps delivery metadata for the target in the window only; after the window the device
stops; after the disclosure time the target is told, and the audit recomputes it all."""

from __future__ import annotations

from pathlib import Path

from lawful_access_world import Authorities, account, server_db
from sqlalchemy import func, select

from accord.client.audit import audit_log
from accord.client.authority import public_report
from accord.protocols.access.records import Direction
from accord.server.process import ServerProcess
from accord.storage.schema import access_delivery_metadata
from accord_testing import eventually

WINDOW_S = 600  # the test moves the clock past its end


def test_interception_window_disclosure_and_audit(server: ServerProcess, tmp_path: Path) -> None:
    auth = Authorities.make(tmp_path / "authorities", server.clock)  # type: ignore[attr-defined]
    auth.publish(server)
    auth.register(server)
    alice = account(tmp_path, server, "alice")
    bob = account(tmp_path, server, "bob")
    carol = account(tmp_path, server, "carol")
    try:
        alice.create_group("trip", ["bob"])
        alice.send("bob", "before the window")
        bob.send("carol", "not about alice")
        bob.receive()
        carol.receive()

        auth.clock.advance(1.0)  # the window starts on a later second: nothing before is in it
        start = auth.now()
        end = start + WINDOW_S
        signed = auth.warrant("alice", start=start, end=end, disclose_after_s=0)
        wid = auth.submit(server, signed).warrant_id
        alice.receive()  # the sync that delivers the warrant
        assert [w.warrant_id.hex() for w in alice.access.active_warrants()] == [wid]

        alice.send("bob", "one")
        bob.send("alice", "two")
        assert [m.text for m in alice.receive().messages] == ["two"]
        alice.send_group("trip", "three")
        bob.send("carol", "still not about alice")
        assert [m.text for m in bob.receive().messages] == ["one", "three"]

        auth.wait_until(end)
        alice.send("bob", "after the window")
        bob.send("alice", "after the window too")
        shown = alice.receive().notices  # each notice is shown once, whenever it comes
        assert alice.access.active_warrants() == []

        result = auth.fetch(server, wid, with_metadata=True)
        assert not result.problems and not result.gaps
        got = [(r.seq, r.direction, r.plaintext) for r in result.records]
        assert got == [
            (0, Direction.SENT, b"one"),
            (1, Direction.RECEIVED, b"two"),
            (2, Direction.SENT, b"three"),
        ]
        assert [r.metadata["recipients"] for r in result.records] == [  # type: ignore[index]
            ["bob"],
            ["alice"],
            ["bob"],
        ]
        assert all(start <= r.occurred_at < end for r in result.records)
        meta = [(m.direction, m.counterpart) for m in result.metadata]
        assert meta == [("sent", "bob"), ("received", "bob"), ("sent", "bob")]
        assert all(start * 1000 <= m.at < end * 1000 and m.size > 0 for m in result.metadata)
        with server_db(server) as conn:  # no delivery history beyond the warrant's
            rows = conn.execute(
                select(func.count()).select_from(access_delivery_metadata)
            ).scalar_one()
        assert rows == 3

        # Disclosure (due at the end) and the final record count (a second after it).
        # The server's housekeeping publishes them on its next round (clock already past).
        notices = [n for n in shown if "lawful-access disclosure" in n] or eventually(
            lambda: [n for n in alice.receive().notices if "lawful-access disclosure" in n],
            "the disclosure notice",
        )
        assert len(notices) == 1
        assert "scope: content, metadata" in notices[0] and "judge" in notices[0]
        assert not [n for n in bob.receive().notices if "lawful-access" in n]

        eventually(
            lambda: public_report(server.url, clock=auth.clock).total_records,
            "the final record count in the log",
        )
        report = audit_log(server.url, tmp_path / "auditor", clock=auth.clock).access
        assert report is not None and report.invalid_entries == ()
        assert (report.active, report.upcoming, report.past) == (0, 0, 1)
        [w] = report.warrants
        assert w.disclosed and not w.disclosure_overdue and w.duration_s == WINDOW_S
        assert w.approver_ids == ("commissioner", "judge")
        assert w.record_count == 3 and report.total_records == 3
    finally:
        for client in (alice, bob, carol):
            client.close()
