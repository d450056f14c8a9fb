"""RFC 9180 HPKE vectors against accord.primitives.hpke (see tests/vectors/hpke/README.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from accord.errors import DecryptionError, InvalidInput
from accord.primitives.hpke import (
    HpkeAead,
    HpkePrivateKey,
    HpkePublicKey,
    HpkeSealed,
    derive_hpke_key_pair,
    generate_hpke_key_pair,
    hpke_open,
    hpke_seal,
    setup_hpke_recipient,
    setup_hpke_sender,
)

VECTORS_FILE = (
    Path(__file__).parents[2] / "vectors" / "hpke" / "rfc9180_x25519_sha256_base_auth.json"
)
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_FILE.read_text())["vectors"]
MODE_BASE, MODE_AUTH = 0, 2


def _id(v: dict[str, Any]) -> str:
    return f"mode{v['mode']}-aead{v['aead_id']}"


def test_file_covers_both_modes_and_both_aeads() -> None:
    assert {(v["mode"], v["aead_id"]) for v in VECTORS} == {(0, 1), (0, 3), (2, 1), (2, 3)}
    assert all(v["kem_id"] == 0x20 and v["kdf_id"] == 1 for v in VECTORS)


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_vector(v: dict[str, Any]) -> None:
    h = bytes.fromhex
    aead = HpkeAead(v["aead_id"])
    info = h(v["info"])
    recipient = derive_hpke_key_pair(h(v["ikmR"]))
    ephemeral = derive_hpke_key_pair(h(v["ikmE"]))
    assert recipient.to_bytes() == h(v["skRm"])
    assert recipient.public_key().to_bytes() == h(v["pkRm"])
    assert ephemeral.to_bytes() == h(v["skEm"])
    sender_key = sender_pub = None
    if v["mode"] == MODE_AUTH:
        sender_key = derive_hpke_key_pair(h(v["ikmS"]))
        assert sender_key.to_bytes() == h(v["skSm"])
        sender_pub = sender_key.public_key()
        assert sender_pub.to_bytes() == h(v["pkSm"])

    sender = setup_hpke_sender(
        recipient.public_key(),
        info=info,
        aead=aead,
        sender_key=sender_key,
        ephemeral_key=ephemeral,
    )
    assert sender.enc == h(v["enc"])
    receiver = setup_hpke_recipient(
        HpkePrivateKey.from_bytes(h(v["skRm"])),
        h(v["enc"]),
        info=info,
        aead=aead,
        sender_public_key=sender_pub,
    )
    assert len(v["encryptions"]) == 257
    for enc in v["encryptions"]:
        pt, aad, ct = h(enc["pt"]), h(enc["aad"]), h(enc["ct"])
        assert sender.seal(pt, aad=aad) == ct
        assert receiver.open(ct, aad=aad) == pt
    for exp in v["exports"]:
        want = h(exp["exported_value"])
        assert sender.export(h(exp["exporter_context"]), exp["L"]) == want
        assert receiver.export(h(exp["exporter_context"]), exp["L"]) == want


@pytest.mark.parametrize("v", VECTORS, ids=_id)
def test_vector_rejections(v: dict[str, Any]) -> None:
    """The first vector message, mutated: wrong aad, info, ciphertext bit, enc, sender key."""
    h = bytes.fromhex
    aead = HpkeAead(v["aead_id"])
    sk = HpkePrivateKey.from_bytes(h(v["skRm"]))
    first = v["encryptions"][0]
    ct, aad = h(first["ct"]), h(first["aad"])
    sender_pub = HpkePublicKey.from_bytes(h(v["pkSm"])) if v["mode"] == MODE_AUTH else None

    def try_open(*, enc: bytes, info: bytes, ct: bytes, aad: bytes) -> bytes:
        ctx = setup_hpke_recipient(sk, enc, info=info, aead=aead, sender_public_key=sender_pub)
        return ctx.open(ct, aad=aad)

    good = {"enc": h(v["enc"]), "info": h(v["info"]), "ct": ct, "aad": aad}
    assert try_open(**good) == h(first["pt"])
    flipped = bytes([ct[0] ^ 1]) + ct[1:]
    other_enc = generate_hpke_key_pair().public_key().to_bytes()
    for change in (
        {"aad": aad + b"x"},
        {"info": good["info"] + b"x"},
        {"ct": flipped},
        {"ct": ct[:-1]},
        {"enc": other_enc},
        {"enc": bytes(32)},  # low-order point: all-zero shared secret
        {"enc": good["enc"][:-1]},
    ):
        with pytest.raises(DecryptionError):
            try_open(**{**good, **change})
    if sender_pub is not None:  # auth mode: the wrong sender's key cannot open
        wrong = generate_hpke_key_pair().public_key()
        ctx = setup_hpke_recipient(
            sk, good["enc"], info=good["info"], aead=aead, sender_public_key=wrong
        )
        with pytest.raises(DecryptionError):
            ctx.open(ct, aad=aad)


@pytest.mark.parametrize("aead", list(HpkeAead))
def test_single_shot_round_trip_and_rejections(aead: HpkeAead) -> None:
    key = generate_hpke_key_pair()
    sealed = hpke_seal(key.public_key(), b"payload", info=b"info", aad=b"aad", aead=aead)
    assert hpke_open(key, sealed, info=b"info", aad=b"aad", aead=aead) == b"payload"
    other = generate_hpke_key_pair()
    for attempt in (
        lambda: hpke_open(other, sealed, info=b"info", aad=b"aad", aead=aead),
        lambda: hpke_open(key, sealed, info=b"info", aad=b"AAD", aead=aead),
        lambda: hpke_open(key, sealed, info=b"INFO", aad=b"aad", aead=aead),
        lambda: hpke_open(key, HpkeSealed(sealed.enc, b""), info=b"info", aad=b"aad", aead=aead),
    ):
        with pytest.raises(DecryptionError):
            attempt()
    wrong_suite = (
        HpkeAead.CHACHA20_POLY1305 if aead is HpkeAead.AES_128_GCM else HpkeAead.AES_128_GCM
    )
    with pytest.raises(DecryptionError):
        hpke_open(key, sealed, info=b"info", aad=b"aad", aead=wrong_suite)


def test_key_serialisation_and_bad_keys() -> None:
    key = generate_hpke_key_pair()
    again = HpkePrivateKey.from_bytes(key.to_bytes())
    assert again.public_key() == key.public_key()
    assert key.to_bytes().hex() not in repr(key)
    for bad in (b"", b"\x00" * 31, b"\x00" * 33):
        with pytest.raises(InvalidInput):
            HpkePublicKey.from_bytes(bad)
        with pytest.raises(InvalidInput):
            HpkePrivateKey.from_bytes(bad)
    with pytest.raises(InvalidInput):
        derive_hpke_key_pair(b"short")
    with pytest.raises(InvalidInput):  # low-order recipient key
        hpke_seal(HpkePublicKey(bytes(32)), b"x", info=b"", aad=b"")
    with pytest.raises(InvalidInput):
        setup_hpke_sender(key.public_key(), info=b"", aead=7)  # type: ignore[arg-type]
