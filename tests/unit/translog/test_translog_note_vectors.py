"""C2SP signed-note, tlog-checkpoint and tlog-cosignature: external vectors.

See tests/vectors/signed_note/README.md for where each vector comes from, and for the notes
rebuilt here from pieces of the same file (each place is marked REBUILT).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from accord.errors import AccordError, InvalidInput, VerificationError
from accord.protocols.translog import note as tn

VECTORS = Path(__file__).parents[2] / "vectors" / "signed_note"
DATA = json.loads((VECTORS / "signed_note_vectors.json").read_text())
SPEC = json.loads((VECTORS / "c2sp_spec_examples.json").read_text())
NOTES = {v["id"]: v for v in DATA["signed_notes"]}
KEYS = {k["name"]: k for k in DATA["keys"]}

PETER_VKEY = KEYS["PeterNeumann"]["vkey"]
TEXT = NOTES["gomod_sign_output"]["expect"]["text"]
PETER_SIG = "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"  # noqa: E501


def verifiers(vkeys: list[str]) -> list[tn.Verifier]:
    return [tn.parse_vkey(v) for v in vkeys]


def note_bytes(vector: dict[str, Any]) -> bytes:
    if "note_bytes_hex" in vector:
        return bytes.fromhex(vector["note_bytes_hex"])
    return str(vector["note"]).encode()


# --------------------------------------------------------------------------------------------
# Keys


@pytest.mark.parametrize(
    "key", [k for k in DATA["keys"] if k["sig_type"] in (1, 4)], ids=lambda k: k["name"]
)
def test_vkeys_parse_and_derive_their_key_id(key: dict[str, Any]) -> None:
    v = tn.parse_vkey(key["vkey"])
    assert v.name == key["name"]
    assert f"{v.key_id:08x}" == key["key_id_hex"]
    assert v.public_key.hex() == key["public_key_hex"]
    assert v.sig_type == key["sig_type"]
    assert v.vkey == key["vkey"]
    assert tn.key_id(v.name, v.sig_type, v.public_key) == v.key_id


@pytest.mark.parametrize("key", [k for k in DATA["keys"] if "skey" in k], ids=lambda k: k["name"])
def test_skeys_derive_their_vkey(key: dict[str, Any]) -> None:
    signer = tn.parse_skey(key["skey"])
    assert signer.vkey == key["vkey"]
    assert signer.skey == key["skey"]


def test_unsupported_key_types_are_refused() -> None:
    # ML-DSA-44 (type 0x06); its written key ID is not even the derived one.
    with pytest.raises(InvalidInput):
        tn.parse_vkey(KEYS["test"]["vkey"])


@pytest.mark.parametrize(
    "vector",
    [v for v in DATA["vkey_parse_vectors"] if "vkey" in v],
    ids=lambda v: v["why"],
)
def test_vkey_parse_vectors(vector: dict[str, Any]) -> None:
    if vector["want_error"]:
        with pytest.raises(InvalidInput):
            tn.parse_vkey(vector["vkey"])
    else:
        tn.parse_vkey(vector["vkey"])


def mangled(text: str) -> list[str]:
    """golang/mod TestNewVerifier/TestNewSigner: every proper substring b[i:j] and every
    single-byte increment b[i]+1 must be rejected."""
    raw = text.encode()
    out = {raw[i:j] for i in range(len(raw) + 1) for j in range(i, len(raw) + 1)} - {raw}
    for i in range(len(raw)):
        out.add(raw[:i] + bytes([(raw[i] + 1) % 256]) + raw[i + 1 :])
    return [m.decode("utf-8", "replace") for m in sorted(out)]


def test_every_mangled_vkey_is_refused() -> None:
    vector = next(v for v in DATA["vkey_parse_vectors"] if "mangling_rule" in v and "vkey" in v)
    tn.parse_vkey(vector["vkey"])
    for bad in mangled(vector["vkey"]):
        with pytest.raises(InvalidInput):
            tn.parse_vkey(bad)


def test_every_mangled_skey_is_refused() -> None:
    vector = next(v for v in DATA["vkey_parse_vectors"] if "skey" in v)
    tn.parse_skey(vector["skey"])
    for bad in mangled(vector["skey"]):
        with pytest.raises(InvalidInput):
            tn.parse_skey(bad)


# --------------------------------------------------------------------------------------------
# Signed notes


def test_sign_reproduces_golang_mod_output() -> None:
    # REBUILT: golang/mod TestSign signs TEXT with the PeterNeumann skey; Ed25519 is
    # deterministic, so the line must equal the PeterNeumann line of the upstream notes.
    signer = tn.parse_skey(KEYS["PeterNeumann"]["skey"])
    encoded = tn.sign_note(TEXT, [signer])
    assert encoded == TEXT + "\n" + PETER_SIG
    assert PETER_SIG in NOTES["gomod_open_one_known"]["note"]
    verified = tn.verify_note(encoded, verifiers([PETER_VKEY]))
    assert verified.text == TEXT


NOTE_IDS = [
    "gomod_open_one_known",
    "gomod_open_both_known",
    "gomod_open_none_known",
    "gomod_duplicate_verifier_used",
    "gomod_duplicate_verifier_unused",
    "gomod_dup_verified_and_unverified",
    "c2sp_signed_note_example",
    "sumdb_checkpoint_unknown_sigs",
    "arche_clobbered_size",
] + [f"gomod_malformed_{i}" for i in range(7)]


@pytest.mark.parametrize("vector_id", NOTE_IDS)
def test_signed_note_vectors(vector_id: str) -> None:
    vector = NOTES[vector_id]
    expect = vector["expect"]
    trusted = verifiers(vector["verifier_keys"])
    if not expect["ok"]:
        error = expect["error"]
        wanted: type[AccordError] = InvalidInput if error == "malformed note" else AccordError
        with pytest.raises(wanted):
            tn.verify_note(note_bytes(vector), trusted)
        return
    verified = tn.verify_note(note_bytes(vector), trusted)
    if "verified" in expect:
        assert [s.key_label for s in verified.verified] == expect["verified"]
    if "unverified" in expect:
        assert [s.key_label for s in verified.unknown] == expect["unverified"]
    if "verified_count" in expect:
        assert len(verified.verified) == expect["verified_count"]
    if "unverified_count" in expect:
        assert len(verified.unknown) == expect["unverified_count"]
    if "text" in expect:
        assert verified.text == expect["text"]


def test_no_known_key_lists_unknown_signatures() -> None:
    vector = NOTES["gomod_open_none_known"]
    with pytest.raises(VerificationError, match="no verifiable signatures"):
        tn.verify_note(vector["note"], [])
    parsed = tn.parse_unverified_note(vector["note"])
    labels = [s.key_label for s in parsed.signatures]
    assert labels == vector["expect"]["unverified"]


def test_ambiguous_key_message() -> None:
    vector = NOTES["gomod_duplicate_verifier_used"]
    with pytest.raises(VerificationError, match=r"ambiguous key EnochRoot\+af0cfe78"):
        tn.verify_note(vector["note"], verifiers(vector["verifier_keys"]))


def test_101_signatures_are_malformed() -> None:
    # REBUILT: golang/mod TestOpen, text + "\n" + strings.Repeat(peterSig, 101).
    too_many = TEXT + "\n" + PETER_SIG * 101
    for trusted in (verifiers([PETER_VKEY]), []):
        with pytest.raises(InvalidInput):
            tn.verify_note(too_many, trusted)
    # 100 (and so the 16 C2SP asks for) are accepted.
    tn.verify_note(TEXT + "\n" + PETER_SIG * 100, verifiers([PETER_VKEY]))


def test_corrupted_known_signature_rejects_the_note() -> None:
    # REBUILT: golang/mod TestOpen, peterSig[:60] + "ABCD" + peterSig[60:] (byte offsets).
    raw = PETER_SIG.encode()
    corrupted = (TEXT + "\n").encode() + raw[:60] + b"ABCD" + raw[60:]
    with pytest.raises(VerificationError, match=r"invalid signature for key PeterNeumann\+"):
        tn.verify_note(corrupted, verifiers([PETER_VKEY]))


def test_quasimodo_splits_at_the_last_blank_line() -> None:
    vector = SPEC["quasimodo_note"]
    parsed = tn.parse_unverified_note(vector["note"])
    assert parsed.text == vector["expect"]["text"]
    want = vector["expect"]["signatures"]
    assert [(s.name, f"{s.key_id:08x}") for s in parsed.signatures] == [
        (w["name"], w["key_id_hex"]) for w in want
    ]
    assert NOTES["c2sp_quasimodo_example"]["expect"]["text"] == parsed.text


# --------------------------------------------------------------------------------------------
# Checkpoints


def sumdb_note(lines: int) -> str:
    # REBUILT: sumdb_checkpoint(_4_sigs) are the upstream note with its first 1 (or 4)
    # signature lines; sumdb_checkpoint_unknown_sigs is the same note with more appended.
    full = NOTES["sumdb_checkpoint_unknown_sigs"]["note"]
    body, sigs = full.split("\n\n", 1)
    return body + "\n\n" + "".join(line + "\n" for line in sigs.splitlines()[:lines])


def test_sumdb_checkpoint() -> None:
    vector = NOTES["sumdb_checkpoint"]
    expect = vector["expect"]
    log = verifiers(vector["verifier_keys"])
    vc = tn.verify_checkpoint(sumdb_note(1), log_verifiers=log, origin=expect["origin"])
    assert vc.checkpoint.origin == expect["origin"]
    assert vc.checkpoint.size == expect["size"]
    assert vc.checkpoint.root_hash.hex() == expect["root_hash_hex"]
    # ParseCheckpoint with the wrong origin must fail.
    with pytest.raises(VerificationError):
        tn.verify_checkpoint(
            sumdb_note(1), log_verifiers=log, origin="Go rocks but I might have the wrong ID"
        )


def test_sumdb_checkpoint_four_signatures() -> None:
    vector = NOTES["sumdb_checkpoint_4_sigs"]
    verified = tn.verify_note(sumdb_note(4), verifiers(vector["verifier_keys"]))
    assert len(verified.verified) == vector["expect"]["verified_count"] == 4


def arche_note() -> str:
    # REBUILT: the real arche2025h1 checkpoint is arche_clobbered_size with the size line
    # put back from "42" to expect.size; the result must verify under both published keys.
    real = NOTES["arche_real_cosigned_checkpoint"]["expect"]
    clobbered = NOTES["arche_clobbered_size"]["note"]
    origin = real["origin"]
    assert clobbered.startswith(f"{origin}\n42\n")
    return clobbered.replace(f"{origin}\n42\n", f"{origin}\n{real['size']}\n", 1)


def test_real_witness_cosigned_checkpoint() -> None:
    vector = NOTES["arche_real_cosigned_checkpoint"]
    expect = vector["expect"]
    log_key, witness_key = verifiers(vector["verifier_keys"])
    assert witness_key.sig_type == tn.SIG_TYPE_COSIGNATURE_V1
    vc = tn.verify_checkpoint(
        arche_note(),
        log_verifiers=[log_key],
        origin=expect["origin"],
        witness_verifiers=[witness_key],
        witness_quorum=1,
    )
    assert vc.checkpoint.size == expect["size"]
    assert vc.checkpoint.root_hash.hex() == expect["root_hash_hex"]
    assert [s.key_label for s in vc.log_signatures] == [log_key.key_label]
    assert [s.key_label for s in vc.witness_signatures] == [witness_key.key_label]
    # The other four lines (a type 0x05 RFC 6962 signature and three other witnesses) are
    # unknown and ignored; one of them shares the log's name.
    assert len(vc.note.unknown) == 4
    (cosig,) = vc.witness_signatures
    timestamp = tn.verify_cosignature(vc.note.text, cosig, witness_key)
    assert timestamp == expect["remora_cosignature_timestamp"]
    message = tn.cosignature_message(vc.note.text, timestamp)
    assert message.decode() == expect["remora_signed_message"]


def test_real_checkpoint_with_clobbered_size_fails_both_keys() -> None:
    vector = NOTES["arche_clobbered_size"]
    log_key, witness_key = verifiers(vector["verifier_keys"])
    with pytest.raises(VerificationError):
        tn.verify_note(vector["note"], [log_key])
    with pytest.raises(VerificationError):
        tn.verify_note(vector["note"], [witness_key])
    cosig_line = next(line for line in vector["note"].splitlines() if "remora" in line)
    body = vector["note"].split("\n\n")[0] + "\n"
    with pytest.raises(VerificationError):
        tn.verify_cosignature(body, cosig_line, witness_key)


def test_witness_quorum_not_met() -> None:
    vector = NOTES["arche_real_cosigned_checkpoint"]
    log_key, witness_key = verifiers(vector["verifier_keys"])
    other_witness = tn.parse_vkey(tn.generate_cosigner("other.example/witness")[1])
    with pytest.raises(VerificationError, match="quorum"):
        tn.verify_checkpoint(
            arche_note(),
            log_verifiers=[log_key],
            witness_verifiers=[witness_key, other_witness],
            witness_quorum=2,
        )


@pytest.mark.parametrize(
    "vector", DATA["parse_checkpoint_scenarios"]["scenarios"], ids=lambda v: v["desc"]
)
def test_parse_checkpoint_scenarios(vector: dict[str, Any]) -> None:
    """transparency-dev/formats TestParseCheckpoint: the log key must sign, origin must match."""
    if vector["note"] is None:  # "no sigs": not even a note
        with pytest.raises(InvalidInput):
            tn.parse_unverified_note(DATA["parse_checkpoint_scenarios"]["body"])
        assert vector["want_error"]
        return
    log = tn.parse_vkey(vector["log_vkey"])
    others = verifiers(vector["other_vkeys"])
    verified = tn.verify_note(vector["note"], [log, *others])
    assert len(verified.verified) == vector["want_verified_sigs"]
    # The upstream body's root is 6 bytes ("abcdef"), so our strict (32-byte) checkpoint
    # parser refuses even the happy scenarios; check the signature part of the decision here
    # and the body with a lenient split.
    log_signed = any(s.key_label == log.key_label for s in verified.verified)
    lines = verified.text.splitlines()
    body_ok = len(lines) >= 3 and lines[0] == vector["expected_origin"] and lines[1].isdigit()
    assert (log_signed and body_ok) is not vector["want_error"]
    with pytest.raises(AccordError):
        tn.verify_checkpoint(vector["note"], log_verifiers=[log], origin=vector["expected_origin"])


# --------------------------------------------------------------------------------------------
# Checkpoint bodies and cosignature encodings


@pytest.mark.parametrize("vector", DATA["checkpoint_body_vectors"], ids=lambda v: repr(v["body"]))
def test_checkpoint_body_vectors(vector: dict[str, Any]) -> None:
    want = vector.get("want")
    strict_ok = (
        want is not None
        and len(bytes.fromhex(want["hash_hex"])) == 32
        and all(line for line in want.get("rest", "").split("\n")[:-1])
    )
    if not strict_ok:
        # Upstream failures, and upstream-lenient bodies (non-32-byte hash, empty extension
        # lines) that C2SP's rules make invalid for a SHA-256 log.
        with pytest.raises(InvalidInput):
            tn.parse_checkpoint(vector["body"])
        return
    assert want is not None
    cp = tn.parse_checkpoint(vector["body"])
    assert (cp.origin, cp.size, cp.root_hash.hex()) == (
        want["origin"],
        want["size"],
        want["hash_hex"],
    )
    assert "".join(line + "\n" for line in cp.extensions) == want.get("rest", "")
    assert cp.to_text() == vector["body"]


def test_c2sp_cosignature_example() -> None:
    vector = DATA["cosignature_vectors"]["c2sp_example"]
    note = tn.parse_unverified_note(vector["checkpoint"])
    cosig = note.signatures[1]
    assert f"{cosig.key_id:08x}" == vector["cosig_key_id_hex"]
    assert 4 + len(cosig.signature) == vector["cosig_len"]
    timestamp, _ = tn.split_cosignature(cosig.signature)
    assert timestamp == vector["cosig_timestamp"]
    message = tn.cosignature_message(note.text, timestamp).decode()
    assert message == vector["expected_signed_message"]


@pytest.mark.parametrize(
    "vector",
    DATA["cosignature_vectors"]["transparency_dev_timestamp_vectors"],
    ids=lambda v: v["sig_base64"][:12],
)
def test_cosignature_timestamp_vectors(vector: dict[str, Any]) -> None:
    def parse() -> int:
        line = f"\u2014 witness {vector['sig_base64']}"
        return tn.split_cosignature(tn.parse_signature_line(line).signature)[0]

    if vector["want_error"]:
        with pytest.raises(InvalidInput):
            parse()
    else:
        assert parse() == vector["want_timestamp"]


def test_spec_cosignature_example_bytes() -> None:
    raw = base64.b64decode(
        DATA["cosignature_vectors"]["c2sp_example"]["checkpoint"].splitlines()[-1].split()[-1]
    )
    assert len(raw) == 76
