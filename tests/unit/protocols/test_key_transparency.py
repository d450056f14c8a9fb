"""K8, K9 and K12 of docs/protocol/transparency.md §8 over hand-built histories: every rule the
map applies to a device change, with the stable code of each refusal, and what a client makes
of a server's answer (a history and a search proof) when the answer is doctored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pytest

from accord.errors import VerificationError
from accord.primitives.olm import DeviceAccount
from accord.protocols.key_transparency import (
    MAX_DEVICES_PER_ACCOUNT,
    AccountState,
    LoggedDevice,
    ProvenChange,
    apply_change,
    audit_key_transparency,
    map_head_entry,
    next_history,
    parse_map_head,
    replay_history,
    revocation_payload,
    safety_code,
    search_key,
    verify_account,
)
from accord.protocols.messaging import approval_payload, device_keys_payload
from accord.protocols.translog.entries import DeviceRegistration, DeviceRevocation
from accord.protocols.translog.prefix_tree import PrefixTree

BOB = "bob"


@dataclass(frozen=True)
class Device:
    """A device's id and keys, for signing what a real device would sign."""

    device_id: str
    keys: DeviceAccount


def _device(device_id: str) -> Device:
    return Device(device_id, DeviceAccount())


def _registration(
    device: Device, *, approver: Device | None = None, account: str = BOB
) -> DeviceRegistration:
    """`device` registered to `account`, self-signed, approved by `approver` if given."""
    keys = device.keys
    unapproved = DeviceRegistration(
        account=account,
        device_id=device.device_id,
        ed25519=keys.ed25519,
        curve25519=keys.curve25519,
        signature=keys.sign(
            device_keys_payload(account, device.device_id, keys.ed25519, keys.curve25519)
        ),
        approver_device_id=None,
        approval_signature=None,
        registered_at=1,
    )
    if approver is None:
        return unapproved
    return replace(
        unapproved,
        approver_device_id=approver.device_id,
        approval_signature=approver.keys.sign(approval_payload(approver.device_id, unapproved)),
    )


def _revocation(device_id: str, revoker: Device, *, account: str = BOB) -> DeviceRevocation:
    return DeviceRevocation(
        account=account,
        device_id=device_id,
        revoker_device_id=revoker.device_id,
        signature=revoker.keys.sign(revocation_payload(account, device_id, revoker.device_id, 7)),
        revoked_at=7,
    )


def _apply(
    state: AccountState | None, change: DeviceRegistration | DeviceRevocation, index: int
) -> AccountState:
    return apply_change(state, change, index, change.to_bytes())


def _refused(
    state: AccountState | None, change: DeviceRegistration | DeviceRevocation, code: str
) -> None:
    with pytest.raises(VerificationError) as caught:
        _apply(state, change, 99)
    assert caught.value.code == code, caught.value.message


@pytest.fixture(scope="module")
def phone() -> Device:
    return _device("PHONE")


@pytest.fixture(scope="module")
def laptop() -> Device:
    return _device("LAPTOP")


@pytest.fixture(scope="module")
def genesis(phone: Device) -> AccountState:
    """bob's version 1: the phone, at log index 3."""
    return _apply(None, _registration(phone), 3)


@pytest.fixture(scope="module")
def two_devices(genesis: AccountState, phone: Device, laptop: Device) -> AccountState:
    """bob's version 2: the laptop approved by the phone, at log index 5."""
    return _apply(genesis, _registration(laptop, approver=phone), 5)


# --- K8: what each change may do ------------------------------------------------------------


def test_genesis_approved_devices_and_a_revocation_make_each_version(
    genesis: AccountState, two_devices: AccountState, phone: Device, laptop: Device
) -> None:
    first = _registration(phone)
    assert (genesis.version, genesis.genesis, genesis.device_ids()) == (1, 3, {"PHONE"})
    assert genesis.history == next_history(bytes(32), 3, first.to_bytes())
    assert (two_devices.version, two_devices.genesis) == (2, 3)
    assert [d.device_id for d in two_devices.devices] == ["LAPTOP", "PHONE"]  # sorted
    gone = _revocation("PHONE", laptop)
    after = _apply(two_devices, gone, 8)
    assert (after.version, after.genesis, after.device_ids()) == (3, 3, {"LAPTOP"})
    assert after.history == next_history(two_devices.history, 8, gone.to_bytes())
    itself = _apply(two_devices, _revocation("LAPTOP", laptop), 8)  # a device removes itself
    assert itself.device_ids() == {"PHONE"}


def test_a_bad_self_signature_is_kt_bad_signature(phone: Device) -> None:
    other = DeviceAccount()
    forged = replace(
        _registration(phone),
        signature=other.sign(
            device_keys_payload(BOB, "PHONE", phone.keys.ed25519, phone.keys.curve25519)
        ),
    )
    _refused(None, forged, "kt_bad_signature")


