"""Invisible salamanders: one ciphertext, two keys, two files.

Dodis, Grubbs, Ristenpart and Woodage, "Fast Message Franking: From Invisible Salamanders to
Encryptment" (CRYPTO 2018, LNCS 10991; https://eprint.iacr.org/2019/016) showed that AES-GCM is
not key-committing: a sender can build one (nonce, ciphertext, tag) that decrypts, with a valid tag,
under two different keys to two different files. A franking scheme that commits to the
ciphertext (its digest) and trusts the AEAD to pin down the plaintext is then broken: the
recipient sees one file, a moderator opening the report with the other key sees another.

This module builds the attack against AES-GCM from its definition (NIST SP 800-38D), using
pyca/cryptography only for the AES block function, the CTR keystream and the final `AESGCM`
check, and then shows that the same two-faced ciphertext, in Accord's attachment format
(`accord.primitives.attachment`, AES-256-CTR + HMAC-SHA256 under HKDF subkeys), opens under one
key only. See docs/protocol/attachments-key-commitment.md.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from accord.errors import DecryptionError
from accord.primitives.attachment import (
    ATTACHMENT_INFO,
    MAGIC,
    AttachmentSecrets,
    decrypt_stream,
    encrypt_stream,
)

BLOCK_BYTES = 16
GCM_NONCE_BYTES = 12
NONCE_SEARCH_LIMIT = 1 << 28  # expected hit after 2**24 nonces (a 3-byte condition)
NONCE_SEARCH_CHUNK = 1 << 20

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"  # SOI marker and the start of the next marker

# Two fixed, unrelated keys, so the test does the same work every run.
KEY_1 = hashlib.sha256(b"accord invisible salamanders: key 1").digest()
KEY_2 = hashlib.sha256(b"accord invisible salamanders: key 2").digest()
AAD = b"accord attachment"


# --------------------------------------------------------------------------------------------
# GF(2^128) in GCM's bit order (SP 800-38D section 6.3): bit 0 of a block is the most
# significant bit of its first byte, so a block read big-endian as an integer has x^0 at the
# top; the reduction polynomial x^128 + x^7 + x^2 + x + 1 becomes R = 0xE1 || 0^120.

GF_R = 0xE1 << 120


def gf_mul(x: int, y: int) -> int:
    """SP 800-38D Algorithm 1."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if (x >> i) & 1:
            z ^= v
        v = (v >> 1) ^ GF_R if v & 1 else v >> 1
    return z


def gf_pow(x: int, n: int) -> int:
    result = 1 << 127  # the field's one: x^0, the top bit
    while n:
        if n & 1:
            result = gf_mul(result, x)
        x = gf_mul(x, x)
        n >>= 1
    return result


def gf_inv(x: int) -> int:
    """x^(2^128 - 2), the inverse of a non-zero element (the multiplicative group has order
    2^128 - 1)."""
    if x == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^128)")
    return gf_pow(x, (1 << 128) - 2)


def to_int(block: bytes) -> int:
    return int.from_bytes(block, "big")


def to_block(value: int) -> bytes:
    return value.to_bytes(BLOCK_BYTES, "big")


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------------------------
# AES-GCM from its parts (96-bit nonces only)


def aes_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def ctr_keystream(key: bytes, counter_block: bytes, length: int) -> bytes:
    """AES-CTR keystream from a 16-byte initial counter block. The 32-bit counter of GCM
    (inc32) and the 128-bit counter of CTR agree as long as the low word does not wrap."""
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor()
    return encryptor.update(bytes(length)) + encryptor.finalize()


def gcm_j0(nonce: bytes) -> bytes:
    """Pre-counter block for a 96-bit IV: J0 = IV || 0^31 || 1."""
    assert len(nonce) == GCM_NONCE_BYTES
    return nonce + b"\x00\x00\x00\x01"


def gcm_first_counter(nonce: bytes) -> bytes:
    """inc32(J0): the counter block of the first keystream block."""
    return nonce + b"\x00\x00\x00\x02"


