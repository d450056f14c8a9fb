"""The exact bytes of every signed messaging payload and of the padded inner payloads.

Recorded from the implementation before the protocol functions stopped taking pydantic models
(they now read any object with the same fields); a changed byte breaks every signature.
"""

from __future__ import annotations

import hashlib

from accord.protocols.messaging import (
    approval_payload,
    auth_payload,
    group_state_payload,
    one_time_key_payload,
    registration_entry,
)
from accord.protocols.translog.entries import DeviceRegistration
from accord.wire.messaging import (
    Content,
    Conversation,
    DeviceApproval,
    DeviceKeys,
    DeviceRef,
    GroupKeyShare,
    GroupState,
    OneTimeKey,
    decode_payload,
    encode_payload,
)

KEYS = DeviceKeys(
    account="alice",
    device_id="PHONE1",
    ed25519="ED25519KEY",
    curve25519="CURVEKEY",
    signature="SIG",
)
SENDER = DeviceRef(account="alice", device_id="PHONE1")


def test_signed_payload_bytes() -> None:
    assert approval_payload("LAPTOP1", KEYS) == (
        b'{"account":"alice","approver_device_id":"LAPTOP1","curve25519":"CURVEKEY",'
        b'"device_id":"PHONE1","ed25519":"ED25519KEY","purpose":"accord-device-approval-v1"}'
    )
    otk = OneTimeKey(key_id="AAAAAQ", key="OTK", signature="S")
    assert one_time_key_payload("alice", "PHONE1", otk, True) == (
        b'{"account":"alice","device_id":"PHONE1","fallback":true,"key":"OTK","key_id":"AAAAAQ",'
        b'"purpose":"accord-one-time-key-v1"}'
    )
    assert auth_payload("alice", "PHONE1", "chal") == (
        b'{"account":"alice","challenge":"chal","device_id":"PHONE1","purpose":"accord-auth-v1"}'
    )
    state = GroupState(group="team", version=3, admins=["alice"], members=["alice", "bob", "c.d"])
    assert group_state_payload(state) == (
        b'{"admins":["alice"],"group":"team","members":["alice","bob","c.d"],'
        b'"purpose":"accord-group-state-v1","v":1,"version":3}'
    )


def test_group_state_payload_covers_every_field() -> None:
    assert set(GroupState.model_fields) == {"v", "group", "version", "admins", "members"}


def test_registration_entry_fields() -> None:
    approval = DeviceApproval(approver_device_id="LAPTOP1", signature="ASIG")
    assert registration_entry(KEYS, approval, 1700000000) == DeviceRegistration(
        account="alice",
        device_id="PHONE1",
        ed25519="ED25519KEY",
        curve25519="CURVEKEY",
        signature="SIG",
        approver_device_id="LAPTOP1",
        approval_signature="ASIG",
        registered_at=1700000000,
    )
    first = registration_entry(KEYS, None, 1)
    assert first.approver_device_id is None and first.approval_signature is None


def test_padded_payload_bytes() -> None:
    content = Content(
        message_id="m" * 22,
        sender=SENDER,
        to=Conversation(group="team"),
        sent_at=1700000000,
        text="h\u00e9llo",
        extensions={"x": {"b": 1, "a": [1, 2]}},
    )
    padded = encode_payload(content)
    assert len(padded) == 256 and padded.rstrip(b"\0") == (
        b'{"attachments":[],"extensions":{"x":{"a":[1,2],"b":1}},"message_id":"mmmmmmmmmmmmmmmmmmmmmm",'
        b'"sender":{"account":"alice","device_id":"PHONE1"},"sent_at":1700000000,"text":"h\xc3\xa9llo",'
        b'"to":{"account":null,"group":"team"},"type":"message","v":1}\x80'
    )
    assert hashlib.sha256(padded).hexdigest() == (
        "0942dd26bc624d02dc7a7338342b0e5c7c01f36a6aa286394551066d49095f6c"
    )
    assert decode_payload(padded) == content
    share = GroupKeyShare(group="team", sender=SENDER, session_id="A" * 43, session_key="KEY")
    padded = encode_payload(share)
    assert hashlib.sha256(padded).hexdigest() == (
        "f2cf4c2b8b811806f5451315d7c061503c305eb467de103b989c8d85c9ae350e"
    )
    assert decode_payload(padded) == share
