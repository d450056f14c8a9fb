"""The parsers at the edges of lawful access (server requests, key and warrant files, sync
answers, agency tokens) accept only what they should and fail with `InvalidInput` (or the one
authentication error) on anything else, whatever the input."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from access_world import NOW, World
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.client import authority as au
from accord.errors import AuthenticationError, InvalidInput, VerificationError
from accord.primitives.encoding import b64url, canonical_json
from accord.protocols.access.agency import SignedAgencyKey
from accord.protocols.access.approvers import SignedApproverSet
from accord.protocols.access.device import WarrantDelivery
from accord.protocols.access.log_entries import DisclosureExtensionEntry
from accord.protocols.access.records import SealedRecord
from accord.protocols.access.warrant import SignedWarrant, verify_warrant_approvals
from accord.server.access.agency import check_agency_token, make_agency_token
from accord.server.access.objects import MAX_SIGNED_OBJECT_BYTES, parse_signed_object
from accord.wire.access import AccessSync
from accord_testing import JSON_VALUES

json_values = JSON_VALUES
json_objects = st.dictionaries(st.text(max_size=20), json_values, max_size=8)

READERS = [
    (SignedApproverSet.from_obj, "approver set"),
    (SignedAgencyKey.from_obj, "agency key"),
    (SignedWarrant.from_obj, "warrant"),
    (lambda o: SealedRecord.from_bytes(canonical_json(o)), "record"),
    (lambda o: WarrantDelivery.from_bytes(canonical_json(o)), "delivery"),
    (DisclosureExtensionEntry.from_obj, "disclosure extension"),
]


@settings(max_examples=300, deadline=None)
@given(obj=json_objects, which=st.integers(0, len(READERS) - 1))
def test_signed_objects_from_requests_fail_only_as_invalid_input(
    obj: dict[str, Any], which: int
) -> None:
    reader, what = READERS[which]
    try:
        parse_signed_object(obj, reader, what)
    except InvalidInput:
        pass


def _mutations(obj: Any) -> list[Any]:
    """Every copy of ``obj`` with one leaf changed (numbers +1, strings altered, bools flipped)."""
    out: list[Any] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += [{**obj, k: m} for m in _mutations(v)]
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += [obj[:i] + [m] + obj[i + 1 :] for m in _mutations(v)]
    elif isinstance(obj, bool):
        out.append(not obj)
    elif isinstance(obj, int):
        out.append(obj + 1)
    elif isinstance(obj, str):
        out.append(obj[:-1] + ("A" if obj[-1:] != "A" else "B"))
    return out


def test_any_change_to_a_submitted_warrant_voids_it(world: World) -> None:
    """A request body changed in any one place either fails to parse or no longer verifies."""
    signed = world.approve(world.draft(), "judge", "commissioner")
    for mutated in _mutations(signed.to_obj()):
        try:
            parsed = parse_signed_object(mutated, SignedWarrant.from_obj, "warrant")
        except InvalidInput:
            continue
        if parsed == signed:  # an equivalent encoding of the same value (e.g. a role alias)
            continue
        with pytest.raises(VerificationError):  # refused, never accepted
            verify_warrant_approvals(parsed, world.approver_set)


def test_oversized_signed_object_refused() -> None:
    with pytest.raises(InvalidInput):
        parse_signed_object({"x": "a" * MAX_SIGNED_OBJECT_BYTES}, SignedWarrant.from_obj, "w")


FILE_READERS = [
    (au.TYPE_APPROVER_KEY, au.approver_key_from),
    (au.TYPE_APPROVER, au.approver_from),
    (au.TYPE_APPROVER_SET, au.approver_set_from),
    (au.TYPE_AGENCY_KEY, au.agency_key_from),
    (au.TYPE_AGENCY_PUBLIC, au.agency_public_from),
    (au.TYPE_AGENCY_REGISTRATION, au.registration_from),
    (au.TYPE_WARRANT, au.warrant_from),
]


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), which=st.integers(0, len(FILE_READERS) - 1))
def test_files_fail_only_as_invalid_input(data: bytes, which: int) -> None:
    kind, reader = FILE_READERS[which]
    try:
        reader(au.parse_object(data, kind, what="file"))
    except InvalidInput:
        pass


@settings(max_examples=300, deadline=None)
@given(obj=json_objects, which=st.integers(0, len(FILE_READERS) - 1))
def test_typed_files_fail_only_as_invalid_input(obj: dict[str, Any], which: int) -> None:
    kind, reader = FILE_READERS[which]
    data = json.dumps({**obj, "type": kind}).encode()
    try:
        reader(au.parse_object(data, kind, what="file"))
    except InvalidInput:
        pass


def test_key_files_round_trip_and_stay_private(tmp_path: Any) -> None:
    approver = au.generate_approver_key("judge", "issuing_authority", tmp_path / "j.key")
    assert (tmp_path / "j.key").stat().st_mode & 0o777 == 0o600
    key = au.load_approver_key(tmp_path / "j.key")
    assert key.approver == approver == au.load_approver_public(tmp_path / "j.key.pub")
    assert "seed" not in repr(key) and repr(key.signer) == "ApproverSigner('judge')"
    public = au.generate_agency_key("nca", tmp_path / "a.key")
    assert au.load_agency_key(tmp_path / "a.key").private_key.public_key() == public
    with pytest.raises(InvalidInput):  # a key file is never overwritten
        au.generate_agency_key("nca", tmp_path / "a.key")
    with pytest.raises(InvalidInput):
        au.read_warrant(tmp_path / "j.key.pub")  # the wrong kind of file


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=200))
def test_agency_token_checker_fails_only_as_unauthenticated(token: str) -> None:
    with pytest.raises(AuthenticationError):
        check_agency_token(secrets.token_bytes(32), bytes(32), token, now=NOW)


def test_agency_token_binds_warrant_expiry_and_key() -> None:
    secret, wid = secrets.token_bytes(32), secrets.token_bytes(32)
    token = make_agency_token(secret, wid, NOW + 60)
    check_agency_token(secret, wid, b64url(token), now=NOW)
    for bad_secret, bad_wid, now in (
        (secrets.token_bytes(32), wid, NOW),  # another server's key
        (secret, secrets.token_bytes(32), NOW),  # another warrant
        (secret, wid, NOW + 60),  # expired
    ):
        with pytest.raises(AuthenticationError):
            check_agency_token(bad_secret, bad_wid, b64url(token), now=now)
    for i in range(len(token)):
        flipped = bytearray(token)
        flipped[i] ^= 1
        with pytest.raises(AuthenticationError):
            check_agency_token(secret, wid, b64url(bytes(flipped)), now=NOW)


@settings(max_examples=200, deadline=None)
@given(obj=json_objects)
def test_sync_answer_validation_never_crashes(obj: dict[str, Any]) -> None:
    try:
        AccessSync.model_validate(obj)
    except ValueError:
        pass