def test_a_first_device_with_an_approver_is_kt_no_genesis(phone: Device, laptop: Device) -> None:
    _refused(None, _registration(laptop, approver=phone), "kt_no_genesis")


def test_a_second_unapproved_device_is_kt_second_genesis(
    genesis: AccountState, laptop: Device
) -> None:
    _refused(genesis, _registration(laptop), "kt_second_genesis")


def test_an_approval_by_a_stranger_or_a_wrong_key_is_kt_unapproved_device(
    genesis: AccountState, phone: Device, laptop: Device
) -> None:
    stranger = _device("STRANGER")
    _refused(genesis, _registration(laptop, approver=stranger), "kt_unapproved_device")
    # The phone's id, a key that is not the phone's (what a dishonest operator can sign).
    impostor = Device("PHONE", DeviceAccount())
    _refused(genesis, _registration(laptop, approver=impostor), "kt_unapproved_device")


def test_a_device_registered_twice_is_kt_duplicate_device(
    two_devices: AccountState, phone: Device, laptop: Device
) -> None:
    _refused(two_devices, _registration(laptop, approver=phone), "kt_duplicate_device")


def test_one_device_beyond_the_maximum_is_kt_too_many_devices(
    genesis: AccountState, phone: Device
) -> None:
    [own] = genesis.devices
    others = tuple(
        LoggedDevice(f"D{i:03d}", own.ed25519, own.curve25519, own.signature, 10 + i)
        for i in range(MAX_DEVICES_PER_ACCOUNT - 1)
    )
    full = replace(genesis, devices=tuple(sorted((own, *others), key=lambda d: d.device_id)))
    assert len(full.devices) == MAX_DEVICES_PER_ACCOUNT
    _refused(full, _registration(_device("ONEMORE"), approver=phone), "kt_too_many_devices")
    below = replace(full, devices=tuple(d for d in full.devices if d.device_id != "D000"))
    assert _apply(below, _registration(_device("ONEMORE"), approver=phone), 99).version == 2


def test_revoking_a_device_not_in_the_account_is_kt_unknown_device(
    genesis: AccountState, phone: Device
) -> None:
    _refused(genesis, _revocation("LAPTOP", phone), "kt_unknown_device")
    _refused(None, _revocation("PHONE", phone), "kt_unknown_device")  # no account at all


def test_a_revocation_by_a_stranger_or_a_wrong_key_is_kt_unapproved_revocation(
    two_devices: AccountState,
) -> None:
    _refused(two_devices, _revocation("LAPTOP", _device("STRANGER")), "kt_unapproved_revocation")
    impostor = Device("PHONE", DeviceAccount())
    _refused(two_devices, _revocation("LAPTOP", impostor), "kt_unapproved_revocation")


def test_the_last_device_stays_kt_last_device(genesis: AccountState, phone: Device) -> None:
    _refused(genesis, _revocation("PHONE", phone), "kt_last_device")


def test_a_change_of_another_account_is_kt_wrong_account(
    genesis: AccountState, laptop: Device, phone: Device
) -> None:
    _refused(genesis, _registration(laptop, approver=phone, account="carol"), "kt_wrong_account")


# --- K9: replaying what the server sends ----------------------------------------------------


def _proven(
    changes: Sequence[tuple[int, int, DeviceRegistration | DeviceRevocation]],
) -> list[ProvenChange]:
    return [ProvenChange(v, i, c.to_bytes(), ()) for v, i, c in changes]


def _included(seen: list[int]) -> Callable[[bytes, int, Sequence[bytes]], None]:
    def check(_entry: bytes, index: int, _proof: Sequence[bytes]) -> None:
        seen.append(index)

    return check


def test_replay_applies_every_change_and_checks_each_is_logged(
    two_devices: AccountState, phone: Device, laptop: Device
) -> None:
    history = _proven([(1, 3, _registration(phone)), (2, 5, _registration(laptop, approver=phone))])
    seen: list[int] = []
    state = replay_history(BOB, None, history, verify_included=_included(seen))
    assert state == two_devices and seen == [3, 5]
    genesis = replay_history(BOB, None, history[:1], verify_included=_included([]))
    # From a pinned version, only the changes after it.
    assert replay_history(BOB, genesis, history[1:], verify_included=_included([])) == two_devices


def test_replay_refuses_a_gap_another_account_or_a_broken_rule(
    genesis: AccountState, phone: Device, laptop: Device
) -> None:
    cases = [
        (None, _proven([(2, 5, _registration(laptop, approver=phone))]), "history_incomplete"),
        (genesis, _proven([(3, 5, _registration(laptop, approver=phone))]), "history_incomplete"),
        (
            genesis,
            _proven([(2, 5, _registration(laptop, approver=phone, account="carol"))]),
            "history_incomplete",
        ),
        (genesis, _proven([(2, 5, _registration(laptop))]), "kt_second_genesis"),
    ]
    for pinned, history, code in cases:
        with pytest.raises(VerificationError) as caught:
            replay_history(BOB, pinned, history, verify_included=_included([]))
        assert caught.value.code == code


