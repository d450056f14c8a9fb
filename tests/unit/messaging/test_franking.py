"""The franking MACs (accord.protocols.franking): openings, binding of every field, encodings."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import InvalidInput, VerificationError
from accord.protocols.franking import (
    COMMITMENT_DOMAIN,
    FrankedAttachment,
    FrankedMessage,
    FrankingKey,
    TagContext,
    commit_message,
    tag_commitment,
    verify_commitment,
    verify_tag,
)

KEY = FrankingKey(bytes(range(32)))
SERVER_KEY = bytes(range(32, 64))
MESSAGE = FrankedMessage(
    message_id="m" * 22,
    sender_account="alice",
    sender_device="DEV1",
    to_account="bob",
    to_group=None,
    sent_at_ms=1_700_000_000_000,
    text="hello",
    attachments=(
        FrankedAttachment(
            blob_id="b" * 32,
            name="a.png",
            media_type="image/png",
            size=10,
            blob_sha256=b"\x01" * 32,
            key=b"\x02" * 32,
        ),
    ),
)
CONTEXT = TagContext("alice", "DEV1", "account:bob", 1_700_000_000_123, "m" * 22)


def test_commitment_is_hmac_sha256_over_the_documented_encoding() -> None:
    """Known answer, computed independently of the module's helper functions."""
    encoding = (
        b'{"attachments":[{"blob_id":"'
        + b"b" * 32
        + b'","key":"AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=",'
        b'"media_type":"image/png","name":"a.png","sha256":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",'
        b'"size":10}],"conversation":"account:bob","message_id":"' + b"m" * 22 + b'",'
        b'"sender":["alice","DEV1"],"sent_at":1700000000000,"text":"hello"}'
    )
    expected = hmac.new(KEY, COMMITMENT_DOMAIN + encoding, hashlib.sha256).digest()
    assert commit_message(KEY, MESSAGE) == expected


def test_an_honest_opening_verifies() -> None:
    c = commit_message(KEY, MESSAGE)
    verify_commitment(KEY, MESSAGE, c)
    tag = tag_commitment(SERVER_KEY, c, CONTEXT)
    verify_tag(SERVER_KEY, c, CONTEXT, tag)


MESSAGE_CHANGES = {
    "message_id": "n" * 22,
    "sender_account": "carol",
    "sender_device": "DEV2",
    "to_account": "dave",
    "sent_at_ms": 1_700_000_000_001,
    "text": "hellp",
}


@pytest.mark.parametrize("field", sorted(MESSAGE_CHANGES))
def test_every_message_field_is_bound(field: str) -> None:
    c = commit_message(KEY, MESSAGE)
    changed = dataclasses.replace(MESSAGE, **{field: MESSAGE_CHANGES[field]})
    with pytest.raises(VerificationError):
        verify_commitment(KEY, changed, c)


@pytest.mark.parametrize("field", ["blob_id", "name", "media_type", "size", "blob_sha256", "key"])
def test_every_attachment_field_is_bound(field: str) -> None:
    c = commit_message(KEY, MESSAGE)
    a = MESSAGE.attachments[0]
    value = getattr(a, field)
    new = (
        value + 1
        if isinstance(value, int)
        else (b"\x03" * 32 if isinstance(value, bytes) else value + "x")
    )
    changed = dataclasses.replace(MESSAGE, attachments=(dataclasses.replace(a, **{field: new}),))
    with pytest.raises(VerificationError):
        verify_commitment(KEY, changed, c)


def test_group_and_direct_conversations_differ() -> None:
    group = dataclasses.replace(MESSAGE, to_account=None, to_group="bob")
    assert commit_message(KEY, group) != commit_message(KEY, MESSAGE)
    with pytest.raises(InvalidInput):
        dataclasses.replace(MESSAGE, to_group="club")  # both set


@pytest.mark.parametrize(
    "change",
    [
        {"sender_account": "carol"},
        {"sender_device": "DEV2"},
        {"conversation": "group:bob"},
        {"accepted_at_ms": CONTEXT.accepted_at_ms + 1},
        {"message_id": "n" * 22},
    ],
)
def test_every_tag_field_is_bound(change: dict[str, object]) -> None:
    c = commit_message(KEY, MESSAGE)
    tag = tag_commitment(SERVER_KEY, c, CONTEXT)
    with pytest.raises(VerificationError):
        verify_tag(SERVER_KEY, c, dataclasses.replace(CONTEXT, **change), tag)


@given(
    key=st.binary(min_size=32, max_size=32),
    other=st.binary(min_size=32, max_size=32),
    text=st.text(max_size=200),
    bit=st.integers(0, 255),
)
def test_wrong_keys_and_flipped_bits_never_verify(
    key: bytes, other: bytes, text: str, bit: int
) -> None:
    message = dataclasses.replace(MESSAGE, text=text)
    c = commit_message(FrankingKey(key), message)
    if other != key:
        with pytest.raises(VerificationError):
            verify_commitment(other, message, c)
    flipped = bytearray(c)
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationError):
        verify_commitment(key, message, bytes(flipped))
    tag = tag_commitment(SERVER_KEY, c, CONTEXT)
    bad = bytearray(tag)
    bad[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(VerificationError):
        verify_tag(SERVER_KEY, c, CONTEXT, bytes(bad))


def test_wrong_sizes_are_refused() -> None:
    with pytest.raises(InvalidInput):
        commit_message(FrankingKey(b"short"), MESSAGE)
    with pytest.raises(VerificationError):
        verify_commitment(KEY, MESSAGE, b"\x00" * 31)
    with pytest.raises(InvalidInput):
        tag_commitment(b"\x00" * 16, b"\x00" * 32, CONTEXT)
