"""The `matching_secret` payload a device sends its account's other devices over Olm: a round
trip, and a parser that refuses anything else with the one opaque payload error."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import DecryptionError
from accord.protocols.messaging import pad_payload
from accord.wire.messaging import DeviceRef, MatchingSecretShare, decode_payload, encode_payload

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)


def test_round_trip() -> None:
    share = MatchingSecretShare(
        sender=DeviceRef(account="alice", device_id="DEVICE01"), secret="A" * 43 + "=", images=7
    )
    assert decode_payload(encode_payload(share)) == share


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {"type": st.just("matching_secret")},
        optional={k: values for k in ("v", "sender", "secret", "images", "extra")},
    )
)
def test_parser_fuzz(obj: dict[str, object]) -> None:
    raw = json.dumps(obj).encode()
    try:
        parsed = decode_payload(pad_payload(raw))
    except DecryptionError:
        return
    assert isinstance(parsed, MatchingSecretShare) and 0 <= parsed.images <= 2**53