@pytest.fixture(scope="module")
def tree(two_devices: AccountState) -> PrefixTree:
    """The map with bob at version 2 and a few other accounts."""
    others = [(search_key(f"user{i}"), bytes([i]) * 32) for i in range(1, 9)]
    return PrefixTree.from_items([*others, (search_key(BOB), two_devices.commitment())])


def test_verify_account_accepts_the_complete_current_set(
    tree: PrefixTree,
    genesis: AccountState,
    two_devices: AccountState,
    phone: Device,
    laptop: Device,
) -> None:
    change = _proven([(2, 5, _registration(laptop, approver=phone))])
    proof = tree.search(search_key(BOB))
    got = verify_account(
        BOB, tree.root_value, proof, genesis, change, verify_included=_included([])
    )
    assert got == two_devices
    absent = tree.search(search_key("nobody"))
    assert (
        verify_account("nobody", tree.root_value, absent, None, [], verify_included=_included([]))
        is None
    )


def test_an_account_hidden_behind_a_doctored_proof_is_map_proof_invalid(tree: PrefixTree) -> None:
    """The server claims bob does not exist: a non-inclusion proof from a map without him,
    or this map's own proof for another key, against the logged root."""
    without_bob = PrefixTree.from_items(
        [(search_key(f"user{i}"), bytes([i]) * 32) for i in range(1, 9)]
    )
    stale = without_bob.search(search_key(BOB))
    for proof in (stale, tree.search(search_key("nobody"))):
        with pytest.raises(VerificationError) as caught:
            verify_account(BOB, tree.root_value, proof, None, [], verify_included=_included([]))
        assert caught.value.code == "map_proof_invalid"


def test_a_history_that_does_not_match_the_map_is_refused(
    tree: PrefixTree, genesis: AccountState, phone: Device
) -> None:
    proof = tree.search(search_key(BOB))
    # A device left out: the genesis alone is not what the map holds.
    with pytest.raises(VerificationError) as caught:
        verify_account(
            BOB, tree.root_value, proof, None, _proven([(1, 3, _registration(phone))]),
            verify_included=_included([]),
        )  # fmt: skip
    assert caught.value.code == "incomplete_device_list"
    # Nothing new since the pinned version, yet the map holds another state.
    with pytest.raises(VerificationError) as caught:
        verify_account(BOB, tree.root_value, proof, genesis, [], verify_included=_included([]))
    assert caught.value.code == "history_rewritten"


def test_a_checkpoint_not_ending_in_a_map_head_is_missing_map_head(
    tree: PrefixTree, phone: Device
) -> None:
    with pytest.raises(VerificationError) as caught:
        parse_map_head(_registration(phone).to_bytes())
    assert caught.value.code == "missing_map_head"
    with pytest.raises(VerificationError) as caught:
        parse_map_head(b"not an entry")
    assert caught.value.code == "missing_map_head"
    head = parse_map_head(map_head_entry(tree, 1234))
    assert (head.accounts, head.timestamp) == (9, 1234)


# --- K12: the audit's replay ---------------------------------------------------------------


def test_the_audit_flags_broken_rules_forged_heads_and_a_missing_head(
    phone: Device, laptop: Device
) -> None:
    first, second = _registration(phone), _registration(laptop, approver=phone)
    genesis = _apply(None, first, 0)
    honest = PrefixTree().with_updates([(search_key(BOB), genesis.commitment())])
    ghost = _registration(_device("GHOST"))
    log = [first.to_bytes(), map_head_entry(honest, 1), ghost.to_bytes()]
    forged = honest.with_updates([(search_key(BOB), bytes(32))])
    log += [map_head_entry(forged, 2), second.to_bytes()]
    audit = audit_key_transparency(enumerate(log), len(log))
    assert [(f.index, f.code) for f in audit.findings] == [
        (2, "kt_second_genesis"),
        (3, "map_head_mismatch"),
        (4, "missing_map_head"),
    ]
    assert (audit.accounts, audit.changes, audit.map_heads) == (1, 2, 2)
    clean = audit_key_transparency(enumerate(log[:2]), 2)
    assert clean.findings == [] and (clean.changes, clean.map_heads) == (1, 1)


# --- safety codes ---------------------------------------------------------------------------


def test_the_safety_code_is_symmetric_and_changes_with_either_device_set(
    genesis: AccountState, two_devices: AccountState
) -> None:
    alice_phone = _device("APHONE")
    alice = _apply(None, _registration(alice_phone, account="alice"), 1)
    code = safety_code(alice, genesis)
    assert code == safety_code(genesis, alice)
    groups = code.split(" ")
    assert len(groups) == 6 and all(len(g) == 5 and g.isdigit() for g in groups)
    assert safety_code(alice, two_devices) != code
    tablet = _registration(_device("ATABLET"), account="alice", approver=alice_phone)
    assert safety_code(_apply(alice, tablet, 2), genesis) != code
