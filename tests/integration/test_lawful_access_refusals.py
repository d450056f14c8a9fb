"""Acceptance 2 through the running system: every bad warrant fails closed, with a clear code.

Each case is refused where it is a property of the system: the server refuses to accept it, and
where the provider itself is the adversary (it serves what it stores; here its database is
edited), the target's device refuses it and copies nothing. Bad records are detected by the
agency. One server (SQLite) is shared; each test uses its own accounts and warrants.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lawful_access_world import (
    Authorities,
    account,
    device_refuses,
    server_db,
    tamper_warrant,
    warrant_row,
)
from sqlalchemy import func, insert, select, update

from accord.client.client import AccordClient
from accord.clock import now_s
from accord.errors import AuthorizationError, Conflict, DecryptionError, NotFound
from accord.primitives.hpke import HpkeSealed, generate_hpke_key_pair, hpke_open
from accord.primitives.olm import DeviceAccount
from accord.protocols.access.agency import AgencyKey
from accord.protocols.access.records import (
    Direction,
    InterceptedMessage,
    RecordSealer,
    SealedRecord,
    record_aad,
    record_info,
)
from accord.protocols.access.warrant import Approval, SignedWarrant, approval_message
from accord.server.process import ServerProcess
from accord.storage.schema import access_records, access_warrants, accounts
from accord_testing import TestClock, start_server

World = tuple[ServerProcess, Authorities, Path]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock) -> Iterator[World]:
    root = tmp_path_factory.mktemp("lawful-access")
    server = start_server(root / "server", clock=module_clock)
    try:
        authorities = Authorities.make(root / "authorities", module_clock)
        authorities.publish(server)
        authorities.register(server)
        yield server, authorities, root
    finally:
        server.stop()


@pytest.fixture(scope="module")
def counterpart(world: World) -> Iterator[AccordClient]:
    """Someone the targets talk to (shared by the tests of this module)."""
    server, _, root = world
    client = account(root, server, "counterpart")
    yield client
    client.close()


@pytest.fixture
def pair(
    world: World, counterpart: AccordClient, request: pytest.FixtureRequest
) -> Iterator[tuple[AccordClient, AccordClient]]:
    """A target named after the test, and the shared counterpart."""
    server, _, root = world
    stem = request.node.name.removeprefix("test_").replace("_", "-")[:40]
    target = account(root, server, stem)
    yield target, counterpart
    target.close()


def refused_at_submission(auth: Authorities, server: ServerProcess, signed: SignedWarrant) -> str:
    with pytest.raises(AuthorizationError) as info:
        auth.submit(server, signed)
    assert info.value.message
    return info.value.code


def stored_records(server: ServerProcess, warrant_id: str) -> int:
    with server_db(server) as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(access_records)
                .join(access_warrants, access_warrants.c.id == access_records.c.warrant_pk)
                .where(access_warrants.c.warrant_id == bytes.fromhex(warrant_id))
            ).scalar_one()
        )


def with_approval(signed: SignedWarrant, auth: Authorities, name: str, at: int) -> SignedWarrant:
    """An approval added by hand (the signing tool refuses a second one by the same key)."""
    key = auth.keys[name]
    message = approval_message(signed.warrant_id, name, key.role, at)
    approval = Approval(name, key.role, at, key.signer.sign(message).signature)
    return SignedWarrant(signed.warrant, (*signed.approvals, approval))


def submit_and_serve(
    world: World, client: AccordClient, served: SignedWarrant | None = None, **tamper: Any
) -> str:
    """Submit a valid warrant for ``client``'s account; then have the provider serve
    ``served`` (or the row edited with ``tamper``) in its place. Returns the warrant id."""
    server, auth, _ = world
    submitted = auth.submit(server, auth.warrant(client.account_name))
    if served is not None:
        tamper["signed_warrant"] = served
    if tamper:
        tamper_warrant(server, submitted.warrant_id, **tamper)
    return submitted.warrant_id


# --- approvals --------------------------------------------------------------------------------


def test_k_minus_one_signatures_refused(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, other = pair
    one = auth.warrant(target.account_name, signed_by=("judge",))
    assert refused_at_submission(auth, server, one) == "threshold_not_met"
    good = auth.warrant(target.account_name)
    wid = submit_and_serve(world, target, SignedWarrant(good.warrant, good.approvals[:1]))
    device_refuses(target, "threshold_not_met")
    target.send(other.account_name, "not for any agency")
    assert stored_records(server, wid) == 0


def test_signature_by_non_member_refused(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, _ = pair
    signed = auth.warrant(target.account_name, signed_by=("judge", "commissioner", "outsider"))
    assert refused_at_submission(auth, server, signed) == "approver_not_member"
    submit_and_serve(world, target, signed)
    device_refuses(target, "approver_not_member")


def test_two_signatures_by_one_approver_refused(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, _ = pair
    once = auth.warrant(target.account_name, signed_by=("judge",))
    twice = with_approval(once, auth, "judge", auth.now() - 5)
    assert refused_at_submission(auth, server, twice) == "duplicate_approver"
    submit_and_serve(world, target, twice)
    device_refuses(target, "duplicate_approver")


# --- target and window ------------------------------------------------------------------------


def test_target_other_than_own_account_refused(world: World, pair: Any) -> None:
    server, _, _ = world
    target, other = pair
    wid = submit_and_serve(world, target, target=other.account_name)
    device_refuses(other, "warrant_wrong_target")
    assert target.access.sync().accepted == []  # the server no longer delivers it to the target
    other.send(target.account_name, "the wrong account is never copied")
    assert stored_records(server, wid) == 0


def test_server_delivering_warrant_to_another_account_refused(world: World, pair: Any) -> None:
    """The provider hands the target's warrant to a second account as well: the target's
    device acts on it, the other account's device refuses, and only the target is copied."""
    server, auth, _ = world
    target, other = pair
    wid = auth.submit(server, auth.warrant(target.account_name)).warrant_id
    row = warrant_row(server, wid)
    with server_db(server) as conn:
        other_id = conn.execute(
            select(accounts.c.id).where(accounts.c.name == other.account_name)
        ).scalar_one()
        copy = {k: v for k, v in row._mapping.items() if k != "id"}
        copy.update(target_account_id=other_id, warrant_id=bytes(32), commitment=b"\1" * 32)
        conn.execute(insert(access_warrants).values(**copy))
    assert target.access.sync().accepted == [wid]
    device_refuses(other, "warrant_wrong_target")
    other.send(target.account_name, "to the target")
    target.receive()
    target.send(other.account_name, "from the target")
    result = auth.fetch(server, wid)
    assert [r.plaintext for r in result.records] == [b"to the target", b"from the target"]
    assert {r.device_id for r in result.records} == {target.device_id}


