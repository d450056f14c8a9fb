"""Ed25519 verification of device identity keys (vodozemac prints them as unpadded base64)."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import b64decode_unpadded

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
CURVE25519_KEY_BYTES = 32


def parse_ed25519_key(text: str) -> Ed25519PublicKey:
    raw = b64decode_unpadded(text, max_bytes=ED25519_KEY_BYTES, what="Ed25519 key")
    if len(raw) != ED25519_KEY_BYTES:
        raise InvalidInput("Ed25519 key must be 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def check_curve25519_key(text: str) -> str:
    raw = b64decode_unpadded(text, max_bytes=CURVE25519_KEY_BYTES, what="Curve25519 key")
    if len(raw) != CURVE25519_KEY_BYTES:
        raise InvalidInput("Curve25519 key must be 32 bytes")
    return text


def verify_ed25519(key_b64: str, message: bytes, signature_b64: str) -> None:
    """Raise VerificationError unless `signature_b64` is `key_b64`'s signature on `message`."""
    key = parse_ed25519_key(key_b64)
    try:
        sig = b64decode_unpadded(signature_b64, max_bytes=ED25519_SIGNATURE_BYTES, what="signature")
    except InvalidInput:
        raise VerificationError("malformed signature") from None
    if len(sig) != ED25519_SIGNATURE_BYTES:
        raise VerificationError("malformed signature")
    try:
        key.verify(sig, message)
    except InvalidSignature:
        raise VerificationError("bad signature") from None
