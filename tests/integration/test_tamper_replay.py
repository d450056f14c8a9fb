"""A flipped bit anywhere in a stored envelope or blob is rejected; replays are shown once."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import text

from accord.client.client import AccordClient
from accord.storage.db import make_engine, sqlite_url

PASS = "test passphrase"


def _engine(server):  # type: ignore[no-untyped-def]
    return make_engine(server.db_url or sqlite_url(server.data_dir))


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index % len(b)] ^= 1 << (index % 8)
    return bytes(b)


@pytest.fixture
def pair(server, tmp_path):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS)
    bob = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    yield alice, bob
    alice.close()
    bob.close()


@pytest.mark.parametrize("where", [0, 1, 17, 40, 99, -1])
def test_flipped_bit_in_olm_envelope(server, pair, where):  # type: ignore[no-untyped-def]
    alice, bob = pair
    alice.send("bob", "first")  # opens the session (pre-key message)
    assert [m.text for m in bob.receive().messages] == ["first"]
    alice.send("bob", "will be corrupted")
    alice.send("bob", "arrives intact")
    engine = _engine(server)
    with engine.begin() as conn:
        row = conn.execute(text("SELECT id, olm_body FROM deliveries ORDER BY id LIMIT 1")).one()
        conn.execute(
            text("UPDATE deliveries SET olm_body = :b WHERE id = :i"),
            {"b": _flip(row.olm_body, where if where >= 0 else len(row.olm_body) - 1), "i": row.id},
        )
    engine.dispose()
    result = bob.receive()
    assert [m.text for m in result.messages] == ["arrives intact"]
    assert len(result.rejected) == 1 and "rejected" in result.rejected[0]
    assert "will be corrupted" not in result.rejected[0]


def test_flipped_bit_in_group_ciphertext(server, pair):  # type: ignore[no-untyped-def]
    alice, bob = pair
    alice.create_group("g", ["bob"])
    alice.send_group("g", "one")
    alice.send_group("g", "two")
    engine = _engine(server)
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT id, megolm FROM messages ORDER BY id")).all()
        conn.execute(
            text("UPDATE messages SET megolm = :b WHERE id = :i"),
            {"b": _flip(rows[1].megolm, 50), "i": rows[1].id},
        )
    engine.dispose()
    result = bob.receive()
    assert [m.text for m in result.messages] == ["one"]
    assert len(result.rejected) == 1


def test_flipped_bit_in_stored_routing(server, pair):  # type: ignore[no-untyped-def]
    """The server claiming another conversation for a message is caught too."""
    alice, bob = pair
    carol = AccordClient.create_account(bob.home.parent / "c", server.url, "carol", PASS)
    try:
        alice.send("bob", "hello")
        engine = _engine(server)
        with engine.begin() as conn:
            conn.execute(text("UPDATE messages SET to_account = 'carol'"))
        engine.dispose()
        result = bob.receive()
        assert result.messages == [] and len(result.rejected) == 1
    finally:
        carol.close()


def test_flipped_bit_in_blob(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    alice, bob = pair
    f = tmp_path / "doc.bin"
    f.write_bytes(os.urandom(300_000))
    alice.send("bob", "with attachment", [f])
    alice.send("bob", "plain")
    blobs = [
        p for p in (server.data_dir / "blobs").rglob("*") if p.is_file() and p.parent.name != "tmp"
    ]
    assert len(blobs) == 1
    blobs[0].write_bytes(_flip(blobs[0].read_bytes(), 123_457))
    result = bob.receive()
    assert [m.text for m in result.messages] == ["plain"]
    assert len(result.rejected) == 1 and "attachment" in result.rejected[0]
    assert not any((bob.home / "attachments").rglob("doc.bin"))


@pytest.mark.parametrize("kind", ["direct", "group"])
def test_replayed_envelope_is_not_shown_twice(server, pair, kind):  # type: ignore[no-untyped-def]
    alice, bob = pair
    if kind == "group":
        alice.create_group("g", ["bob"])
        alice.send_group("g", "once")
        alice.send_group("g", "twice?")
    else:
        alice.send("bob", "once")
        alice.send("bob", "twice?")
    engine = _engine(server)
    with engine.begin() as conn:
        stored = conn.execute(text("SELECT * FROM messages ORDER BY id")).mappings().all()
        original = conn.execute(
            text("SELECT device_pk, message_pk, olm_type, olm_body FROM deliveries ORDER BY id")
        ).all()
    assert [m.text for m in bob.receive().messages] == ["once", "twice?"]
    # The server re-queues both old envelopes (and the same one again) as new deliveries.
    with engine.begin() as conn:
        for row in stored:
            cols = ", ".join(row)
            params = ", ".join(f":{k}" for k in row)
            conn.execute(text(f"INSERT INTO messages ({cols}) VALUES ({params})"), dict(row))
        for row in original + original[-1:]:
            conn.execute(
                text(
                    "INSERT INTO deliveries (device_pk, message_pk, olm_type, olm_body) "
                    "VALUES (:d, :m, :t, :b)"
                ),
                {"d": row.device_pk, "m": row.message_pk, "t": row.olm_type, "b": row.olm_body},
            )
    engine.dispose()
    result = bob.receive()
    assert result.messages == []
    assert len(result.rejected) == 3
    alice.send("bob", "still works")
    assert [m.text for m in bob.receive().messages] == ["still works"]


def test_attachment_key_commitment_end_to_end(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    """Swapping in another valid blob under the same id is caught by digest and MAC."""
    alice, bob = pair
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"A" * 5000)
    b.write_bytes(b"B" * 5000)
    alice.send("bob", "a", [a])
    alice.send("bob", "b", [b])
    blobs = sorted(
        (
            p
            for p in (server.data_dir / "blobs").rglob("*")
            if p.is_file() and p.parent.name != "tmp"
        ),
        key=lambda p: p.stat().st_mtime_ns,
    )
    first, second = blobs
    first.write_bytes(second.read_bytes())
    result = bob.receive()
    assert [m.text for m in result.messages] == ["b"]
    assert len(result.rejected) == 1