def gcm_hash_key(key: bytes) -> int:
    """H = AES_K(0^128)."""
    return to_int(aes_block(key, bytes(BLOCK_BYTES)))


def _padded_blocks(data: bytes) -> list[int]:
    padded = data + bytes(-len(data) % BLOCK_BYTES)
    return [to_int(padded[i : i + BLOCK_BYTES]) for i in range(0, len(padded), BLOCK_BYTES)]


def ghash(h: int, aad: bytes, ciphertext: bytes) -> int:
    """GHASH_H(A || 0* || C || 0* || [len(A)]_64 || [len(C)]_64), SP 800-38D Algorithm 2."""
    lengths = struct.pack(">QQ", 8 * len(aad), 8 * len(ciphertext))
    y = 0
    for block in [*_padded_blocks(aad), *_padded_blocks(ciphertext), to_int(lengths)]:
        y = gf_mul(y ^ block, h)
    return y


def gcm_tag(key: bytes, nonce: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """T = AES_K(J0) xor GHASH_H(A, C) (full 128-bit tag)."""
    mask = to_int(aes_block(key, gcm_j0(nonce)))
    return to_block(mask ^ ghash(gcm_hash_key(key), aad, ciphertext))


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 64, 100])
@pytest.mark.parametrize("aad_length", [0, 5, 16, 40])
def test_gcm_model_matches_aesgcm(length: int, aad_length: int) -> None:
    """The model above is AES-GCM: it reproduces AESGCM's ciphertext and tag byte for byte."""
    key, nonce = os.urandom(32), os.urandom(GCM_NONCE_BYTES)
    plaintext, aad = os.urandom(length), os.urandom(aad_length)
    ciphertext = xor(plaintext, ctr_keystream(key, gcm_first_counter(nonce), length))
    expected = AESGCM(key).encrypt(nonce, plaintext, aad)
    assert ciphertext + gcm_tag(key, nonce, aad, ciphertext) == expected


def test_gf_arithmetic() -> None:
    one = 1 << 127
    for _ in range(5):
        a = to_int(os.urandom(BLOCK_BYTES)) or 1
        b = to_int(os.urandom(BLOCK_BYTES))
        assert gf_mul(a, one) == a
        assert gf_mul(a, b) == gf_mul(b, a)
        assert gf_mul(a, gf_inv(a)) == one
    with pytest.raises(ZeroDivisionError):
        gf_inv(0)