def test_window_not_yet_started_refused(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, _ = pair
    future = auth.warrant(target.account_name, start=auth.now() + 3600, end=auth.now() + 7200)
    wid = auth.submit(server, future).warrant_id  # a future warrant may be logged now ...
    result = target.access.sync()
    assert result.accepted == [] and result.refused == []  # ... and is not delivered early
    tamper_warrant(server, wid, start_time=auth.now() - 60)  # a provider that delivers it early
    device_refuses(target, "warrant_not_started")
    # The user is not told (that would reveal a genuine warrant early); the device still refused.
    assert not any("warrant_not_started" in n for n in target.access.sync_notices())


def test_window_already_over_refused(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, _ = pair
    past = auth.warrant(target.account_name, start=auth.now() - 600, end=auth.now() - 60)
    assert refused_at_submission(auth, server, past) == "warrant_expired"
    end = auth.now() + 600  # the test moves the clock past it
    wid = auth.submit(server, auth.warrant(target.account_name, end=end)).warrant_id
    auth.wait_until(end + 0.2)
    tamper_warrant(server, wid, end_time=auth.now() + 3600)  # served after its end
    device_refuses(target, "warrant_expired")


def test_duration_above_maximum_refused(world: World, pair: Any) -> None:
    """The provider refuses it here; tests/integration/test_lawful_access_sets.py shows a
    provider configured with a longer maximum, whose warrant the device still refuses."""
    server, auth, _ = world
    target, _ = pair
    long = auth.warrant(target.account_name, end=auth.now() + 31 * 86400, max_duration_s=40 * 86400)
    assert refused_at_submission(auth, server, long) == "warrant_too_long"


# --- the log and the agency key ---------------------------------------------------------------


def test_warrant_not_in_log_refused(world: World, pair: Any) -> None:
    """The provider serves a warrant that was never logged in the slot of one that was."""
    _, auth, _ = world
    target, _ = pair
    never_logged = auth.warrant(target.account_name)
    submit_and_serve(world, target, never_logged)
    device_refuses(target, "bad_commitment")


def test_unregistered_agency_key_refused(world: World, pair: Any) -> None:
    server, auth, root = world
    target, _ = pair
    # Registration itself needs k approvers of the current set.
    with pytest.raises(AuthorizationError) as info:
        auth.register(server, signed_by=("judge",))
    assert info.value.code == "threshold_not_met"
    assert auth.agency is not None
    unregistered = AgencyKey(
        agency_id="rogue",
        name="Rogue",
        public_key=generate_hpke_key_pair().public_key(),
        approver_set=auth.current_set.set_hash,
        registered_at=auth.now(),
    )
    signed = auth.warrant(target.account_name, agency=unregistered)
    assert refused_at_submission(auth, server, signed) == "agency_key_unregistered"
    # A provider that points the delivery at another log entry (index 0: the approver set).
    submit_and_serve(world, target, agency_key_index=0)
    device_refuses(target, "agency_key_unregistered")


def test_replayed_old_warrant_refused(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, other = pair
    end = auth.now() + 600  # the test moves the clock past it
    signed = auth.warrant(target.account_name, end=end)
    wid = auth.submit(server, signed).warrant_id
    with pytest.raises(Conflict) as info:
        auth.submit(server, signed)
    assert info.value.code == "warrant_replayed"
    assert target.access.sync().accepted == [wid]
    target.send(other.account_name, "inside")
    auth.wait_until(end + 0.2)
    target.access.sync()  # the window is over: the device drops it
    assert target.access.active_warrants() == []
    tamper_warrant(server, wid, end_time=auth.now() + 3600)  # and the provider serves it again
    device_refuses(target, "warrant_replayed")
    target.send(other.account_name, "after the replay")
    assert stored_records(server, wid) == 1


# --- records ----------------------------------------------------------------------------------


def test_server_refuses_records_after_the_window(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, other = pair
    end = auth.now() + 600  # the test moves the clock past it
    wid = auth.submit(server, auth.warrant(target.account_name, end=end)).warrant_id
    assert target.access.sync().accepted == [wid]
    [verified] = target.access.active_warrants()
    # The provider checks no signature (the agency does): any key signs here.
    sealer = RecordSealer(
        verified, device_id=target.device_id, sign=DeviceAccount().sign, next_seq=100
    )
    late = sealer.seal(_message(target, other), now=auth.now())  # sealed inside the window ...
    auth.wait_until(end + 0.2)
    with pytest.raises(AuthorizationError) as info:  # ... uploaded after it
        target.api.request("POST", "/v1/access/records", json={"v": 1, "records": [late.to_obj()]})
    assert info.value.code == "warrant_expired"
    target.send(other.account_name, "after the end")  # the device stops by itself too
    assert stored_records(server, wid) == 0


def test_records_only_from_the_target_devices(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, other = pair
    wid = auth.submit(server, auth.warrant(target.account_name)).warrant_id
    assert target.access.sync().accepted == [wid]
    [verified] = target.access.active_warrants()
    record = RecordSealer(verified, device_id=target.device_id, sign=DeviceAccount().sign).seal(
        _message(target, other), now=auth.now()
    )
    with pytest.raises(NotFound):  # another account cannot add to the stream
        other.api.request("POST", "/v1/access/records", json={"v": 1, "records": [record.to_obj()]})
    relabelled = SealedRecord(
        record.warrant_id, "OTHERDEV", record.seq, record.enc, record.ciphertext
    )
    with pytest.raises(AuthorizationError) as info2:
        target.api.request(
            "POST", "/v1/access/records", json={"v": 1, "records": [relabelled.to_obj()]}
        )
    assert info2.value.code == "record_wrong_device"


def test_tampered_or_reordered_record_detected(world: World, pair: Any) -> None:
    server, auth, _ = world
    target, other = pair
    wid = auth.submit(server, auth.warrant(target.account_name)).warrant_id
    assert target.access.sync().accepted == [wid]
    for i in range(4):
        target.send(other.account_name, f"message {i}")
    clean = auth.fetch(server, wid)
    assert [r.seq for r in clean.records] == [0, 1, 2, 3] and not clean.problems
    with server_db(server) as conn:
        rows = conn.execute(
            select(access_records.c.id, access_records.c.record)
            .join(access_warrants, access_warrants.c.id == access_records.c.warrant_pk)
            .where(access_warrants.c.warrant_id == bytes.fromhex(wid))
            .order_by(access_records.c.id)
        ).all()
        # One byte of record 1's ciphertext changed; records 2 and 3 swapped in storage order.
        record = SealedRecord.from_bytes(bytes(rows[1].record))
        flipped = bytearray(record.ciphertext)
        flipped[0] ^= 1
        tampered = SealedRecord(record.warrant_id, record.device_id, 1, record.enc, bytes(flipped))
        conn.execute(
            update(access_records)
            .where(access_records.c.id == rows[1].id)
            .values(record=tampered.to_bytes())
        )
        conn.execute(
            update(access_records)
            .where(access_records.c.id == rows[2].id)
            .values(record=rows[3].record)
        )
        conn.execute(
            update(access_records)
            .where(access_records.c.id == rows[3].id)
            .values(record=rows[2].record)
        )
    result = auth.fetch(server, wid)
    assert [r.seq for r in result.records] == [0, 3]
    assert any("record 1 " in p and "decryption_failed" in p for p in result.problems)
    assert any("record 2 " in p and "record_reordered" in p for p in result.problems)
    assert result.gaps == {target.device_id: ((1, 3),)}


def test_server_cannot_read_records(world: World, pair: Any) -> None:
    """The provider stores sealed records and holds no key that opens them."""
    server, auth, _ = world
    target, other = pair
    wid = auth.submit(server, auth.warrant(target.account_name)).warrant_id
    assert target.access.sync().accepted == [wid]
    marker = "a sentence only the agency may read"
    target.send(other.account_name, marker)
    assert [r.plaintext for r in auth.fetch(server, wid).records] == [marker.encode()]
    agency_private = auth.agency_key_file.read_bytes() if auth.agency_key_file else b""
    private_b64 = next(
        line.split('"')[3] for line in agency_private.decode().splitlines() if "private_key" in line
    )
    for path in server.data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert marker.encode() not in data, path
            assert private_b64.encode() not in data, path
            assert base64.b64decode(private_b64) not in data, path
    with server_db(server) as conn:
        stored = conn.execute(
            select(access_records.c.record)
            .join(access_warrants, access_warrants.c.id == access_records.c.warrant_pk)
            .where(access_warrants.c.warrant_id == bytes.fromhex(wid))
        ).scalar_one()
    record = SealedRecord.from_bytes(bytes(stored))
    assert auth.agency is not None
    with pytest.raises(DecryptionError):  # any key but the agency's fails
        hpke_open(
            generate_hpke_key_pair(),
            HpkeSealed(record.enc, record.ciphertext),
            info=record_info(auth.agency.key_id),
            aad=record_aad(record.warrant_id, record.device_id, record.seq),
        )


def _message(target: AccordClient, other: AccordClient) -> InterceptedMessage:
    return InterceptedMessage(
        direction=Direction.SENT,
        occurred_at=now_s(target.clock),
        sender=target.account_name,
        recipients=(other.account_name,),
        conversation_id="c",
        message_id="m",
        plaintext=b"x",
    )


def test_longest_message_is_copied_whole(world: World, pair: Any) -> None:
    """The size limits along the way (record, upload, fetch) hold the longest message."""
    server, auth, _ = world
    target, other = pair
    wid = auth.submit(server, auth.warrant(target.account_name)).warrant_id
    assert target.access.sync().accepted == [wid]
    longest = "\U0001f512" * 32000  # 128,000 bytes of UTF-8: near the message size limit
    target.send(other.account_name, longest)
    other.send(target.account_name, "short")
    target.receive()
    result = auth.fetch(server, wid)
    assert not result.problems and not result.gaps
    assert [r.plaintext for r in result.records] == [longest.encode(), b"short"]
