"""Private-matching log entries: one canonical encoding each; anything else is refused."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.private_matching.log_entries import (
    HOUR_MS,
    TAG_HASH_LIST_VERSION,
    TAG_THRESHOLD_CROSSING,
    BankVersionRef,
    HashListVersion,
    TableDeltaRef,
    ThresholdCrossing,
    crossing_commitment,
    parse_matching_entry,
)
from accord.protocols.translog.entries import KNOWN_TAGS, OtherEntry, parse_entry

TABLE = HashListVersion(
    table_version=3,
    table_digest="ab" * 32,
    banks=(BankVersionRef(name="ncmec", version="01" * 32), BankVersionRef("iwf", "02" * 32)),
    published_at=1_700_000_000_000,
)


def test_round_trip_and_exact_bytes() -> None:
    data = TABLE.to_bytes()
    assert data.startswith(b'{"banks":[{"name":"ncmec","version":"0101')
    assert json.loads(data)["type"] == TAG_HASH_LIST_VERSION
    assert parse_matching_entry(data) == TABLE
    assert TABLE.digest_bytes == bytes.fromhex("ab" * 32)
    crossing = ThresholdCrossing.at(1_700_000_123_456, bytes(32))
    assert crossing.hour == 1_700_000_123_456 - 1_700_000_123_456 % HOUR_MS
    assert crossing.commitment == crossing_commitment(bytes(32)) != crossing_commitment(b"\1" * 32)
    assert parse_matching_entry(crossing.to_bytes()) == crossing
    # the generic log parser counts both types without parsing them
    for entry in (TABLE, crossing):
        assert parse_entry(entry.to_bytes()) == OtherEntry(type=entry.TYPE)
    assert TAG_THRESHOLD_CROSSING in KNOWN_TAGS and TAG_HASH_LIST_VERSION in KNOWN_TAGS


def test_a_version_built_as_a_delta_names_it() -> None:
    built = HashListVersion(
        table_version=4,
        table_digest="cd" * 32,
        banks=TABLE.banks,
        published_at=TABLE.published_at + 1,
        delta=TableDeltaRef(base_digest="ab" * 32, delta_digest="ef" * 32),
    )
    data = built.to_bytes()
    assert json.loads(data)["delta"] == {"base_digest": "ab" * 32, "delta_digest": "ef" * 32}
    assert parse_matching_entry(data) == built
    assert "delta" not in json.loads(TABLE.to_bytes())  # a full build's entry is unchanged
    obj = json.loads(data)
    for bad in (
        {**obj, "delta": None},
        {**obj, "delta": {"base_digest": "ab" * 32}},
        {**obj, "delta": {**obj["delta"], "extra": "x"}},
        {**obj, "delta": {**obj["delta"], "delta_digest": "EF" * 32}},
        {**obj, "delta": {**obj["delta"], "base_digest": obj["table_digest"]}},
        {**obj, "delta": [obj["delta"]]},
    ):
        with pytest.raises(InvalidInput):
            parse_matching_entry(json.dumps(bad, sort_keys=True, separators=(",", ":")).encode())


def test_non_canonical_and_malformed_are_refused() -> None:
    obj = json.loads(TABLE.to_bytes())
    bad = [
        json.dumps(obj).encode(),  # same fields, other bytes
        json.dumps({**obj, "extra": 1}, sort_keys=True, separators=(",", ":")).encode(),
        b"",
        b"[]",
        b'{"type":"accord.device.registration.v1"}',
        json.dumps({**obj, "table_digest": "AB" * 32}).encode(),
        json.dumps({**obj, "banks": []}).encode(),
        json.dumps({**obj, "banks": [obj["banks"][0]] * 2}).encode(),
        json.dumps({**obj, "table_version": True}).encode(),
        json.dumps({"type": TAG_THRESHOLD_CROSSING, "hour": 5, "commitment": "00" * 32}).encode(),
        b'{"type":"x","pad":"' + b"a" * 20000 + b'"}',
    ]
    for data in bad:
        with pytest.raises(InvalidInput):
            parse_matching_entry(data)
    with pytest.raises(InvalidInput):
        BankVersionRef(name="../etc", version="00" * 32)
    with pytest.raises(InvalidInput):
        crossing_commitment(b"short")


@settings(max_examples=300)
@given(st.binary(max_size=400) | st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
    st.sampled_from(["type", "table_version", "table_digest", "banks", "published_at", "hour",
                     "commitment", "delta"]),
    st.one_of(st.integers(), st.text(max_size=70), st.lists(st.dictionaries(
        st.sampled_from(["name", "version"]), st.text(max_size=70)), max_size=3),
        st.dictionaries(st.sampled_from(["base_digest", "delta_digest", "x"]),
                        st.text(max_size=70) | st.sampled_from(["ab" * 32, "cd" * 32])),
        st.sampled_from([TAG_HASH_LIST_VERSION, TAG_THRESHOLD_CROSSING])),
)))  # fmt: skip
def test_parser_never_crashes(data: bytes) -> None:
    try:
        entry = parse_matching_entry(data)
    except InvalidInput:
        return
    assert entry.to_bytes() == data
