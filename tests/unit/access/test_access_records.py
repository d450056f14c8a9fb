"""Intercepted records: sealing on the device, checks on the server, opening by the agency."""

from __future__ import annotations

import dataclasses

import pytest
from access_world import DAY, DEVICE_KEYS, NOW, POLICY, TARGET, World, sign_as
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import AuthorizationError, DecryptionError, InvalidInput, ProtocolError
from accord.primitives.hpke import HpkeSealed, generate_hpke_key_pair, hpke_open
from accord.protocols.access.device import VerifiedWarrant, verify_warrant_for_device
from accord.protocols.access.records import (
    Direction,
    InterceptedAttachment,
    InterceptedMessage,
    RecordOpener,
    RecordSealer,
    SealedRecord,
    check_record_upload,
    record_aad,
    record_info,
)


def verified(world: World, scope: tuple[str, ...] = ("content", "metadata")) -> VerifiedWarrant:
    signed = world.approve(world.draft(scope=list(scope)), "judge", "commissioner")
    return verify_warrant_for_device(
        world.deliver(signed),
        account=TARGET,
        approver_set=world.approver_set,
        log_policy=POLICY,
        last_checkpoint=None,
        now=NOW,
    )


def message(i: int, *, at: int = NOW) -> InterceptedMessage:
    return InterceptedMessage(
        direction=Direction.SENT if i % 2 else Direction.RECEIVED,
        occurred_at=at,
        sender=TARGET,
        recipients=("bob",),
        conversation_id="conv-1",
        message_id=f"m{i}",
        plaintext=f"message {i}".encode(),
        attachments=(InterceptedAttachment(key=bytes(32), digest=bytes(range(32))),),
    )


def opener(world: World, v: VerifiedWarrant) -> RecordOpener:
    return RecordOpener(
        v.signed_warrant.warrant, world.agency_key, world.agency_private, device_keys=DEVICE_KEYS
    )


def sealed_stream(
    world: World, v: VerifiedWarrant, n: int, device: str = "dev1"
) -> list[SealedRecord]:
    sealer = RecordSealer(v, device_id=device, sign=sign_as(device))
    return [sealer.seal(message(i), now=NOW) for i in range(n)]


def test_round_trip_in_order(world: World) -> None:
    v = verified(world)
    records = sealed_stream(world, v, 5)
    opened = opener(world, v).open_all(records)
    assert [o.seq for o in opened] == [0, 1, 2, 3, 4]
    assert opened[3].plaintext == b"message 3"
    assert opened[3].metadata == {
        "sender": TARGET, "recipients": ["bob"], "conversation_id": "conv-1", "message_id": "m3"
    }  # fmt: skip
    assert opened[0].attachments == (InterceptedAttachment(bytes(32), bytes(range(32))),)
    assert [SealedRecord.from_bytes(r.to_bytes()) for r in records] == records


def test_scope_metadata_only_carries_no_content(world: World) -> None:
    v = verified(world, ("metadata",))
    (opened,) = opener(world, v).open_all(sealed_stream(world, v, 1))
    assert opened.plaintext is None and opened.attachments is None
    assert opened.metadata is not None


def test_two_devices_have_independent_streams(world: World) -> None:
    v = verified(world)
    a, b = sealed_stream(world, v, 3, "phone"), sealed_stream(world, v, 2, "laptop")
    o = opener(world, v)
    o.open_all([a[0], b[0], a[1], b[1], a[2]])
    assert o.counts() == {"phone": 3, "laptop": 2} and o.gaps == {}


def test_gap_is_visible(world: World) -> None:
    v = verified(world)
    records = sealed_stream(world, v, 6)
    o = opener(world, v)
    o.open_all([records[0], records[1], records[4], records[5]])
    assert o.gaps == {"dev1": ((2, 4),)}


