"""HPKE (RFC 9180) for Accord: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, and an AEAD.

A small typed recipe in front of `pyhpke`. Supported suites: KEM 0x0020, KDF 0x0001 and AEAD
AES-128-GCM (0x0001, the default) or ChaCha20Poly1305 (0x0003); modes base (0) and auth (2).
PSK modes are not offered.

- `generate_hpke_key_pair` / `HpkePrivateKey.from_bytes` / `HpkePublicKey.from_bytes`: keys
  as 32 raw bytes (RFC 9180 §7.1.1 SerializePublicKey / SerializePrivateKey for X25519).
- `hpke_seal` / `hpke_open`: one message under a fresh context (the single-shot API of RFC 9180
  §6.1, built from `SetupBaseS`/`SetupAuthS` + one `Seal`, because pyhpke's own one-shot call
  is not implemented).
- `setup_hpke_sender` / `setup_hpke_recipient`: contexts for several messages, in order.

Every failure to open (wrong key, wrong `info` or `aad`, tampered `enc` or ciphertext, a
low-order `enc`) raises `DecryptionError` and says nothing more. Malformed keys raise
`InvalidInput`. No pyhpke exception leaves this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from pyhpke import AEADId, CipherSuite, KDFId, KEMId, KEMKey, KEMKeyInterface, KEMKeyPair
from pyhpke import ContextInterface as _PyhpkeContext

from accord.errors import DecryptionError, InvalidInput

HPKE_KEM_ID = 0x0020
"""DHKEM(X25519, HKDF-SHA256)."""

HPKE_KDF_ID = 0x0001
"""HKDF-SHA256."""

HPKE_PUBLIC_KEY_BYTES = 32
HPKE_PRIVATE_KEY_BYTES = 32
HPKE_ENC_BYTES = 32
HPKE_TAG_BYTES = 16
HPKE_MAX_EXPORT_BYTES = 255 * 32
"""RFC 9180 §5.3: L <= 255 * Nh for HKDF-SHA256."""


class HpkeAead(enum.IntEnum):
    """The AEADs Accord accepts (RFC 9180 §7.3 identifiers)."""

    AES_128_GCM = 0x0001
    CHACHA20_POLY1305 = 0x0003


DEFAULT_AEAD = HpkeAead.AES_128_GCM


def _suite(aead: HpkeAead) -> CipherSuite:
    if not isinstance(aead, HpkeAead):
        raise InvalidInput("unsupported HPKE AEAD")
    return CipherSuite.new(KEMId(HPKE_KEM_ID), KDFId(HPKE_KDF_ID), AEADId(int(aead)))


def _require_bytes(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInput(f"{what} must be bytes")
    raw = bytes(value)
    if len(raw) != size:
        raise InvalidInput(f"{what} must be {size} bytes")
    return raw


def _as_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInput(f"{what} must be bytes")
    return bytes(value)


@dataclass(frozen=True)
class HpkePublicKey:
    """An X25519 HPKE public key (32 bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        _require_bytes(self.raw, HPKE_PUBLIC_KEY_BYTES, "HPKE public key")

    @classmethod
    def from_bytes(cls, raw: bytes) -> HpkePublicKey:
        return cls(_require_bytes(raw, HPKE_PUBLIC_KEY_BYTES, "HPKE public key"))

    def to_bytes(self) -> bytes:
        return self.raw

    def _kem_key(self) -> KEMKeyInterface:
        return _suite(DEFAULT_AEAD).kem.deserialize_public_key(self.raw)


class HpkePrivateKey:
    """An X25519 HPKE private key. Its bytes never appear in `repr` or errors."""

    __slots__ = ("_key",)

    def __init__(self, key: X25519PrivateKey) -> None:
        if not isinstance(key, X25519PrivateKey):
            raise InvalidInput("HPKE private key must be X25519")
        self._key = key

    def __repr__(self) -> str:
        return f"HpkePrivateKey(public={self.public_key().raw.hex()})"

    @classmethod
    def from_bytes(cls, raw: bytes) -> HpkePrivateKey:
        data = _require_bytes(raw, HPKE_PRIVATE_KEY_BYTES, "HPKE private key")
        return cls(X25519PrivateKey.from_private_bytes(data))

    def to_bytes(self) -> bytes:
        """The 32 raw private key bytes: store them encrypted, never log them."""
        return self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())

    def public_key(self) -> HpkePublicKey:
        return HpkePublicKey(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))

    def _kem_key(self) -> KEMKeyInterface:
        return KEMKey.from_pyca_cryptography_key(self._key)

    def _kem_key_pair(self) -> KEMKeyPair:
        pub = KEMKey.from_pyca_cryptography_key(self._key.public_key())
        return KEMKeyPair(self._kem_key(), pub)


def generate_hpke_key_pair() -> HpkePrivateKey:
    """A fresh random X25519 key pair (`.public_key()` gives the public half)."""
    return HpkePrivateKey(X25519PrivateKey.generate())


def derive_hpke_key_pair(ikm: bytes) -> HpkePrivateKey:
    """RFC 9180 §7.1.3 DeriveKeyPair for X25519 (deterministic; for test vectors and seeds)."""
    data = _as_bytes(ikm, "input keying material")
    if len(data) < HPKE_PRIVATE_KEY_BYTES:
        raise InvalidInput("input keying material must be at least 32 bytes")
    pair = _suite(DEFAULT_AEAD).kem.derive_key_pair(data)
    return HpkePrivateKey.from_bytes(pair.private_key.to_private_bytes())


@dataclass(frozen=True)
class HpkeSealed:
    """One HPKE message: the encapsulated key and the AEAD ciphertext (with its tag)."""

    enc: bytes
    ciphertext: bytes


