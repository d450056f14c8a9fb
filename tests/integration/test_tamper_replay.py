"""A flipped bit anywhere in a stored envelope or blob is rejected; replays are shown once.

These are checks made by the receiving client, so they run on one database kind (SQLite), on
one server for the module; each test has its own accounts and touches only their rows.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from accord.client.client import AccordClient
from accord.storage.db import begin_write, make_engine, sqlite_url
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"
ACCOUNT_DEVICES = (
    "SELECT d.id FROM devices d JOIN accounts a ON a.id = d.account_id WHERE a.name = :account"
)


def _engine(server):  # type: ignore[no-untyped-def]
    return make_engine(server.db_url or sqlite_url(server.data_dir))


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index % len(b)] ^= 1 << (index % 8)
    return bytes(b)


def _blob_files(server) -> set[Path]:  # type: ignore[no-untyped-def]
    root = server.data_dir / "blobs"
    return {p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp"}


@pytest.fixture
def pair(sqlite_server, tmp_path, unique):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(
        tmp_path / "a",
        sqlite_server.url,
        unique("alice"),
        PASS,
        kdf_cost=TEST_KDF_COST,
        insecure_dev=True,
    )
    bob = AccordClient.create_account(
        tmp_path / "b",
        sqlite_server.url,
        unique("bob"),
        PASS,
        kdf_cost=TEST_KDF_COST,
        insecure_dev=True,
    )
    yield alice, bob
    alice.close()
    bob.close()


@pytest.fixture
def server(sqlite_server):  # type: ignore[no-untyped-def]
    return sqlite_server


@pytest.mark.parametrize("where", [0, 1, 17, 40, 99, -1])
def test_flipped_bit_in_olm_envelope(server, pair, where):  # type: ignore[no-untyped-def]
    alice, bob = pair
    alice.send(bob.account_name, "first")  # opens the session (pre-key message)
    assert [m.text for m in bob.receive().messages] == ["first"]
    alice.send(bob.account_name, "will be corrupted")
    alice.send(bob.account_name, "arrives intact")
    engine = _engine(server)
    with begin_write(engine) as conn:
        row = conn.execute(
            text(
                f"SELECT id, olm_body FROM deliveries WHERE device_pk IN ({ACCOUNT_DEVICES}) "
                "ORDER BY id LIMIT 1"
            ),
            {"account": bob.account_name},
        ).one()
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
    group = f"g-{bob.account_name}"
    alice.create_group(group, [bob.account_name])
    alice.send_group(group, "one")
    alice.send_group(group, "two")
    engine = _engine(server)
    with begin_write(engine) as conn:
        rows = conn.execute(
            text("SELECT id, megolm FROM messages WHERE to_group = :g ORDER BY id"), {"g": group}
        ).all()
        conn.execute(
            text("UPDATE messages SET megolm = :b WHERE id = :i"),
            {"b": _flip(rows[1].megolm, 50), "i": rows[1].id},
        )
    engine.dispose()
    result = bob.receive()
    assert [m.text for m in result.messages] == ["one"]
    assert len(result.rejected) == 1


def test_flipped_bit_in_stored_routing(server, pair, unique):  # type: ignore[no-untyped-def]
    """The server claiming another conversation for a message is caught too."""
    alice, bob = pair
    carol = AccordClient.create_account(
        bob.home.parent / "c",
        server.url,
        unique("carol"),
        PASS,
        kdf_cost=TEST_KDF_COST,
        insecure_dev=True,
    )
    try:
        alice.send(bob.account_name, "hello")
        engine = _engine(server)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE messages SET to_account = :carol WHERE to_account = :bob "
                    f"AND sender_device_pk IN ({ACCOUNT_DEVICES})"
                ),
                {
                    "carol": carol.account_name,
                    "bob": bob.account_name,
                    "account": alice.account_name,
                },
            )
        engine.dispose()
        result = bob.receive()
        assert result.messages == [] and len(result.rejected) == 1
    finally:
        carol.close()


def test_flipped_bit_in_blob(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    alice, bob = pair
    f = tmp_path / "doc.bin"
    f.write_bytes(os.urandom(300_000))
    before = _blob_files(server)
    alice.send(bob.account_name, "with attachment", [f])
    alice.send(bob.account_name, "plain")
    blobs = sorted(_blob_files(server) - before)
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
        group = f"g-{bob.account_name}"
        alice.create_group(group, [bob.account_name])
        alice.send_group(group, "once")
        alice.send_group(group, "twice?")
    else:
        alice.send(bob.account_name, "once")
        alice.send(bob.account_name, "twice?")
    engine = _engine(server)
    mine = {"account": alice.account_name}
    with engine.begin() as conn:
        stored = (
            conn.execute(
                text(f"SELECT * FROM messages WHERE sender_device_pk IN ({ACCOUNT_DEVICES})"),
                mine,
            )
            .mappings()
            .all()
        )
        original = conn.execute(
            text(
                "SELECT device_pk, message_pk, olm_type, olm_body FROM deliveries "
                f"WHERE device_pk IN ({ACCOUNT_DEVICES.replace(':account', ':bob')}) ORDER BY id"
            ),
            {"bob": bob.account_name},
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
    alice.send(bob.account_name, "still works")
    assert [m.text for m in bob.receive().messages] == ["still works"]


def test_attachment_key_commitment_end_to_end(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    """Swapping in another valid blob under the same id is caught by digest and MAC."""
    alice, bob = pair
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"A" * 5000)
    b.write_bytes(b"B" * 5000)
    before = _blob_files(server)
    alice.send(bob.account_name, "a", [a])
    alice.send(bob.account_name, "b", [b])
    blobs = sorted(_blob_files(server) - before, key=lambda p: p.stat().st_mtime_ns)
    first, second = blobs
    first.write_bytes(second.read_bytes())
    result = bob.receive()
    assert [m.text for m in result.messages] == ["b"]
    assert len(result.rejected) == 1
