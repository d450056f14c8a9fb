"""The deployment manifest format (protocols/manifest.py): M1-M3, each refusal, V5, and a fuzz
test of the parser and verifier (anything else than a valid manifest is refused cleanly)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput, VerificationError
from accord.protocols.manifest import (
    MAX_MANIFEST_BYTES,
    Manifest,
    parse_manifest_text,
    sign_manifest,
    verify_manifest,
    verify_manifest_update,
)
from accord.protocols.translog.note import (
    Checkpoint,
    CosignatureSigner,
    add_signatures,
    generate_cosigner,
    generate_signer,
    parse_skey,
    parse_unverified_note,
    sign_note,
)
from accord.protocols.translog.verify import (
    MAX_COSIGNATURE_FUTURE_SKEW_S,
    LogTrustPolicy,
    verify_checkpoint_fresh,
    verify_checkpoint_note,
)
from accord_testing import make_manifest, manifest_signer

LOG = parse_skey(generate_signer("log.test")[0])
WITNESS = parse_skey(generate_cosigner("witness.test/w1")[0])
SIGNER = manifest_signer("signer.test/one")
OTHER = manifest_signer("signer.test/two")


def _manifest(**changes: Any) -> Manifest:
    note = make_manifest(LOG.vkey, [WITNESS.vkey], signer=SIGNER)
    return dataclasses.replace(verify_manifest(note), **changes)


def test_a_signed_manifest_verifies_and_round_trips() -> None:
    manifest = _manifest()
    note = sign_manifest(manifest, [SIGNER])
    assert verify_manifest(note) == manifest == verify_manifest(note.encode())
    assert parse_manifest_text(manifest.to_text()) == manifest


@pytest.mark.parametrize(
    "changes",
    [
        {"deployment": ""},
        {"deployment": "a\nb"},
        {"serial": 0},
        {"log_origin": "another.log"},
        {"witnesses": ()},
        {"witnesses": (WITNESS.vkey, WITNESS.vkey)},
        {"witnesses": (LOG.vkey,)},
        {"witness_quorum": 0},
        {"witness_quorum": 2},
        {"max_checkpoint_age_s": 59},
        {"max_checkpoint_age_s": 31 * 24 * 3600},
        {"signers": ()},
        {"signers": (WITNESS.vkey,)},
        {"signer_quorum": 2},
    ],
)
def test_m3_every_field_out_of_its_limits_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput):
        _manifest(**changes)


@pytest.mark.parametrize(
    "bounds",
    [
        {"approver_genesis_set": "ab"},
        {"approver_genesis_set": "AB" * 32},
        {"max_disclosure_delay_s": -1},
        {"max_start_skew_s": 2**40},
    ],
)
def test_m3_lawful_access_bounds_out_of_limits_are_refused(bounds: dict[str, Any]) -> None:
    base = _manifest()
    with pytest.raises(InvalidInput):
        _manifest(lawful_access=dataclasses.replace(base.lawful_access, **bounds))


def test_m3_text_that_is_not_utf8_is_refused() -> None:
    """Found by the fuzz test below: a lone surrogate cannot be encoded, and is refused."""
    with pytest.raises(InvalidInput, match="UTF-8"):
        parse_manifest_text("\ud800")


def test_m3_only_the_canonical_encoding_is_accepted() -> None:
    text = _manifest().to_text()
    pretty = json.dumps(json.loads(text), indent=1) + "\n"
    with pytest.raises(InvalidInput, match="canonical"):
        parse_manifest_text(pretty)
    with pytest.raises(InvalidInput, match="not an Accord"):
        parse_manifest_text(text.replace("manifest.v1", "manifest.v2"))
    with pytest.raises(InvalidInput, match="too large"):
        parse_manifest_text(" " * (MAX_MANIFEST_BYTES + 1))


def test_m1_a_manifest_needs_a_quorum_of_its_own_signers() -> None:
    two = _manifest(signers=(SIGNER.vkey, OTHER.vkey), signer_quorum=2)
    one_signature = sign_manifest(two, [SIGNER])
    with pytest.raises(VerificationError) as caught:
        verify_manifest(one_signature)
    assert caught.value.code == "manifest_unsigned"
    both = add_signatures(one_signature, [OTHER.sign(two.to_text())])
    assert verify_manifest(both) == two
    by_a_stranger = sign_manifest(_manifest(), [OTHER])
    with pytest.raises(VerificationError):
        verify_manifest(by_a_stranger)


def test_m2_a_replacement_must_be_chained_and_newer() -> None:
    current = _manifest()
    newer = _manifest(serial=2)
    assert verify_manifest_update(current, sign_manifest(newer, [SIGNER])) == newer
    for note, code in (
        (
            sign_manifest(_manifest(serial=2, signers=(OTHER.vkey,)), [OTHER]),
            "manifest_not_chained",
        ),
        (sign_manifest(_manifest(serial=2, deployment="other"), [SIGNER]), "manifest_not_chained"),
        (sign_manifest(current, [SIGNER]), "manifest_rollback"),
    ):
        with pytest.raises(VerificationError) as caught:
            verify_manifest_update(current, note)
        assert caught.value.code == code


def _cosigned(*timestamps: int) -> Any:
    text = Checkpoint("log.test", 3, bytes(32)).to_text()
    note = sign_note(text, [LOG])
    witnesses = [WITNESS] + [
        parse_skey(generate_cosigner(f"witness.test/w{i}")[0])
        for i in range(2, len(timestamps) + 1)
    ]
    sigs = []
    for witness, when in zip(witnesses, timestamps, strict=False):
        assert isinstance(witness, CosignatureSigner)
        sigs.append(witness.sign(text, timestamp=when))
    policy = LogTrustPolicy(
        origin="log.test",
        log_verifiers=(LOG.verifier,),
        witness_verifiers=tuple(w.verifier for w in witnesses[: len(timestamps)]),
    )
    return verify_checkpoint_note(add_signatures(note, sigs), policy)


@pytest.mark.parametrize(
    ("timestamps", "fresh"),
    [
        ((1000,), True),
        ((1000 - 600,), True),
        ((1000 - 601,), False),
        ((1000 + MAX_COSIGNATURE_FUTURE_SKEW_S,), True),
        ((1000 + MAX_COSIGNATURE_FUTURE_SKEW_S + 1,), False),
        ((), False),
    ],
)
def test_v5_fresh_means_cosigned_within_the_maximum_age(
    timestamps: tuple[int, ...], fresh: bool
) -> None:
    verified = _cosigned(*timestamps)
    if fresh:
        verify_checkpoint_fresh(verified, quorum=1, now_s=1000, max_age_s=600)
        return
    with pytest.raises(VerificationError) as caught:
        verify_checkpoint_fresh(verified, quorum=1, now_s=1000, max_age_s=600)
    assert caught.value.code == "stale_checkpoint"


def test_v5_the_quorum_must_be_fresh_not_just_one_witness() -> None:
    verified = _cosigned(1000, 1)
    verify_checkpoint_fresh(verified, quorum=1, now_s=1000, max_age_s=600)
    with pytest.raises(VerificationError, match="1 witness cosignatures"):
        verify_checkpoint_fresh(verified, quorum=2, now_s=1000, max_age_s=600)


VALID_TEXT = _manifest().to_text()


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=400),
        st.binary(max_size=400).map(lambda b: b.decode("latin-1")),
        st.builds(
            lambda i, ch: VALID_TEXT[:i] + ch + VALID_TEXT[i + 1 :],
            st.integers(0, len(VALID_TEXT) - 1),
            st.characters(),
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=12), inner, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v) + "\n"),
    )
)
def test_fuzz_anything_but_a_valid_manifest_is_refused_cleanly(text: str) -> None:
    try:
        manifest = parse_manifest_text(text)
    except InvalidInput:
        return
    assert manifest.to_text() == text  # only the one canonical form gets through


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 2000))
def test_fuzz_a_mangled_signed_manifest_is_refused_cleanly(noise: bytes, at: int) -> None:
    note = sign_manifest(_manifest(), [SIGNER]).encode()
    at = min(at, len(note))
    mangled = note[:at] + noise + note[at + len(noise) :]
    try:
        manifest = verify_manifest(mangled)
    except (InvalidInput, VerificationError):
        return
    assert parse_unverified_note(mangled).text == manifest.to_text()
