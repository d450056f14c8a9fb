"""Every device registration is in the server's transparency log before the device is used."""

from __future__ import annotations

import json

import httpx

from accord.client.client import AccordClient
from accord.primitives.encoding import b64decode
from accord.protocols.translog import merkle
from accord.protocols.translog.entries import DeviceRegistration, parse_entry
from accord.protocols.translog.note import (
    parse_checkpoint,
    parse_unverified_note,
    parse_vkey,
    verify_note,
)

PASS = "test passphrase"


def test_registrations_are_logged_and_auditable(server, cli, tmp_path):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS)
    phone = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    laptop, code = AccordClient.start_link(tmp_path / "b2", server.url, "bob", PASS)
    phone.approve_device(code)
    try:
        info = httpx.get(server.url + "/v1/log/info").json()
        note = httpx.get(server.url + "/v1/log/checkpoint").text
        verified = verify_note(note, [parse_vkey(info["vkey"])])
        checkpoint = parse_checkpoint(verified.text)
        assert checkpoint.origin == info["origin"] and checkpoint.size == 3

        page = httpx.get(server.url + "/v1/log/entries", params={"start": 0}).json()
        entries = [parse_entry(b64decode(e, max_bytes=65536)) for e in page["entries"]]
        assert all(isinstance(e, DeviceRegistration) for e in entries)
        assert [(e.account, e.device_id) for e in entries] == [
            ("alice", alice.device_id),
            ("bob", phone.device_id),
            ("bob", laptop.device_id),
        ]
        assert entries[2].approver_device_id == phone.device_id
        leaves = [merkle.leaf_hash(b64decode(e, max_bytes=65536)) for e in page["entries"]]
        assert merkle.root_hash(leaves) == checkpoint.root_hash
        proof = httpx.get(
            server.url + "/v1/log/proof/inclusion", params={"index": 1, "size": 3}
        ).json()["proof"]
        merkle.verify_inclusion(
            leaves[1], 1, 3, [b64decode(h, max_bytes=32) for h in proof], checkpoint.root_hash
        )

        auditor = cli("auditor")
        first = json.loads(auditor.run("log", "audit", "--server", server.url, "--json").stdout)
        assert first["size"] == 3 and first["invalid_entries"] == 0
        assert first["counts"] == {"accord.device.registration.v1": 3}
        carol = AccordClient.create_account(tmp_path / "c", server.url, "carol", PASS)
        carol.close()
        second = json.loads(auditor.run("log", "audit", "--server", server.url, "--json").stdout)
        assert second["size"] == 4 and second["previous_size"] == 3
        text = auditor.run("log", "checkpoint", "--server", server.url).stdout
        assert parse_unverified_note(text).text.splitlines()[1] == "4"
    finally:
        for c in (alice, phone, laptop):
            c.close()


def test_unlogged_device_is_never_used(server, tmp_path):  # type: ignore[no-untyped-def]
    """A device row the log does not know (log_index NULL) is invisible to senders."""
    from sqlalchemy import text

    from accord.storage.db import make_engine, sqlite_url

    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS)
    bob = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    try:
        engine = make_engine(server.db_url or sqlite_url(server.data_dir))
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (account_id, device_id, ed25519, curve25519, signature,"
                    " created_at) SELECT account_id, 'GHOST1', ed25519, curve25519, signature,"
                    " created_at FROM devices WHERE device_id = :d"
                ),
                {"d": bob.device_id},
            )
        engine.dispose()
        listing = httpx.get(
            server.url + "/v1/accounts/bob/devices",
            headers={"Authorization": f"Bearer {alice._token(False)}"},
        ).json()
        assert [d["keys"]["device_id"] for d in listing["devices"]] == [bob.device_id]
        alice.send("bob", "only to logged devices")
        assert [m.text for m in bob.receive().messages] == ["only to logged devices"]
    finally:
        alice.close()
        bob.close()


