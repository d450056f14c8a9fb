"""Signed payloads, device-list and group-state verification, and the payload parser."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from accord.errors import DecryptionError, VerificationError
from accord.primitives.olm import DeviceAccount
from accord.primitives.padding import pad
from accord.protocols.messaging import (
    approval_payload,
    device_keys_payload,
    group_state_payload,
    verify_device_list,
    verify_group_state,
)
from accord.wire.messaging import (
    Content,
    Conversation,
    DeviceApproval,
    DeviceKeys,
    DeviceRecord,
    DeviceRef,
    Envelope,
    GroupKeyShare,
    GroupState,
    SendRequest,
    decode_payload,
    encode_payload,
)


def _keys(olm: DeviceAccount, account: str, device_id: str) -> DeviceKeys:
    sig = olm.sign(device_keys_payload(account, device_id, olm.ed25519, olm.curve25519))
    return DeviceKeys(
        account=account,
        device_id=device_id,
        ed25519=olm.ed25519,
        curve25519=olm.curve25519,
        signature=sig,
    )


def test_canonical_payload_is_stable() -> None:
    # The exact bytes are part of the protocol: changing them breaks every signature.
    assert device_keys_payload("alice", "DEV1", "ED", "CU") == (
        b'{"account":"alice","curve25519":"CU","device_id":"DEV1","ed25519":"ED",'
        b'"purpose":"accord-device-keys-v1"}'
    )


def test_device_list_chain() -> None:
    first, second, intruder = DeviceAccount(), DeviceAccount(), DeviceAccount()
    k1 = _keys(first, "bob", "PHONE")
    k2 = _keys(second, "bob", "LAPTOP")
    approval = DeviceApproval(
        approver_device_id="PHONE", signature=first.sign(approval_payload("PHONE", k2))
    )
    records = [
        DeviceRecord(keys=k1, created_at=1),
        DeviceRecord(keys=k2, approval=approval, created_at=2),
    ]
    assert [k.device_id for k in verify_device_list("bob", records)] == ["PHONE", "LAPTOP"]

    ghost = _keys(intruder, "bob", "GHOST")
    with pytest.raises(VerificationError):  # no approval
        verify_device_list("bob", records + [DeviceRecord(keys=ghost, created_at=3)])
    forged = DeviceApproval(
        approver_device_id="PHONE", signature=intruder.sign(approval_payload("PHONE", ghost))
    )
    with pytest.raises(VerificationError):  # approval not signed by PHONE
        verify_device_list(
            "bob", records + [DeviceRecord(keys=ghost, approval=forged, created_at=3)]
        )
    swapped = k2.model_copy(update={"curve25519": ghost.curve25519})
    with pytest.raises(VerificationError):  # keys changed after signing
        verify_device_list(
            "bob", [records[0], DeviceRecord(keys=swapped, approval=approval, created_at=2)]
        )
    with pytest.raises(VerificationError):  # someone else's device
        verify_device_list("alice", records)


def test_group_state_rules() -> None:
    admin, other = DeviceAccount(), DeviceAccount()
    ka, ko = _keys(admin, "alice", "ADM1"), _keys(other, "bob", "BOB1")
    v1 = GroupState(group="g", version=1, admins=["alice"], members=["alice", "bob"])
    verify_group_state(v1, "alice", ka, admin.sign(group_state_payload(v1)), None)
    v2 = GroupState(group="g", version=2, admins=["alice"], members=["alice", "bob", "mallory"])
    with pytest.raises(VerificationError):  # bob is not an admin
        verify_group_state(v2, "bob", ko, other.sign(group_state_payload(v2)), v1)
    with pytest.raises(VerificationError):  # rollback
        verify_group_state(v1, "alice", ka, admin.sign(group_state_payload(v1)), v2)
    with pytest.raises(VerificationError):  # signature over another state
        verify_group_state(v2, "alice", ka, admin.sign(group_state_payload(v1)), v1)
    with pytest.raises(ValidationError):
        GroupState(group="g", version=1, admins=["x"], members=["alice"])


def _content() -> Content:
    return Content(
        message_id="A" * 22,
        sender=DeviceRef(account="alice", device_id="DEV1"),
        to=Conversation(account="bob"),
        sent_at=1,
        text="hi",
    )


def test_payload_round_trip() -> None:
    c = _content()
    assert decode_payload(encode_payload(c)) == c
    share = GroupKeyShare(
        group="g",
        sender=DeviceRef(account="a", device_id="DEV1"),
        session_id="x" * 43,
        session_key="k",
    )
    assert decode_payload(encode_payload(share)) == share


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_payload_parser_fuzz_bytes(data: bytes) -> None:
    for candidate in (data, pad(data[:500])):
        try:
            decode_payload(candidate)
        except DecryptionError:
            pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats(allow_nan=True),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(json_values)
def test_payload_parser_fuzz_json(value: object) -> None:
    raw = json.dumps(value).encode()
    if len(raw) < 60000:
        try:
            decode_payload(pad(raw))
        except DecryptionError:
            pass


@settings(max_examples=200)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "message_id",
                "to",
                "recipients",
                "copies",
                "megolm",
                "megolm_session_id",
                "extensions",
                "blobs",
                "x",
            ]
        ),
        json_values,
        max_size=9,
    )
)
def test_envelope_models_reject_cleanly(value: dict) -> None:  # type: ignore[type-arg]
    for model in (SendRequest, Envelope):
        try:
            model.model_validate(value)
        except ValidationError:
            pass


def test_envelope_version_is_checked() -> None:
    body = {
        "v": 2,
        "message_id": "A" * 22,
        "to": {"account": "bob"},
        "recipients": [],
        "copies": [],
    }
    with pytest.raises(ValidationError):
        SendRequest.model_validate(body)
    body["v"] = 1
    SendRequest.model_validate(body)
    with pytest.raises(ValidationError):
        SendRequest.model_validate({**body, "unknown": 1})
    with pytest.raises(ValidationError):
        SendRequest.model_validate({**body, "to": {"account": "bob", "group": "g"}})
    assert SendRequest.model_validate({**body, "blobs": ["b" * 32]}).blobs == ["b" * 32]
    for bad in (["../etc/passwd"], ["b" * 65], ["b" * 32] * 33):
        with pytest.raises(ValidationError):
            SendRequest.model_validate({**body, "blobs": bad})
