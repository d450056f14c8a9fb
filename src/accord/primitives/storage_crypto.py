"""Encryption at rest for the client's local state.

A passphrase is stretched with Argon2id (RFC 9106) into a 32-byte root key; HKDF-SHA256 derives
separate keys for vodozemac pickles, for AES-256-GCM sealing of other records, and for
HMAC-SHA256 tags over records kept in the clear but trusted (the trust anchors). Each sealed or
tagged record binds a caller-chosen label, so a record cannot be moved to another row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.errors import DecryptionError, InvalidInput

# RFC 9106 section 4, second recommended option (64 MiB, t=3, p=4).
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 4
SALT_BYTES = 16
ROOT_KEY_BYTES = 32
GCM_NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class KdfCost:
    """Argon2id's cost. The default is RFC 9106's; only tests choose a lower one, in-process."""

    time_cost: int = ARGON2_TIME_COST
    memory_kib: int = ARGON2_MEMORY_KIB
    parallelism: int = ARGON2_PARALLELISM

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1 or self.memory_kib < 8 * self.parallelism:
            raise InvalidInput("Argon2id cost out of range")


DEFAULT_KDF_COST = KdfCost()


@dataclass(frozen=True, slots=True)
class KdfParams:
    salt: bytes
    time_cost: int = ARGON2_TIME_COST
    memory_kib: int = ARGON2_MEMORY_KIB
    parallelism: int = ARGON2_PARALLELISM

    @classmethod
    def fresh(cls, cost: KdfCost = DEFAULT_KDF_COST) -> KdfParams:
        return cls(
            salt=os.urandom(SALT_BYTES),
            time_cost=cost.time_cost,
            memory_kib=cost.memory_kib,
            parallelism=cost.parallelism,
        )


@dataclass(frozen=True, slots=True, repr=False)
class StoreKey:
    """The root key Argon2id derives from the passphrase: whoever holds it opens the store
    without the passphrase (the store-key agent hands it to commands; docs/key-agent.md)."""

    value: bytes

    def __post_init__(self) -> None:
        if len(self.value) != ROOT_KEY_BYTES:
            raise InvalidInput("a store key is 32 bytes")

    def __repr__(self) -> str:
        return "StoreKey(<secret>)"


def derive_store_key(passphrase: str, params: KdfParams) -> StoreKey:
    """The store key of `passphrase` under `params` (Argon2id; costs what `params` say)."""
    return StoreKey(derive_root_key(passphrase, params))


def derive_root_key(passphrase: str, params: KdfParams) -> bytes:
    # Imported here: a command unlocked by the store-key agent never runs Argon2id.
    from argon2.low_level import Type, hash_secret_raw

    if not passphrase:
        raise InvalidInput("empty passphrase")
    return hash_secret_raw(
        passphrase.encode("utf-8"),
        params.salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=ROOT_KEY_BYTES,
        type=Type.ID,
    )


def _subkey(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


class LocalVault:
    """Keys for the local store, derived once per process from the root key."""

    def __init__(self, root_key: bytes) -> None:
        if len(root_key) != ROOT_KEY_BYTES:
            raise InvalidInput("root key must be 32 bytes")
        self.pickle_key = _subkey(root_key, b"accord local pickle key v1")
        self._aead = AESGCM(_subkey(root_key, b"accord local record key v1"))
        self.check_value = _subkey(root_key, b"accord local key check v1")
        self._anchor_key = _subkey(root_key, b"accord local anchor mac key v1")

    def _anchor_hmac(self, label: str, data: bytes) -> crypto_hmac.HMAC:
        mac = crypto_hmac.HMAC(self._anchor_key, hashes.SHA256())
        encoded_label = label.encode("utf-8")
        mac.update(len(encoded_label).to_bytes(4, "big") + encoded_label + data)
        return mac

    def tag(self, label: str, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` under the anchor key, bound to `label`."""
        return self._anchor_hmac(label, data).finalize()

    def tag_matches(self, label: str, data: bytes, tag: bytes) -> bool:
        """Whether `tag` is `data`'s tag under `label` (compared in constant time)."""
        try:
            self._anchor_hmac(label, data).verify(tag)
        except InvalidSignature:
            return False
        return True

    def seal(self, label: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(GCM_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plaintext, label.encode("utf-8"))

    def open(self, label: str, sealed: bytes) -> bytes:
        if len(sealed) < GCM_NONCE_BYTES + 16:
            raise DecryptionError()
        try:
            return self._aead.decrypt(
                sealed[:GCM_NONCE_BYTES], sealed[GCM_NONCE_BYTES:], label.encode("utf-8")
            )
        except InvalidTag:
            raise DecryptionError() from None