class HpkeSenderContext:
    """A sender context: `seal` messages in order (sequence numbers 0, 1, 2, ...)."""

    __slots__ = ("_ctx", "enc")

    def __init__(self, enc: bytes, ctx: _PyhpkeContext) -> None:
        self.enc = enc
        self._ctx = ctx

    def __repr__(self) -> str:
        return "HpkeSenderContext(...)"

    def seal(self, plaintext: bytes, *, aad: bytes = b"") -> bytes:
        try:
            return self._ctx.seal(_as_bytes(plaintext, "plaintext"), _as_bytes(aad, "aad"))
        except InvalidInput:
            raise
        except Exception:
            raise InvalidInput("HPKE seal failed") from None

    def export(self, exporter_context: bytes, length: int) -> bytes:
        return _export(self._ctx, exporter_context, length)


class HpkeRecipientContext:
    """A recipient context: `open` messages in the order they were sealed."""

    __slots__ = ("_ctx",)

    def __init__(self, ctx: _PyhpkeContext) -> None:
        self._ctx = ctx

    def __repr__(self) -> str:
        return "HpkeRecipientContext(...)"

    def open(self, ciphertext: bytes, *, aad: bytes = b"") -> bytes:
        ct = _as_bytes(ciphertext, "ciphertext")
        ad = _as_bytes(aad, "aad")
        if len(ct) < HPKE_TAG_BYTES:
            raise DecryptionError()
        try:
            return self._ctx.open(ct, ad)
        except Exception:
            raise DecryptionError() from None

    def export(self, exporter_context: bytes, length: int) -> bytes:
        return _export(self._ctx, exporter_context, length)


def _export(ctx: _PyhpkeContext, exporter_context: bytes, length: int) -> bytes:
    if isinstance(length, bool) or not isinstance(length, int):
        raise InvalidInput("export length must be an integer")
    if not 0 < length <= HPKE_MAX_EXPORT_BYTES:
        raise InvalidInput("export length out of range")
    return ctx.export(_as_bytes(exporter_context, "exporter context"), length)


def setup_hpke_sender(
    recipient: HpkePublicKey,
    *,
    info: bytes,
    aead: HpkeAead = DEFAULT_AEAD,
    sender_key: HpkePrivateKey | None = None,
    ephemeral_key: HpkePrivateKey | None = None,
) -> HpkeSenderContext:
    """SetupBaseS, or SetupAuthS when ``sender_key`` is given (RFC 9180 §5.1).

    ``ephemeral_key`` exists only to reproduce the RFC's test vectors: reusing an ephemeral key
    destroys the scheme's security. Leave it out everywhere else.
    """
    if not isinstance(recipient, HpkePublicKey):
        raise InvalidInput("recipient must be an HpkePublicKey")
    suite = _suite(aead)
    try:
        enc, ctx = suite.create_sender_context(
            recipient._kem_key(),
            info=_as_bytes(info, "info"),
            sks=None if sender_key is None else sender_key._kem_key(),
            eks=None if ephemeral_key is None else ephemeral_key._kem_key_pair(),
        )
    except InvalidInput:
        raise
    except Exception:
        # X25519 with a low-order public key gives an all-zero secret: refused.
        raise InvalidInput("invalid HPKE recipient key") from None
    return HpkeSenderContext(enc, ctx)


def setup_hpke_recipient(
    private_key: HpkePrivateKey,
    enc: bytes,
    *,
    info: bytes,
    aead: HpkeAead = DEFAULT_AEAD,
    sender_public_key: HpkePublicKey | None = None,
) -> HpkeRecipientContext:
    """SetupBaseR, or SetupAuthR when ``sender_public_key`` is given (RFC 9180 §5.1).

    A malformed or low-order ``enc`` raises `DecryptionError`, like any other failure to open.
    """
    if not isinstance(private_key, HpkePrivateKey):
        raise InvalidInput("private key must be an HpkePrivateKey")
    suite = _suite(aead)
    enc_raw = _as_bytes(enc, "enc")
    info_raw = _as_bytes(info, "info")
    if len(enc_raw) != HPKE_ENC_BYTES:
        raise DecryptionError()
    try:
        ctx = suite.create_recipient_context(
            enc_raw,
            private_key._kem_key(),
            info=info_raw,
            pks=None if sender_public_key is None else sender_public_key._kem_key(),
        )
    except Exception:
        raise DecryptionError() from None
    return HpkeRecipientContext(ctx)


def hpke_seal(
    recipient: HpkePublicKey,
    plaintext: bytes,
    *,
    info: bytes,
    aad: bytes,
    aead: HpkeAead = DEFAULT_AEAD,
    sender_key: HpkePrivateKey | None = None,
) -> HpkeSealed:
    """Seal one message to ``recipient`` under a fresh ephemeral key (RFC 9180 §6.1)."""
    ctx = setup_hpke_sender(recipient, info=info, aead=aead, sender_key=sender_key)
    return HpkeSealed(enc=ctx.enc, ciphertext=ctx.seal(plaintext, aad=aad))


def hpke_open(
    private_key: HpkePrivateKey,
    sealed: HpkeSealed,
    *,
    info: bytes,
    aad: bytes,
    aead: HpkeAead = DEFAULT_AEAD,
    sender_public_key: HpkePublicKey | None = None,
) -> bytes:
    """Open one message sealed with `hpke_seal`. Any failure raises `DecryptionError`."""
    ctx = setup_hpke_recipient(
        private_key, sealed.enc, info=info, aead=aead, sender_public_key=sender_public_key
    )
    return ctx.open(sealed.ciphertext, aad=aad)
