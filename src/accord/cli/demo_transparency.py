"""The demo's key-transparency chapter, and the dishonest operator it plays.

A contact's new device is shown to alice before her next message (with the safety code both
sides compare); then the operator slips a device into bob's account behind the server's back
(a second genesis in the log, and a map head it computed to include it): alice refuses to
encrypt to it, bob is warned, and the audit flags it. Called last by `accord demo`
(cli/demo.py): bob's account stays poisoned afterwards. The same operator moves serve the named
regression tests (tests/regression/test_key_transparency_operator.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from accord.client.audit import audit_log
from accord.client.client import AccordClient
from accord.errors import VerificationError
from accord.primitives.olm import DeviceAccount
from accord.protocols.key_transparency import (
    AccountState,
    AppliedChange,
    LoggedDevice,
    map_head_entry,
    next_history,
    search_key,
)
from accord.protocols.messaging import approval_payload, device_keys_payload
from accord.protocols.translog.entries import DeviceRegistration
from accord.protocols.translog.prefix_tree import PrefixTree
from accord.server.process import ServerProcess
from accord.storage.db import make_engine, sqlite_url
from accord.storage.key_directory import KeyDirectoryStore
from accord.storage.translog import TransparencyLogStore
from accord.wire.messaging import DeviceKeys

StateMaker = Callable[[AccountState | None, int], AccountState]


def forge_registration(
    account: str, device_id: str, *, approver: tuple[str, DeviceAccount] | None
) -> DeviceRegistration:
    """What a dishonest operator logs: a device it holds the keys of, for `account`, with no
    approval (a second genesis) or one signed by `approver` (a key that is not the account's)."""
    ghost = DeviceAccount()
    sig = ghost.sign(device_keys_payload(account, device_id, ghost.ed25519, ghost.curve25519))
    keys = DeviceKeys(
        account=account,
        device_id=device_id,
        ed25519=ghost.ed25519,
        curve25519=ghost.curve25519,
        signature=sig,
    )
    return DeviceRegistration(
        account=account,
        device_id=device_id,
        ed25519=ghost.ed25519,
        curve25519=ghost.curve25519,
        signature=sig,
        approver_device_id=approver[0] if approver else None,
        approval_signature=approver[1].sign(approval_payload(approver[0], keys))
        if approver
        else None,
        registered_at=1,  # an old timestamp: order comes from the log, not from this
    )


def state_with_device(entry: DeviceRegistration) -> StateMaker:
    """The operator's map: the account's state with the device added, rules ignored."""

    def make(old: AccountState | None, index: int) -> AccountState:
        if old is None:
            raise VerificationError("the operator needs an existing account to add to")
        device = LoggedDevice(
            entry.device_id, entry.ed25519, entry.curve25519, entry.signature, index
        )
        return AccountState(
            old.account,
            old.version + 1,
            old.genesis,
            next_history(old.history, index, entry.to_bytes()),
            tuple(sorted((*old.devices, device), key=lambda d: d.device_id)),
        )

    return make


def operator_appends(db_url: str, entry: DeviceRegistration, new_state: StateMaker) -> int:
    """Play the operator: append `entry` behind the running server's back, with the state it
    chose for the account in the map (`new_state(old, index)`), a map head committing to that
    map, and the device in the server's devices table so the server routes messages to it.
    Returns the entry's index."""
    engine = make_engine(db_url)
    try:
        log = TransparencyLogStore(engine)
        keys = KeyDirectoryStore(engine)
        first = log.size()
        state = new_state(keys.state(entry.account), first)
        tree = PrefixTree.from_items(keys.commitments()).with_updates(
            [(search_key(entry.account), state.commitment())]
        )

        def write(conn: Connection) -> None:
            keys.write(conn, [AppliedChange(state, first)], first + 2)

        log.append_batch(
            [entry.to_bytes(), map_head_entry(tree, 2)], expected_first=first, also=write
        )
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (account_id, device_id, ed25519, curve25519, signature,"
                    " created_at, log_index) SELECT id, :id, :ed, :cu, :sig, 1, :idx"
                    " FROM accounts WHERE name = :acct"
                ),
                {
                    "id": entry.device_id,
                    "ed": entry.ed25519,
                    "cu": entry.curve25519,
                    "sig": entry.signature,
                    "idx": first,
                    "acct": entry.account,
                },
            )
        return first
    finally:
        engine.dispose()


def transparency_chapter(
    root: Path,
    server: ServerProcess,
    alice: AccordClient,
    bob: AccordClient,
    *,
    passphrase: str,
    manifest: str,
    step: Callable[[str], None],
    ok: Callable[[str], None],
    expect: Callable[[bool, str], None],
) -> list[Any]:
    """Returns the clients it opened (the caller closes them)."""
    opened: list[Any] = []
    step("bob links a tablet; alice is told before her next message, with the code to compare")
    tablet, code = AccordClient.start_link(
        root / "bob-tablet", server.url, "bob", passphrase, manifest=manifest
    )
    opened.append(tablet)
    bob.approve_device(code)
    tablet.receive()
    try:
        alice.send("bob", "See you soon")
        expect(False, "alice was told of bob's new device before sending")
    except VerificationError as exc:
        expect(exc.code == "contact_changed", "alice's send stopped: bob's devices changed")
        ok(exc.message.split(". ")[0])
    code_alice, _ = alice.verify_contact("bob", confirm=True)
    code_bob, _ = bob.verify_contact("alice")
    expect(code_alice == code_bob, f"both sides show the same safety code: {code_alice}")
    alice.send("bob", "See you soon")
    got = [m.text for m in tablet.receive().messages]
    expect(got == ["See you soon"], "the message reached bob's new tablet")

    step("the operator slips its own device into bob's account behind the server's back")
    db_url = server.db_url or sqlite_url(server.data_dir)
    entry = forge_registration("bob", "OPERATOR1", approver=None)
    index = operator_appends(db_url, entry, state_with_device(entry))
    ok(f"log entry {index}: a second 'first device' for bob, in a map head the operator computed")
    try:
        alice.send("bob", "Are you there?")
        expect(False, "alice refuses to encrypt to the operator's device")
    except VerificationError as exc:
        expect(exc.code == "kt_second_genesis", f"alice refuses: {exc.diagnostics()}")
    notices = bob.receive().notices
    expect(
        any("second genesis" in n for n in notices),
        "bob is warned that his account's history does not verify",
    )
    result = audit_log(server.url, root / "auditor")
    expect(
        any(f.startswith(f"entry {index}: kt_second_genesis") for f in result.findings),
        "accord log audit flags the second genesis (and the map head that includes it)",
    )
    return opened
