"""Typed wrappers over vodozemac's Olm and Megolm (the audited Rust implementation).

Every vodozemac exception is converted here, where it enters Accord: decryption problems become
one opaque `DecryptionError`, malformed keys `InvalidInput`.
"""

from __future__ import annotations

from dataclasses import dataclass

import vodozemac

from accord.errors import DecryptionError, InvalidInput

OLM_PRE_KEY = 0
OLM_NORMAL = 1
PICKLE_KEY_BYTES = 32


@dataclass(frozen=True, slots=True)
class OlmCiphertext:
    """One Olm message: type 0 is a pre-key message (opens a session), type 1 a normal one."""

    message_type: int
    body: bytes

    def __post_init__(self) -> None:
        if self.message_type not in (OLM_PRE_KEY, OLM_NORMAL):
            raise InvalidInput("unknown Olm message type")

    def _any(self) -> vodozemac.AnyOlmMessage:
        try:
            return vodozemac.AnyOlmMessage.from_parts(self.message_type, self.body)
        except ValueError:
            raise DecryptionError() from None


def _curve(key_b64: str) -> vodozemac.Curve25519PublicKey:
    try:
        return vodozemac.Curve25519PublicKey.from_base64(key_b64)
    except ValueError:
        raise InvalidInput("malformed Curve25519 key") from None


class OlmSession:
    """A pairwise Double Ratchet session with one remote device."""

    def __init__(self, inner: vodozemac.Session) -> None:
        self._inner = inner

    @property
    def session_id(self) -> str:
        return str(self._inner.session_id)

    def encrypt(self, plaintext: bytes) -> OlmCiphertext:
        message_type, body = self._inner.encrypt(plaintext).to_parts()
        return OlmCiphertext(message_type=int(message_type), body=bytes(body))

    def decrypt(self, message: OlmCiphertext) -> bytes:
        try:
            return bytes(self._inner.decrypt(message._any()))
        except ValueError:
            raise DecryptionError() from None

    def matches(self, message: OlmCiphertext) -> bool:
        """Whether a pre-key message belongs to this session."""
        if message.message_type != OLM_PRE_KEY:
            return False
        try:
            pre_key = message._any().to_pre_key()
            return pre_key is not None and bool(self._inner.session_matches(pre_key))
        except (ValueError, DecryptionError):
            return False

    def pickle(self, key: bytes) -> str:
        return str(self._inner.pickle(key))

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> OlmSession:
        try:
            return cls(vodozemac.Session.from_pickle(pickle, key))
        except ValueError:
            raise DecryptionError() from None


class DeviceAccount:
    """A device's long-term identity (Ed25519 + Curve25519) and its one-time keys."""

    def __init__(self, inner: vodozemac.Account | None = None) -> None:
        self._inner = inner if inner is not None else vodozemac.Account()

    @property
    def ed25519(self) -> str:
        return str(self._inner.ed25519_key.to_base64())

    @property
    def curve25519(self) -> str:
        return str(self._inner.curve25519_key.to_base64())

    def sign(self, message: bytes) -> str:
        return str(self._inner.sign(message).to_base64())

    @property
    def max_one_time_keys(self) -> int:
        return int(self._inner.max_number_of_one_time_keys)

    def generate_one_time_keys(self, count: int) -> dict[str, str]:
        """Generate keys and return every unpublished one (key id -> Curve25519 base64)."""
        self._inner.generate_one_time_keys(count)
        return self.unpublished_one_time_keys()

    def unpublished_one_time_keys(self) -> dict[str, str]:
        return {kid: key.to_base64() for kid, key in self._inner.one_time_keys.items()}

    # vodozemac's type stubs omit the fallback-key API that its bindings provide.
    def generate_fallback_key(self) -> dict[str, str]:
        self._inner.generate_fallback_key()  # type: ignore[attr-defined]
        return self.unpublished_fallback_key()

    def unpublished_fallback_key(self) -> dict[str, str]:
        keys = self._inner.fallback_key  # type: ignore[attr-defined]
        return {str(kid): str(key.to_base64()) for kid, key in keys.items()}

    def mark_keys_as_published(self) -> None:
        self._inner.mark_keys_as_published()

    def create_outbound_session(self, identity_key: str, one_time_key: str) -> OlmSession:
        return OlmSession(
            self._inner.create_outbound_session(_curve(identity_key), _curve(one_time_key))
        )

    def create_inbound_session(
        self, identity_key: str, message: OlmCiphertext
    ) -> tuple[OlmSession, bytes]:
        """Open a session from a pre-key message; consumes the one-time key it names."""
        if message.message_type != OLM_PRE_KEY:
            raise DecryptionError()
        try:
            pre_key = message._any().to_pre_key()
            if pre_key is None:
                raise DecryptionError()
            session, plaintext = self._inner.create_inbound_session(_curve(identity_key), pre_key)
        except ValueError:
            raise DecryptionError() from None
        return OlmSession(session), bytes(plaintext)

    def pickle(self, key: bytes) -> str:
        return str(self._inner.pickle(key))

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> DeviceAccount:
        try:
            return cls(vodozemac.Account.from_pickle(pickle, key))
        except ValueError:
            raise DecryptionError() from None


class MegolmOutbound:
    """A sender's ratcheting group session; its key is shared with member devices over Olm."""

    def __init__(self, inner: vodozemac.GroupSession | None = None) -> None:
        self._inner = inner if inner is not None else vodozemac.GroupSession()

    @property
    def session_id(self) -> str:
        return str(self._inner.session_id)

    @property
    def message_index(self) -> int:
        return int(self._inner.message_index)

    def session_key(self) -> str:
        return str(self._inner.session_key.to_base64())

    def encrypt(self, plaintext: bytes) -> bytes:
        return bytes(self._inner.encrypt(plaintext).to_bytes())

    def pickle(self, key: bytes) -> str:
        return str(self._inner.pickle(key))

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> MegolmOutbound:
        try:
            return cls(vodozemac.GroupSession.from_pickle(pickle, key))
        except ValueError:
            raise DecryptionError() from None


@dataclass(frozen=True, slots=True)
class MegolmPlaintext:
    plaintext: bytes
    message_index: int


class MegolmInbound:
    """A receiver's copy of one sender's group session."""

    def __init__(self, inner: vodozemac.InboundGroupSession) -> None:
        self._inner = inner

    @classmethod
    def from_session_key(cls, session_key: str) -> MegolmInbound:
        try:
            return cls(vodozemac.InboundGroupSession(vodozemac.SessionKey(session_key)))
        except ValueError:
            raise DecryptionError() from None

    @property
    def session_id(self) -> str:
        return str(self._inner.session_id)

    def decrypt(self, ciphertext: bytes) -> MegolmPlaintext:
        try:
            result = self._inner.decrypt(vodozemac.MegolmMessage.from_bytes(ciphertext))
        except ValueError:
            raise DecryptionError() from None
        return MegolmPlaintext(bytes(result.plaintext), int(result.message_index))

    def pickle(self, key: bytes) -> str:
        return str(self._inner.pickle(key))

    @classmethod
    def from_pickle(cls, pickle: str, key: bytes) -> MegolmInbound:
        try:
            return cls(vodozemac.InboundGroupSession.from_pickle(pickle, key))
        except ValueError:
            raise DecryptionError() from None
