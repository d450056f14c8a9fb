"""Every device registration is in the server's transparency log before the device is used.

One server per module and database kind, so the log holds the registrations of earlier tests
too: a test compares the log's size before and after its own registrations (tests in a module
run one at a time) and looks at its own entries. The refusals made by the client (a false log
claim, a rollback or fork) run on SQLite only.
"""

from __future__ import annotations

import json
from dataclasses import replace

import httpx
import pytest

from accord.client.client import AccordClient
from accord.primitives.encoding import b64decode
from accord.protocols.translog import merkle
from accord.protocols.translog.entries import DeviceRegistration, MapHead, parse_entry
from accord.protocols.translog.note import (
    parse_checkpoint,
    parse_unverified_note,
    parse_vkey,
    verify_note,
)
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"
# The module's SQLite server (not a third process) for checks where the database kind is moot.
ON_SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _log_size(server) -> int:  # type: ignore[no-untyped-def]
    info = httpx.get(server.url + "/v1/log/info").json()
    note = httpx.get(server.url + "/v1/log/checkpoint").text
    return parse_checkpoint(verify_note(note, [parse_vkey(info["vkey"])]).text).size


def _log_entries(server, start: int, end: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Entries [start, end) of the log, base64 as served, over as many pages as it takes."""
    out: list[str] = []
    while start + len(out) < end:
        page = httpx.get(
            server.url + "/v1/log/entries", params={"start": start + len(out), "end": end}
        ).json()
        assert page["entries"], "the log served no entries before its end"
        out += page["entries"]
    return out


def test_registrations_are_logged_and_auditable(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    before = _log_size(server)  # earlier tests' registrations
    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    phone = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    laptop, code = AccordClient.start_link(
        tmp_path / "b2", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    phone.approve_device(code)
    try:
        info = httpx.get(server.url + "/v1/log/info").json()
        note = httpx.get(server.url + "/v1/log/checkpoint").text
        verified = verify_note(note, [parse_vkey(info["vkey"])])
        checkpoint = parse_checkpoint(verified.text)
        size = checkpoint.size
        assert checkpoint.origin == info["origin"] and size > before

        raw = _log_entries(server, 0, size)
        entries = [parse_entry(b64decode(e, max_bytes=65536)) for e in raw]
        # Each batch ends with a map head (K5); the registrations are in order between them.
        assert isinstance(entries[-1], MapHead)
        assert all(isinstance(e, DeviceRegistration | MapHead) for e in entries)
        mine = [e for e in entries[before:] if isinstance(e, DeviceRegistration)]
        assert [(e.account, e.device_id) for e in mine] == [
            (unique("alice"), alice.device_id),
            (unique("bob"), phone.device_id),
            (unique("bob"), laptop.device_id),
        ]
        assert mine[2].approver_device_id == phone.device_id
        leaves = [merkle.leaf_hash(b64decode(e, max_bytes=65536)) for e in raw]
        assert merkle.root_hash(leaves) == checkpoint.root_hash
        index = entries.index(mine[1])
        proof = httpx.get(
            server.url + "/v1/log/proof/inclusion", params={"index": index, "size": size}
        ).json()["proof"]
        merkle.verify_inclusion(
            leaves[index],
            index,
            size,
            [b64decode(h, max_bytes=32) for h in proof],
            checkpoint.root_hash,
        )

        # A proof at a size the log has not reached is refused, and served once it has.
        inclusion_url = server.url + "/v1/log/proof/inclusion"
        beyond = httpx.get(inclusion_url, params={"index": 0, "size": size + 2})
        assert beyond.status_code == 400

        auditor = cli("auditor")
        first = json.loads(auditor.run("log", "audit", "--server", server.url, "--json").stdout)
        assert first["size"] == size and first["invalid_entries"] == 0
        # An honest server's map heads are exactly what the auditor's replay makes (K12).
        assert first["findings"] == [] and first["key_transparency"]["changes"] >= 3
        registrations = sum(isinstance(e, DeviceRegistration) for e in entries)
        assert first["counts"]["accord.device.registration.v1"] == registrations
        assert first["counts"]["accord.kt.map_head.v1"] == size - registrations
        carol = AccordClient.create_account(
            tmp_path / "c",
            server.url,
            unique("carol"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        carol.close()
        second = json.loads(auditor.run("log", "audit", "--server", server.url, "--json").stdout)
        assert second["size"] == size + 2 and second["previous_size"] == size
        grown = httpx.get(inclusion_url, params={"index": size, "size": size + 2})
        assert grown.status_code == 200 and len(grown.json()["proof"]) >= 1
        text = auditor.run("log", "checkpoint", "--server", server.url).stdout
        assert parse_unverified_note(text).text.splitlines()[1] == str(size + 2)
    finally:
        for c in (alice, phone, laptop):
            c.close()


def test_unlogged_device_is_never_used(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    """A device row the log does not know (log_index NULL) is invisible to senders."""
    from sqlalchemy import text

    from accord.storage.db import make_engine, sqlite_url

    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
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
            server.url + f"/v1/accounts/{bob.account_name}/devices",
            headers={"Authorization": f"Bearer {alice._token(False)}"},
        ).json()
        assert [d["keys"]["device_id"] for d in listing["devices"]] == [bob.device_id]
        alice.send(bob.account_name, "only to logged devices")
        assert [m.text for m in bob.receive().messages] == ["only to logged devices"]
    finally:
        alice.close()
        bob.close()


@ON_SQLITE
def test_device_with_a_false_log_claim_is_refused(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    """A server that lists a device under someone else's log entry cannot get it used."""
    from sqlalchemy import text

    from accord.errors import VerificationError
    from accord.primitives.olm import DeviceAccount
    from accord.protocols.messaging import approval_payload, device_keys_payload
    from accord.storage.db import make_engine, sqlite_url
    from accord.wire.messaging import DeviceKeys

    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    try:
        ghost = DeviceAccount()
        sig = ghost.sign(
            device_keys_payload(bob.account_name, "GHOST1", ghost.ed25519, ghost.curve25519)
        )
        # Even with a valid approval by bob's device (the strongest case for the server),
        # a device whose registration is not in the log is refused.
        ghost_keys = DeviceKeys(
            account=bob.account_name,
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
            alice.send(bob.account_name, "must not reach a ghost")
        assert caught.value.code == "unlogged_device"
        # The server lists the ghost, but the account's logged set does not hold it.
        listing = httpx.get(
            server.url + f"/v1/accounts/{bob.account_name}/devices",
            headers={"Authorization": f"Bearer {alice._token(False)}"},
        ).json()
        assert "GHOST1" in [d["keys"]["device_id"] for d in listing["devices"]]
        assert [d.device_id for d in alice.store.pinned_devices(bob.account_name)] == [
            bob.device_id
        ]
        assert bob.receive().messages == []
    finally:
        alice.close()
        bob.close()


@ON_SQLITE
def test_log_rollback_or_fork_is_an_error(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    from accord.errors import VerificationError

    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    try:
        alice.send(bob.account_name, "first")  # alice accepts the checkpoint with both in it
        seen = alice.store.log_checkpoint()
        assert seen is not None and seen.size == _log_size(server)
        # A view larger than anything the server can prove consistent: a rollback now.
        alice.store.set_log_checkpoint(replace(seen, size=seen.size + 1000))
        with pytest.raises(VerificationError):
            alice._refresh_devices([bob.account_name])
        # Same size, other root: a fork.
        alice.store.set_log_checkpoint(replace(seen, root_hash=bytes(32)))
        with pytest.raises(VerificationError):
            alice._refresh_devices([bob.account_name])
    finally:
        alice.close()
        bob.close()


def test_owner_is_told_of_a_device_it_did_not_add(server, cli, unique):  # type: ignore[no-untyped-def]
    bob = unique("bob")
    phone, laptop, tablet = cli("phone"), cli("laptop"), cli("tablet")
    phone.run("account", "create", bob, "--server", server.url)
    code = laptop.run("device", "link", bob, "--server", server.url).stdout.strip()
    phone.run("device", "approve", code)
    first = laptop.run("receive")
    assert "warning" not in first.stderr  # the phone was there before the laptop joined
    code = tablet.run("device", "link", bob, "--server", server.url).stdout.strip()
    laptop.run("device", "approve", code)  # added from the laptop, not from the phone
    warned = phone.run("receive")
    assert "new device" in warned.stderr and warned.stderr.count("new device") == 1
    assert "new device" not in phone.run("receive").stderr  # told once
    assert "new device" not in laptop.run("receive").stderr  # the laptop added it
    listing = phone.run("account", "devices", "--json").stdout.splitlines()
    assert len(listing) == 3

    # A removal the phone did not make is shown to it too (K10), once.
    [tablet_id] = [
        row["device_id"]
        for row in map(json.loads, tablet.run("account", "devices", "--json").stdout.splitlines())
        if row["this"]
    ]
    laptop.run("device", "remove", tablet_id)
    removed = f"device {tablet_id} was removed from your account {bob}"
    assert phone.run("receive").stderr.count(removed) == 1
    assert "was removed" not in phone.run("receive").stderr  # told once
    assert "was removed" not in laptop.run("receive").stderr  # the laptop removed it
    assert len(phone.run("account", "devices", "--json").stdout.splitlines()) == 2