def test_reordered_record_detected(world: World) -> None:
    v = verified(world)
    records = sealed_stream(world, v, 3)
    o = opener(world, v)
    o.open(records[0])
    o.open(records[2])
    with pytest.raises(ProtocolError) as info:
        o.open(records[1])
    assert info.value.code == "record_reordered"


def test_replayed_record_detected(world: World) -> None:
    v = verified(world)
    records = sealed_stream(world, v, 2)
    o = opener(world, v)
    o.open_all(records)
    with pytest.raises(ProtocolError) as info:
        o.open(records[1])
    assert info.value.code == "record_replayed"


def test_tampered_record_detected(world: World) -> None:
    v = verified(world)
    (record,) = sealed_stream(world, v, 1)
    ct = bytearray(record.ciphertext)
    ct[5] ^= 0x40
    with pytest.raises(DecryptionError):
        opener(world, v).open(dataclasses.replace(record, ciphertext=bytes(ct)))


def test_relabelled_sequence_number_detected(world: World) -> None:
    # The server swaps records 0 and 1 by rewriting their sequence numbers.
    v = verified(world)
    r0, r1 = sealed_stream(world, v, 2)
    with pytest.raises(DecryptionError):
        opener(world, v).open(dataclasses.replace(r1, seq=0))


def test_record_moved_to_another_device_detected(world: World) -> None:
    v = verified(world)
    (r0,) = sealed_stream(world, v, 1)
    with pytest.raises(DecryptionError):
        opener(world, v).open(dataclasses.replace(r0, device_id="other"))


def test_server_cannot_read_records(world: World) -> None:
    """The provider holds every public value but no agency private key: nothing opens."""
    v = verified(world)
    (record,) = sealed_stream(world, v, 1)
    key_id = v.agency_key.key_id
    server_key = generate_hpke_key_pair()
    with pytest.raises(DecryptionError):
        hpke_open(
            server_key,
            HpkeSealed(record.enc, record.ciphertext),
            info=record_info(key_id),
            aad=record_aad(record.warrant_id, record.device_id, record.seq),
        )
    with pytest.raises(InvalidInput):  # and cannot pose as the agency with its own key
        RecordOpener(
            v.signed_warrant.warrant, world.agency_key, server_key, device_keys=DEVICE_KEYS
        )
    assert b"message 0" not in record.to_bytes()


def test_client_stops_at_end_of_window(world: World) -> None:
    v = verified(world)
    sealer = RecordSealer(v, device_id="dev1", sign=sign_as("dev1"))
    end = v.signed_warrant.warrant.end_time
    sealer.seal(message(0, at=end - 1), now=end - 1)
    with pytest.raises(AuthorizationError):
        sealer.seal(message(1, at=end), now=end)
    with pytest.raises(AuthorizationError):  # nothing from before the window either
        sealer.seal(message(2, at=v.signed_warrant.warrant.start_time - 1), now=NOW)
    assert sealer.next_seq == 1


def test_server_refuses_records_for_expired_warrant(world: World) -> None:
    v = verified(world)
    (record,) = sealed_stream(world, v, 1)
    w = v.signed_warrant.warrant
    check_record_upload(w, record, now=NOW)
    with pytest.raises(AuthorizationError) as info:
        check_record_upload(w, record, now=w.end_time)
    assert info.value.code == "warrant_expired"
    other = verified(world)
    with pytest.raises(AuthorizationError):
        check_record_upload(other.signed_warrant.warrant, record, now=NOW)


def test_record_for_another_warrant_refused_by_agency(world: World) -> None:
    v1, v2 = verified(world), verified(world)
    (record,) = sealed_stream(world, v1, 1)
    with pytest.raises(ProtocolError):
        opener(world, v2).open(record)
    with pytest.raises(DecryptionError):  # relabelled to the other warrant: AAD mismatch
        opener(world, v2).open(dataclasses.replace(record, warrant_id=v2.warrant_id))