def test_device_with_a_false_log_claim_is_refused(server, tmp_path):  # type: ignore[no-untyped-def]
    """A server that lists a device under someone else's log entry cannot get it used."""
    import pytest
    from sqlalchemy import text

    from accord.errors import VerificationError
    from accord.primitives.olm import DeviceAccount
    from accord.protocols.messaging import approval_payload, device_keys_payload
    from accord.storage.db import make_engine, sqlite_url
    from accord.wire.messaging import DeviceKeys

    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS)
    bob = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    try:
        ghost = DeviceAccount()
        sig = ghost.sign(device_keys_payload("bob", "GHOST1", ghost.ed25519, ghost.curve25519))
        # Even with a valid approval by bob's device (the strongest case for the server),
        # a device whose registration is not in the log is refused.
        ghost_keys = DeviceKeys(
            account="bob",
            device_id="GHOST1",
            ed25519=ghost.ed25519,
            curve25519=ghost.curve25519,
            signature=sig,
        )
        approval = bob.olm.sign(approval_payload(bob.device_id, ghost_keys))
        engine = make_engine(server.db_url or sqlite_url(server.data_dir))
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (account_id, device_id, ed25519, curve25519, signature,"
                    " approver_device_id, approval_signature, created_at, log_index)"
                    " SELECT account_id, 'GHOST1', :ed, :cu, :sig, device_id, :ap,"
                    " created_at + 1, log_index FROM devices WHERE device_id = :d"
                ),
                {
                    "ed": ghost.ed25519,
                    "cu": ghost.curve25519,
                    "sig": sig,
                    "ap": approval,
                    "d": bob.device_id,
                },
            )
        engine.dispose()
        with pytest.raises(VerificationError) as caught:
            alice.send("bob", "must not reach a ghost")
        assert caught.value.code == "unlogged_device"
        received = bob.receive()
        assert received.messages == []
        assert any("GHOST1" in n for n in received.notices)  # bob is told
    finally:
        alice.close()
        bob.close()


def test_log_rollback_or_fork_is_an_error(server, tmp_path):  # type: ignore[no-untyped-def]
    import pytest

    from accord.errors import VerificationError
    from accord.primitives.encoding import b64encode

    alice = AccordClient.create_account(tmp_path / "a", server.url, "alice", PASS)
    bob = AccordClient.create_account(tmp_path / "b", server.url, "bob", PASS)
    try:
        alice.send("bob", "first")  # alice accepts a checkpoint of size 2
        size, _, root = alice.store.get_meta("log_checkpoint").partition(" ")
        assert size == "2"
        # A view larger than anything the server can prove consistent: a rollback now.
        alice.store.set_meta("log_checkpoint", f"99 {root}")
        with pytest.raises(VerificationError):
            alice._refresh_devices(["bob"])
        # Same size, other root: a fork.
        alice.store.set_meta("log_checkpoint", f"2 {b64encode(bytes(32))}")
        with pytest.raises(VerificationError):
            alice._refresh_devices(["bob"])
    finally:
        alice.close()
        bob.close()


def test_owner_is_told_of_a_device_it_did_not_add(server, cli):  # type: ignore[no-untyped-def]
    phone, laptop, tablet = cli("phone"), cli("laptop"), cli("tablet")
    phone.run("account", "create", "bob", "--server", server.url)
    code = laptop.run("device", "link", "bob", "--server", server.url).stdout.strip()
    phone.run("device", "approve", code)
    first = laptop.run("receive")
    assert "warning" not in first.stderr  # the phone was there before the laptop joined
    code = tablet.run("device", "link", "bob", "--server", server.url).stdout.strip()
    laptop.run("device", "approve", code)  # added from the laptop, not from the phone
    warned = phone.run("receive")
    assert "new device" in warned.stderr and warned.stderr.count("new device") == 1
    assert "new device" not in phone.run("receive").stderr  # told once
    assert "new device" not in laptop.run("receive").stderr  # the laptop added it
    listing = phone.run("account", "devices", "--json").stdout.splitlines()
    assert len(listing) == 3