# --------------------------------------------------------------------------------------------
# The two files


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def tiny_png() -> bytes:
    """A valid 1x1 RGB PNG, zero-padded to whole blocks (decoders stop at IEND)."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00\xff\x00\x00")  # filter byte, one red pixel
    png = (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return png + bytes(-len(png) % BLOCK_BYTES)


def jpeg_tail(length: int) -> bytes:
    """The end of a JPEG: a comment segment and the EOI marker, `length` bytes long."""
    body = b"the other file".ljust(length - 6)
    return b"\xff\xfe" + struct.pack(">H", len(body) + 2) + body + b"\xff\xd9"


@dataclass(frozen=True, slots=True)
class Layout:
    """Which ciphertext block is chosen for which file. Each block of a single ciphertext
    decrypts to one plaintext block per key, so a block can be chosen for one key only; the
    other key reads garbage there, which its file format skips."""

    blocks: int
    for_key_1: dict[int, bytes]
    for_key_2: dict[int, bytes]
    free: int


def salamander_layout() -> Layout:
    png = tiny_png()  # blocks 0..4: the PNG; block 5: free; blocks 6..7: the JPEG's end
    png_blocks = len(png) // BLOCK_BYTES
    free = png_blocks
    tail = jpeg_tail(2 * BLOCK_BYTES)
    for_key_1 = {i: png[i * BLOCK_BYTES : (i + 1) * BLOCK_BYTES] for i in range(png_blocks)}
    for_key_2 = {free + 1 + i: tail[i * BLOCK_BYTES : (i + 1) * BLOCK_BYTES] for i in range(2)}
    return Layout(blocks=free + 3, for_key_1=for_key_1, for_key_2=for_key_2, free=free)


def find_two_faced_nonce(key_1: bytes, key_2: bytes) -> bytes:
    """A 96-bit nonce whose first keystream blocks under the two keys differ by exactly
    PNG_SIGNATURE[:3] xor JPEG_SIGNATURE in their first three bytes, so that choosing block 0
    to start the PNG under key 1 makes it start the JPEG under key 2: both files' first bytes
    sit in the same ciphertext block. About 2^24 tries, batched through AES-ECB."""
    want = np.frombuffer(xor(PNG_SIGNATURE[:3], JPEG_SIGNATURE), dtype=np.uint8)
    prefix = np.frombuffer(b"accordsl", dtype=np.uint8)

    def first_blocks(key: bytes, counters: bytes) -> np.ndarray:
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
        out = encryptor.update(counters) + encryptor.finalize()
        return np.frombuffer(out, dtype=np.uint8).reshape(-1, BLOCK_BYTES)

    for start in range(0, NONCE_SEARCH_LIMIT, NONCE_SEARCH_CHUNK):
        counters = np.zeros((NONCE_SEARCH_CHUNK, BLOCK_BYTES), dtype=np.uint8)
        counters[:, :8] = prefix
        index = np.arange(start, start + NONCE_SEARCH_CHUNK, dtype=">u4")
        counters[:, 8:12] = index.view(np.uint8).reshape(-1, 4)
        counters[:, 15] = 2  # inc32(J0) = nonce || 0x00000002
        raw = counters.tobytes()
        diff = first_blocks(key_1, raw) ^ first_blocks(key_2, raw)
        hits = np.flatnonzero((diff[:, :3] == want).all(axis=1))
        if hits.size:
            return bytes(counters[hits[0], :GCM_NONCE_BYTES])
    raise AssertionError("no two-faced nonce found")


def two_faced_ciphertext(ks_1: bytes, ks_2: bytes, layout: Layout) -> bytes:
    """The ciphertext with every chosen block in place and the free block zero."""
    blocks = []
    for i in range(layout.blocks):
        window = slice(i * BLOCK_BYTES, (i + 1) * BLOCK_BYTES)
        if i in layout.for_key_1:
            blocks.append(xor(layout.for_key_1[i], ks_1[window]))
        elif i in layout.for_key_2:
            blocks.append(xor(layout.for_key_2[i], ks_2[window]))
        else:
            blocks.append(bytes(BLOCK_BYTES))
    return b"".join(blocks)


@dataclass(frozen=True, slots=True)
class GcmSalamander:
    nonce: bytes
    ciphertext: bytes
    tag: bytes


def build_gcm_salamander(key_1: bytes, key_2: bytes, aad: bytes) -> GcmSalamander:
    """DGRW's construction: fix every block but one, then solve the tag equation for it.

    With C_f the free block at 0-based position f of n ciphertext blocks, GHASH is linear in
    C_f with coefficient H^e, e = n + 1 - f (the blocks after it, plus the length block), so

        T_i = AES_Ki(J0) + G_i + C_f * H_i^e     (G_i = GHASH_Hi with C_f = 0)

    and T_1 = T_2 is one linear equation over GF(2^128):

        C_f = (AES_K1(J0) + G_1 + AES_K2(J0) + G_2) / (H_1^e + H_2^e).
    """
    layout = salamander_layout()
    nonce = find_two_faced_nonce(key_1, key_2)
    length = layout.blocks * BLOCK_BYTES
    ks_1 = ctr_keystream(key_1, gcm_first_counter(nonce), length)
    ks_2 = ctr_keystream(key_2, gcm_first_counter(nonce), length)
    draft = two_faced_ciphertext(ks_1, ks_2, layout)

    h_1, h_2 = gcm_hash_key(key_1), gcm_hash_key(key_2)
    s_1 = to_int(aes_block(key_1, gcm_j0(nonce))) ^ ghash(h_1, aad, draft)
    s_2 = to_int(aes_block(key_2, gcm_j0(nonce))) ^ ghash(h_2, aad, draft)
    e = layout.blocks + 1 - layout.free
    coefficient = gf_pow(h_1, e) ^ gf_pow(h_2, e)
    free_block = gf_mul(s_1 ^ s_2, gf_inv(coefficient))

    f = layout.free * BLOCK_BYTES
    ciphertext = draft[:f] + to_block(free_block) + draft[f + BLOCK_BYTES :]
    tag = to_block(s_1 ^ gf_mul(free_block, gf_pow(h_1, e)))
    return GcmSalamander(nonce=nonce, ciphertext=ciphertext, tag=tag)


@pytest.fixture(scope="module")
def gcm_salamander() -> GcmSalamander:
    return build_gcm_salamander(KEY_1, KEY_2, AAD)


# --------------------------------------------------------------------------------------------
# a) AES-GCM: one ciphertext and tag, valid under two keys, two different files


def test_aes_gcm_is_not_key_committing(gcm_salamander: GcmSalamander) -> None:
    blob = gcm_salamander.ciphertext + gcm_salamander.tag
    file_1 = AESGCM(KEY_1).decrypt(gcm_salamander.nonce, blob, AAD)
    file_2 = AESGCM(KEY_2).decrypt(gcm_salamander.nonce, blob, AAD)

    assert file_1 != file_2
    assert file_1.startswith(PNG_SIGNATURE) and file_1.startswith(tiny_png())
    assert file_2.startswith(JPEG_SIGNATURE) and file_2.endswith(b"\xff\xd9")
    assert file_2.endswith(jpeg_tail(2 * BLOCK_BYTES))
    # The tag is the one our model computes under either key.
    for key in (KEY_1, KEY_2):
        assert gcm_tag(key, gcm_salamander.nonce, AAD, gcm_salamander.ciphertext) == (
            gcm_salamander.tag
        )
    # Anything else is still rejected: the attack is about two chosen keys, not forgery.
    with pytest.raises(InvalidTag):
        AESGCM(os.urandom(32)).decrypt(gcm_salamander.nonce, blob, AAD)
    with pytest.raises(InvalidTag):
        AESGCM(KEY_2).decrypt(gcm_salamander.nonce, blob, AAD + b"!")


def test_salamander_png_is_a_real_png(gcm_salamander: GcmSalamander) -> None:
    from PIL import Image

    blob = gcm_salamander.ciphertext + gcm_salamander.tag
    file_1 = AESGCM(KEY_1).decrypt(gcm_salamander.nonce, blob, AAD)
    with Image.open(io.BytesIO(file_1)) as image:
        assert image.format == "PNG" and image.size == (1, 1)
        assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)


# --------------------------------------------------------------------------------------------
# b) Accord's attachments: the same two-faced ciphertext opens under one key only


def accord_subkeys(key: bytes) -> tuple[bytes, bytes]:
    """enc_key || mac_key = HKDF-SHA256(K, salt="", info=ATTACHMENT_INFO, 64 bytes), as
    docs/protocol/messaging.md ("Attachments") specifies."""
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=ATTACHMENT_INFO).derive(key)
    return okm[:32], okm[32:]


@dataclass(frozen=True, slots=True)
class AccordSalamander:
    blob: bytes
    size: int
    ctr_file_2: bytes  # what the CTR layer alone would show under key 2


def build_accord_salamander(key_1: bytes, key_2: bytes) -> AccordSalamander:
    """The attacker's best blob: a CTR ciphertext that is the PNG under key 1's encryption key
    and a JPEG under key 2's, wrapped as MAGIC || nonce || ciphertext || tag with the tag valid
    under key 1. The tag is HMAC-SHA256, not a polynomial, so no free block can make it valid
    under key 2 as well."""
    enc_1, mac_1 = accord_subkeys(key_1)
    enc_2, _ = accord_subkeys(key_2)
    layout = salamander_layout()
    counter = gcm_first_counter(find_two_faced_nonce(enc_1, enc_2))
    length = layout.blocks * BLOCK_BYTES
    ks_1 = ctr_keystream(enc_1, counter, length)
    ks_2 = ctr_keystream(enc_2, counter, length)
    ciphertext = two_faced_ciphertext(ks_1, ks_2, layout)
    header = MAGIC + counter
    tag = hmac.new(mac_1, header + ciphertext, hashlib.sha256).digest()
    return AccordSalamander(
        blob=header + ciphertext + tag, size=length, ctr_file_2=xor(ciphertext, ks_2)
    )


@pytest.fixture(scope="module")
def accord_salamander() -> AccordSalamander:
    return build_accord_salamander(KEY_1, KEY_2)


def _decrypt(blob: bytes, secrets: AttachmentSecrets) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(blob), out, secrets)
    return out.getvalue()


def test_accord_blob_opens_under_one_key_only(accord_salamander: AccordSalamander) -> None:
    blob, size = accord_salamander.blob, accord_salamander.size
    digest = hashlib.sha256(blob).digest()  # the blob's real digest, as a franked message binds

    file_1 = _decrypt(blob, AttachmentSecrets(key=KEY_1, sha256=digest, size=size))
    assert file_1.startswith(tiny_png())
    # Without the MAC, the second key would show the other file ...
    assert accord_salamander.ctr_file_2.startswith(JPEG_SIGNATURE)
    assert accord_salamander.ctr_file_2.endswith(jpeg_tail(2 * BLOCK_BYTES))
    # ... but length and digest match, so only the MAC check stands between them, and it holds.
    with pytest.raises(DecryptionError):
        _decrypt(blob, AttachmentSecrets(key=KEY_2, sha256=digest, size=size))


def test_accord_tag_cannot_be_shared_between_keys(accord_salamander: AccordSalamander) -> None:
    """The attacker may rewrite any block (the free block of the GCM attack) and the tag; what
    it needs is one tag valid under both MAC keys. Over many choices of the free block the two
    HMAC tags never agree (agreeing would be an HMAC-SHA256 collision)."""
    _, mac_1 = accord_subkeys(KEY_1)
    _, mac_2 = accord_subkeys(KEY_2)
    blob = accord_salamander.blob
    body = bytearray(blob[: -hashlib.sha256().digest_size])
    free = len(MAGIC) + 16 + salamander_layout().free * BLOCK_BYTES
    for value in range(256):
        body[free : free + BLOCK_BYTES] = bytes([value]) * BLOCK_BYTES
        tag_1 = hmac.new(mac_1, body, hashlib.sha256).digest()
        tag_2 = hmac.new(mac_2, body, hashlib.sha256).digest()
        assert tag_1 != tag_2


def test_fixed_blob_opens_under_no_other_key() -> None:
    out = io.BytesIO()
    secrets = encrypt_stream(io.BytesIO(tiny_png()), out, max_plaintext_bytes=1 << 20, key=KEY_1)
    blob = out.getvalue()
    assert _decrypt(blob, secrets) == tiny_png()
    for _ in range(200):
        other = AttachmentSecrets(key=os.urandom(32), sha256=secrets.sha256, size=secrets.size)
        with pytest.raises(DecryptionError):
            _decrypt(blob, other)


@settings(max_examples=60, deadline=None)
@given(
    key_1=st.binary(min_size=32, max_size=32),
    key_2=st.binary(min_size=32, max_size=32),
    data=st.binary(max_size=4096),
)
def test_blob_under_one_key_never_opens_under_another(
    key_1: bytes, key_2: bytes, data: bytes
) -> None:
    assume(key_1 != key_2)
    out = io.BytesIO()
    secrets = encrypt_stream(io.BytesIO(data), out, max_plaintext_bytes=1 << 20, key=key_1)
    blob = out.getvalue()
    assert _decrypt(blob, secrets) == data
    with pytest.raises(DecryptionError):
        _decrypt(blob, AttachmentSecrets(key=key_2, sha256=secrets.sha256, size=secrets.size))