def test_only_verified_warrant_can_seal(world: World) -> None:
    v = verified(world)
    with pytest.raises(InvalidInput):
        RecordSealer(v.signed_warrant, device_id="d", sign=sign_as("d"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- properties

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@_SETTINGS
@given(
    texts=st.lists(st.binary(max_size=200), min_size=1, max_size=6),
    offset=st.integers(min_value=0, max_value=7 * DAY - 1),
)
def test_property_round_trip(texts: list[bytes], offset: int) -> None:
    from access_world import make_world

    world = make_world()
    v = verified(world)
    sealer = RecordSealer(v, device_id="d", sign=sign_as("d"))
    at = v.signed_warrant.warrant.start_time + offset
    records = [
        sealer.seal(dataclasses.replace(message(i, at=at), plaintext=t), now=at)
        for i, t in enumerate(texts)
    ]
    opened = opener(world, v).open_all(records)
    assert [o.plaintext for o in opened] == texts


_WORLD_CACHE: dict[str, tuple[World, VerifiedWarrant, list[SealedRecord]]] = {}


def _stream() -> tuple[World, VerifiedWarrant, list[SealedRecord]]:
    if "s" not in _WORLD_CACHE:
        from access_world import make_world

        world = make_world()
        v = verified(world)
        _WORLD_CACHE["s"] = (world, v, sealed_stream(world, v, 4))
    return _WORLD_CACHE["s"]


@_SETTINGS
@given(
    index=st.integers(0, 3),
    field=st.sampled_from(["enc", "ciphertext", "seq", "device_id", "warrant_id"]),
    data=st.data(),
)
def test_property_any_mutation_detected(index: int, field: str, data: st.DataObject) -> None:
    world, v, records = _stream()
    record = records[index]
    if field in ("enc", "ciphertext", "warrant_id"):
        raw = bytearray(getattr(record, field))
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= data.draw(st.integers(1, 255))
        mutated = dataclasses.replace(record, **{field: bytes(raw)})
    elif field == "seq":
        mutated = dataclasses.replace(
            record, seq=data.draw(st.integers(0, 10).filter(lambda s: s != record.seq))
        )
    else:
        mutated = dataclasses.replace(
            record, device_id=data.draw(st.text("abcdefgh", min_size=1, max_size=8))
        )
    o = opener(world, v)
    o.open_all(records[:index])
    with pytest.raises((DecryptionError, ProtocolError)):
        o.open(mutated)


@_SETTINGS
@given(order=st.permutations([0, 1, 2, 3]), repeat=st.booleans())
def test_property_reorder_and_replay_detected(order: list[int], repeat: bool) -> None:
    world, v, records = _stream()
    stream = [records[i] for i in order] + ([records[order[-1]]] if repeat else [])
    o = opener(world, v)
    if order == sorted(order) and not repeat:
        o.open_all(stream)
        return
    with pytest.raises(ProtocolError):
        o.open_all(stream)


def test_record_sealed_by_anyone_but_the_device_is_forged(world: World) -> None:
    """The agency's key is public: anyone can seal a well-formed record to it. Only the
    target device's logged key can sign one: a record signed by another key, or from a device
    the log does not list, is a problem, and the stream shows a gap where it stood."""
    v = verified(world)
    genuine = sealed_stream(world, v, 3)
    impostor = RecordSealer(v, device_id="dev1", sign=sign_as("dev2"), next_seq=1)
    forged = impostor.seal(dataclasses.replace(message(1), plaintext=b"I confess"), now=NOW)
    o = opener(world, v)
    o.open(genuine[0])
    with pytest.raises(ProtocolError) as info:
        o.open(forged)
    assert info.value.code == "record_forged"
    assert o.open(genuine[2]).seq == 2
    assert o.gaps == {"dev1": ((1, 2),)}
    unknown = RecordOpener(
        v.signed_warrant.warrant, world.agency_key, world.agency_private, device_keys={}
    )
    with pytest.raises(ProtocolError) as info:
        unknown.open(genuine[0])
    assert info.value.code == "record_unknown_device"
