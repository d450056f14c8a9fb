"""Signed notes, checkpoints and cosignatures: round trips, rejections and a parser fuzz."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput, TooLarge, VerificationError
from accord.protocols.translog import merkle
from accord.protocols.translog import note as tn

LOG_SKEY, LOG_VKEY = tn.generate_signer("log.example/accord")
W1_SKEY, W1_VKEY = tn.generate_cosigner("w1.example/witness")
W2_SKEY, W2_VKEY = tn.generate_cosigner("w2.example/witness")
LOG = tn.parse_skey(LOG_SKEY)
W1 = tn.parse_skey(W1_SKEY)
W2 = tn.parse_skey(W2_SKEY)

CHECKPOINT = tn.Checkpoint("log.example/accord", 5, merkle.leaf_hash(b"x"))


def test_generated_keys_round_trip() -> None:
    assert isinstance(LOG, tn.Signer) and not isinstance(LOG, tn.CosignatureSigner)
    assert isinstance(W1, tn.CosignatureSigner)
    assert tn.parse_vkey(LOG_VKEY) == LOG.verifier
    assert tn.parse_vkey(W1_VKEY).sig_type == tn.SIG_TYPE_COSIGNATURE_V1
    assert LOG_VKEY.startswith("log.example/accord+")
    assert LOG_SKEY.startswith("PRIVATE+KEY+log.example/accord+")
    assert "PRIVATE" not in repr(LOG) and LOG_SKEY.split("+", 4)[-1] not in repr(LOG)


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nbsp\u00a0", "x" * 257])
def test_bad_key_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        tn.generate_signer(name)


def test_checkpoint_round_trip_and_cosign() -> None:
    text = CHECKPOINT.to_text()
    assert tn.parse_checkpoint(text) == CHECKPOINT
    signed = tn.sign_note(text, [LOG])
    cosigs = [W1.sign(text, timestamp=1_700_000_000), W2.sign(text, timestamp=1_700_000_001)]
    full = tn.add_signatures(signed, cosigs)
    vc = tn.verify_checkpoint(
        full,
        log_verifiers=[LOG.verifier],
        origin=CHECKPOINT.origin,
        witness_verifiers=[W1.verifier, W2.verifier],
        witness_quorum=2,
    )
    assert vc.checkpoint == CHECKPOINT
    assert len(vc.witness_signatures) == 2
    assert tn.verify_cosignature(text, cosigs[0].to_line(), W1.verifier) == 1_700_000_000
    # A cosignature is not valid for another checkpoint, nor with another timestamp.
    other = tn.Checkpoint(CHECKPOINT.origin, 6, CHECKPOINT.root_hash).to_text()
    with pytest.raises(VerificationError):
        tn.verify_cosignature(other, cosigs[0], W1.verifier)
    forged = tn.NoteSignature(
        cosigs[0].name, cosigs[0].key_id, (1).to_bytes(8, "big") + cosigs[0].signature[8:]
    )
    with pytest.raises(VerificationError):
        tn.verify_cosignature(text, forged, W1.verifier)
    with pytest.raises(VerificationError):
        tn.verify_cosignature(text, cosigs[0], W2.verifier)
    with pytest.raises(VerificationError):
        tn.verify_cosignature(text, cosigs[0], LOG.verifier)


def test_checkpoint_needs_the_log_signature() -> None:
    text = CHECKPOINT.to_text()
    only_witness = tn.sign_note(text, [W1], timestamp=1)
    with pytest.raises(VerificationError):
        tn.verify_checkpoint(
            only_witness, log_verifiers=[LOG.verifier], witness_verifiers=[W1.verifier]
        )
    with pytest.raises(VerificationError):
        tn.verify_checkpoint(tn.sign_note(text, [LOG]), log_verifiers=[W1.verifier])


def test_plain_ed25519_signature_is_not_a_cosignature() -> None:
    # Same key bytes, type 0x01 vs 0x04: different key IDs, and a note signature is never
    # accepted as a cosignature (domain separation by the cosignature/v1 header).
    text = CHECKPOINT.to_text()
    plain = tn.Signer(W1.name, W1._private)  # type: ignore[attr-defined]
    assert plain.key_id != W1.key_id
    sig = plain.sign(text)
    fake = tn.NoteSignature(W1.name, W1.key_id, (0).to_bytes(8, "big") + sig.signature)
    with pytest.raises(VerificationError):
        tn.verify_cosignature(text, fake, W1.verifier)


def test_cosigner_skey_keeps_its_type() -> None:
    again = tn.parse_skey(W1.skey)
    assert isinstance(again, tn.CosignatureSigner) and again.vkey == W1_VKEY


@pytest.mark.parametrize(
    "body",
    [
        "",
        "origin\n5\n",
        "origin\n5\nAAAA\n",  # root not 32 bytes
        "origin\n05\n" + CHECKPOINT.to_text().split("\n")[2] + "\n",  # leading zero
        "origin\n-5\n" + CHECKPOINT.to_text().split("\n")[2] + "\n",
        "origin\n18446744073709551616\n" + CHECKPOINT.to_text().split("\n")[2] + "\n",
        "origin\n5\n" + CHECKPOINT.to_text().split("\n")[2],  # no final newline
        CHECKPOINT.to_text() + "\n",  # empty extension line
        "\n5\n" + CHECKPOINT.to_text().split("\n")[2] + "\n",  # empty origin
        CHECKPOINT.to_text().replace("=\n", "\n"),  # unpadded base64
    ],
)
def test_malformed_checkpoints(body: str) -> None:
    with pytest.raises(InvalidInput):
        tn.parse_checkpoint(body)


def test_checkpoint_limits() -> None:
    cp = tn.parse_checkpoint(f"o\n{2**64 - 1}\n" + CHECKPOINT.to_text().split("\n")[2] + "\n")
    assert cp.size == 2**64 - 1
    with pytest.raises(InvalidInput):
        tn.Checkpoint("o", 2**64, CHECKPOINT.root_hash)
    with pytest.raises(InvalidInput):
        tn.Checkpoint("o\nx", 1, CHECKPOINT.root_hash)


@pytest.mark.parametrize(
    "encoded",
    [
        "text\n",  # no signature block
        "text\n\n",  # empty signature block
        "text\n\n\u2014 name AAAAAA==\n",  # signature shorter than 5 bytes
        "text\n\n- name AAAAAAAA\n",  # hyphen, not em dash
        "text\n\n\u2014 name AAAAAAAA",  # no final newline
        "text\n\n\u2014 name  AAAAAAAA\n",  # two spaces
        "text\n\n\u2014 nameAAAAAAAA\n",  # no space
        "text\n\n\u2014 name AAAAAAAA\n\n",  # trailing blank line
        "te\rxt\n\n\u2014 name AAAAAAAA\n",  # control character
        "text\n\n\u2014 name AAAAAAA\n",  # bad base64
        "text\n\n\u2014 name AAAAAAB=\n",  # non-canonical base64 (unused bits set)
    ],
)
def test_malformed_notes(encoded: str) -> None:
    with pytest.raises(InvalidInput):
        tn.parse_unverified_note(encoded)


def test_note_size_limit() -> None:
    big = "x" * tn.MAX_NOTE_SIZE_BYTES + "\n\n\u2014 n AAAAAAAA\n"
    with pytest.raises(TooLarge):
        tn.parse_unverified_note(big)
    with pytest.raises(InvalidInput):
        tn.parse_unverified_note(b"\xff\n\n" + "\u2014 n AAAAAAAA\n".encode())


def test_sixteen_signatures_are_accepted() -> None:
    text = CHECKPOINT.to_text()
    cosigners = [tn.parse_skey(tn.generate_cosigner(f"w{i}.example")[0]) for i in range(16)]
    encoded = tn.add_signatures(
        tn.sign_note(text, [LOG]), [c.sign(text, timestamp=i) for i, c in enumerate(cosigners)]
    )
    vc = tn.verify_checkpoint(
        encoded,
        log_verifiers=[LOG.verifier],
        witness_verifiers=[c.verifier for c in cosigners],
        witness_quorum=16,
    )
    assert len(vc.witness_signatures) == 16


def test_signing_refuses_malformed_text() -> None:
    for text in ["no newline", "ctrl\x07\n", ""]:
        with pytest.raises(InvalidInput):
            tn.sign_note(text, [LOG])
    with pytest.raises(InvalidInput):
        W1.sign(CHECKPOINT.to_text(), timestamp=2**63)


# --------------------------------------------------------------------------------------------
# Properties


note_texts = st.lists(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n").filter(
            lambda c: ord(c) >= 0x20
        ),
        max_size=40,
    ),
    min_size=1,
    max_size=6,
).map(lambda lines: "".join(line + "\n" for line in lines))


@settings(max_examples=100, deadline=None)
@given(text=note_texts, data=st.data())
def test_sign_verify_round_trip_and_any_change_is_rejected(text: str, data: st.DataObject) -> None:
    encoded = tn.sign_note(text, [LOG, W1], timestamp=7)
    verified = tn.verify_note(encoded, [LOG.verifier, W1.verifier])
    assert verified.text == text and len(verified.verified) == 2
    # Change one character of the text: either the note no longer parses, or it fails.
    pos = data.draw(st.integers(0, len(text) - 1))
    repl = data.draw(st.characters(blacklist_categories=("Cs",)).filter(lambda c: c != text[pos]))
    tampered = encoded[:pos] + repl + encoded[pos + 1 :]
    with pytest.raises((InvalidInput, VerificationError)):
        tn.verify_note(tampered, [LOG.verifier])


EXPECTED = (InvalidInput, VerificationError)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "\u2014 ",
                    "log.example/accord ",
                    "\n",
                    "\n\n",
                    "AAAA",
                    "====",
                    "+",
                    "x",
                    LOG.sign(CHECKPOINT.to_text()).to_line(),
                    CHECKPOINT.to_text(),
                    "\u2014 log.example/accord ",
                    "0",
                    "\x00",
                ]
            ),
            max_size=12,
        ).map("".join),
    )
)
def test_fuzz_note_parsers_raise_only_our_errors(data: bytes | str) -> None:
    for fn in (
        tn.parse_unverified_note,
        lambda d: tn.verify_note(d, [LOG.verifier, W1.verifier]),
        lambda d: tn.verify_checkpoint(d, log_verifiers=[LOG.verifier]),
    ):
        with contextlib.suppress(EXPECTED):
            fn(data)
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    for parse in (tn.parse_checkpoint, tn.parse_vkey, tn.parse_skey, tn.parse_signature_line):
        with contextlib.suppress(EXPECTED):
            parse(text)
