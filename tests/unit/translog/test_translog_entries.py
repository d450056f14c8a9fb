"""Log entries: one canonical encoding per entry; anything else is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.translog.entries import (
    ACCESS_TAGS,
    KNOWN_TAGS,
    RESERVED_TAGS,
    TAG_DEVICE_REGISTRATION,
    DeviceRegistration,
    DeviceRevocation,
    OtherEntry,
    entry_type,
    parse_entry,
)

REG = DeviceRegistration(
    account="bob",
    device_id="LAPTOP01",
    ed25519="E" * 43,
    curve25519="C" * 43,
    signature="S" * 86,
    approver_device_id="PHONE001",
    approval_signature="A" * 86,
    registered_at=1_700_000_000_000,
)


def test_round_trip_and_exact_bytes() -> None:
    data = REG.to_bytes()
    assert data.startswith(b'{"account":"bob","approval_signature":')
    assert json.loads(data)["type"] == TAG_DEVICE_REGISTRATION
    assert parse_entry(data) == REG
    rev = DeviceRevocation(
        account="bob",
        device_id="LAPTOP01",
        revoker_device_id="PHONE001",
        signature="S" * 86,
        revoked_at=5,
    )
    assert parse_entry(rev.to_bytes()) == rev
    assert entry_type(data) == TAG_DEVICE_REGISTRATION


def test_non_canonical_and_malformed_are_refused() -> None:
    obj = json.loads(REG.to_bytes())
    spaced = json.dumps(obj).encode()  # same fields, other bytes
    with pytest.raises(InvalidInput):
        parse_entry(spaced)
    for bad in (b"", b"[]", b'{"x":1}', b"\xff", json.dumps({**obj, "registered_at": -1}).encode()):
        with pytest.raises(InvalidInput):
            parse_entry(bad)
    with pytest.raises(InvalidInput):
        parse_entry(b'{"type":"x","pad":"' + b"a" * 70000 + b'"}')


def test_reserved_types_are_counted_not_parsed() -> None:
    for tag in RESERVED_TAGS:
        assert parse_entry(json.dumps({"type": tag}).encode()) == OtherEntry(type=tag)


def test_access_types_are_parsed_strictly() -> None:
    for tag in ACCESS_TAGS:
        assert tag in KNOWN_TAGS
        with pytest.raises(InvalidInput):
            parse_entry(json.dumps({"type": tag}).encode())
    with pytest.raises(InvalidInput):
        parse_entry(b'{"type":"accord.access.unknown.v1"}')


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_parser_never_crashes(data: bytes) -> None:
    try:
        parse_entry(data)
    except InvalidInput:
        pass
