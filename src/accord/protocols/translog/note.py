"""C2SP signed notes, checkpoints and cosignatures, with Ed25519.

Specifications (C2SP, https://c2sp.org):

- signed-note: a note is UTF-8 text ending in a newline, a blank line, then one or more lines
  ``— <key name> base64(uint32 key ID || signature)``. Verifiers ignore signatures by unknown
  keys, must verify those by known keys, and reject a note with no verified signature.
  Key IDs are ``SHA-256(name || 0x0A || signature type || public key)[:4]``; type 0x01 is
  Ed25519 over the note text.
- tlog-checkpoint: the note text of a transparency log checkpoint is ``origin``, ``tree size``
  (decimal, no leading zeroes), ``base64(root hash)`` and optional non-empty extension lines.
- tlog-cosignature: type 0x04 signatures are ``uint64 timestamp || Ed25519 signature`` over
  ``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint text``.

Keys are written as in golang.org/x/mod/sumdb/note: a verifier key (vkey) is
``<name>+<8 hex key ID>+base64(type || public key)`` and a signer key (skey) is
``PRIVATE+KEY+<name>+<8 hex key ID>+base64(type || Ed25519 seed)``.

Limits: a note is at most `MAX_NOTE_SIZE_BYTES` and carries at most `MAX_NOTE_SIGNATURES`
signature lines (C2SP asks verifiers to accept at least 16); key names are at most
`MAX_KEY_NAME_BYTES`. Every parser raises `InvalidInput` on malformed input and every
verification raises `VerificationError`; nothing else escapes.

``verify_checkpoint`` implements steps V1 (log signature) and V2 (witness quorum) of the client
verification in ``docs/protocol/transparency.md``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accord.errors import InvalidInput, TooLarge, VerificationError
from accord.protocols.translog.merkle import HASH_SIZE_BYTES, MAX_TREE_SIZE

MAX_NOTE_SIZE_BYTES = 1 << 20
"""Largest encoded note accepted (1 MiB): room for 100 post-quantum signatures of ~5 kB."""

MAX_NOTE_SIGNATURES = 100
"""Most signature lines accepted in one note (as golang.org/x/mod/sumdb/note; C2SP: >= 16)."""

MAX_KEY_NAME_BYTES = 256
"""Longest key name accepted in keys and signature lines."""

MAX_COSIGNATURE_TIMESTAMP = 2**63 - 1
"""tlog-cosignature: the timestamp MUST NOT exceed 2^63 - 1."""

SIG_TYPE_ED25519 = 0x01
SIG_TYPE_COSIGNATURE_V1 = 0x04

SIGNATURE_LINE_PREFIX = "\u2014 "  # em dash, space
COSIGNATURE_V1_HEADER = "cosignature/v1\n"
SKEY_PREFIX = "PRIVATE+KEY+"

ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
COSIGNATURE_TIMESTAMP_BYTES = 8
KEY_ID_BYTES = 4

_CONTROL_CHARS = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


# --------------------------------------------------------------------------------------------
# Encoding helpers


def _decode_base64(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 §4) with padding, in its one canonical form only."""
    if not text or len(text) % 4 or not _BASE64.fullmatch(text):
        raise InvalidInput(f"{what} is not base64")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise InvalidInput(f"{what} is not canonical base64")
    return raw


def _encode_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _check_key_name(name: str) -> None:
    """signed-note: key names are non-empty and contain no Unicode spaces and no '+'."""
    if not isinstance(name, str):
        raise InvalidInput("invalid key name")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("invalid key name") from None
    if (
        not 0 < size <= MAX_KEY_NAME_BYTES
        or "+" in name
        or any(ch.isspace() for ch in name)
        or _CONTROL_CHARS.search(name)
    ):
        raise InvalidInput("invalid key name")


def key_id(name: str, sig_type: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || signature type || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([sig_type]) + public_key)
    return int.from_bytes(digest.digest()[:KEY_ID_BYTES], "big")


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The tlog-cosignature Ed25519 signed message: header, time line, checkpoint text."""
    return f"{COSIGNATURE_V1_HEADER}time {timestamp}\n{text}".encode()


# --------------------------------------------------------------------------------------------
# Notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key ID, and the signature bytes after the key ID."""

    name: str
    key_id: int
    signature: bytes

    def to_line(self) -> str:
        raw = self.key_id.to_bytes(KEY_ID_BYTES, "big") + self.signature
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {_encode_base64(raw)}\n"

    @property
    def key_label(self) -> str:
        """``name+keyid``, as keys are named in messages."""
        return f"{self.name}+{self.key_id:08x}"


@dataclass(frozen=True)
class Note:
    """A parsed note whose signatures have NOT been checked (see `verify_note`)."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    """A note with at least one signature verified by a trusted key.

    ``verified`` holds the verified signatures (one per key, in note order); ``unknown`` holds
    the de-duplicated signatures by keys the caller did not trust, which say nothing.
    """

    text: str
    verified: tuple[NoteSignature, ...]
    unknown: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    if _CONTROL_CHARS.search(text):
        raise InvalidInput("note contains control characters")


def _as_text(data: bytes | str) -> str:
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("note is not valid UTF-8") from None
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raise InvalidInput("note must be bytes or text")
    if len(raw) > MAX_NOTE_SIZE_BYTES:
        raise TooLarge("note exceeds the size limit")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("note is not valid UTF-8") from None


def parse_unverified_note(data: bytes | str) -> Note:
    """Split a note into text and signature lines without checking any signature.

    Raises `InvalidInput` (or `TooLarge`) for anything the signed-note format does not allow.
    """
    text = _as_text(data)
    # Signed notes MUST be valid UTF-8 with no ASCII control characters but newline.
    _check_text(text)
    # The text is separated from the signatures by the LAST empty line; it includes its final
    # newline and may itself contain empty lines.
    split = text.rfind("\n\n")
    if split < 0:
        raise InvalidInput("note has no signature block")
    body, block = text[: split + 1], text[split + 2 :]
    if not block or not block.endswith("\n"):
        raise InvalidInput("signature block must end in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise InvalidInput("note has too many signatures")
    return Note(text=body, signatures=tuple(_parse_signature_line(line) for line in lines))


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise InvalidInput("malformed signature line")
    name, sep, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    if not sep:
        raise InvalidInput("malformed signature line")
    _check_key_name(name)
    raw = _decode_base64(encoded, "signature")
    if len(raw) < KEY_ID_BYTES + 1:
        raise InvalidInput("signature is too short")
    return NoteSignature(name, int.from_bytes(raw[:KEY_ID_BYTES], "big"), raw[KEY_ID_BYTES:])


def parse_signature_line(line: str) -> NoteSignature:
    """Parse one ``— name base64`` line (with or without its final newline)."""
    if not isinstance(line, str) or len(line) > MAX_NOTE_SIZE_BYTES:
        raise InvalidInput("malformed signature line")
    _check_text(line)
    return _parse_signature_line(line.removesuffix("\n"))


def format_note(note: Note) -> str:
    """Encode a note: text, blank line, one line per signature."""
    _check_signable_text(note.text)
    if not note.signatures:
        raise InvalidInput("a note needs at least one signature")
    if len(note.signatures) > MAX_NOTE_SIGNATURES:
        raise InvalidInput("note has too many signatures")
    for sig in note.signatures:
        _check_key_name(sig.name)
    return note.text + "\n" + "".join(sig.to_line() for sig in note.signatures)


def _check_signable_text(text: str) -> None:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise InvalidInput("note text must end in a newline")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidInput("note text is not valid UTF-8") from None
    if size > MAX_NOTE_SIZE_BYTES:
        raise TooLarge("note text exceeds the size limit")
    _check_text(text)


# --------------------------------------------------------------------------------------------
# Verifiers


@dataclass(frozen=True)
class Verifier:
    """A trusted public key: name, key ID, signature type and the raw public key."""

    name: str
    key_id: int
    public_key: bytes
    sig_type: int = field(default=SIG_TYPE_ED25519)
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if self.sig_type not in (SIG_TYPE_ED25519, SIG_TYPE_COSIGNATURE_V1):
            raise InvalidInput("unsupported signature type")
        if len(self.public_key) != ED25519_KEY_BYTES:
            raise InvalidInput("wrong public key length")
        if self.key_id != key_id(self.name, self.sig_type, self.public_key):
            raise InvalidInput("key ID does not match the key")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key)
        except ValueError:
            raise InvalidInput("invalid public key") from None
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes, sig_type: int) -> Verifier:
        _check_key_name(name)
        return cls(name, key_id(name, sig_type, public_key), public_key, sig_type)

    @property
    def vkey(self) -> str:
        encoded = _encode_base64(bytes([self.sig_type]) + self.public_key)
        return f"{self.name}+{self.key_id:08x}+{encoded}"

    @property
    def key_label(self) -> str:
        return f"{self.name}+{self.key_id:08x}"

    @property
    def is_cosigner(self) -> bool:
        return self.sig_type == SIG_TYPE_COSIGNATURE_V1

    def verify(self, text: str, signature: bytes) -> bool:
        """Whether ``signature`` (the bytes after the key ID) is valid over note ``text``."""
        if self.sig_type == SIG_TYPE_COSIGNATURE_V1:
            try:
                timestamp, sig = split_cosignature(signature)
            except InvalidInput:
                return False
            message = cosignature_message(text, timestamp)
        else:
            if len(signature) != ED25519_SIGNATURE_BYTES:
                return False
            sig, message = signature, text.encode("utf-8")
        try:
            self._key.verify(sig, message)
        except InvalidSignature:
            return False
        return True


def split_cosignature(signature: bytes) -> tuple[int, bytes]:
    """Split a tlog-cosignature ``timestamped_signature`` into (timestamp, Ed25519 signature)."""
    if len(signature) != COSIGNATURE_TIMESTAMP_BYTES + ED25519_SIGNATURE_BYTES:
        raise InvalidInput("cosignature has the wrong length")
    timestamp = int.from_bytes(signature[:COSIGNATURE_TIMESTAMP_BYTES], "big")
    if timestamp > MAX_COSIGNATURE_TIMESTAMP:
        raise InvalidInput("cosignature timestamp out of range")
    return timestamp, signature[COSIGNATURE_TIMESTAMP_BYTES:]


def _split_key(text: str, parts: int, what: str) -> list[str]:
    if not isinstance(text, str) or len(text) > MAX_KEY_NAME_BYTES + 128:
        raise InvalidInput(f"malformed {what}")
    fields = text.split("+", parts - 1)  # the base64 part may itself contain '+'
    if len(fields) != parts:
        raise InvalidInput(f"malformed {what}")
    return fields


def parse_vkey(vkey: str) -> Verifier:
    """Parse ``name+keyid+base64(type || public key)`` (type 0x01 or 0x04, Ed25519)."""
    name, key_hex, encoded = _split_key(vkey, 3, "verifier key")
    if not _KEY_ID_HEX.fullmatch(key_hex):
        raise InvalidInput("malformed verifier key ID")
    raw = _decode_base64(encoded, "verifier key")
    if len(raw) != 1 + ED25519_KEY_BYTES:
        raise InvalidInput("unsupported verifier key")
    return Verifier(name, int(key_hex, 16), raw[1:], raw[0])


# --------------------------------------------------------------------------------------------
# Signers


class Signer:
    """An Ed25519 note signer (type 0x01), or a cosigner (type 0x04) for `CosignatureSigner`."""

    sig_type = SIG_TYPE_ED25519
    __slots__ = ("_private", "key_id", "name", "public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        _check_key_name(name)
        self.name = name
        self._private = private_key
        self.public_key = _public_bytes(private_key.public_key())
        self.key_id = key_id(name, self.sig_type, self.public_key)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_label!r})"

    @property
    def key_label(self) -> str:
        return f"{self.name}+{self.key_id:08x}"

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key, self.sig_type)

    @property
    def vkey(self) -> str:
        return self.verifier.vkey

    @property
    def skey(self) -> str:
        seed = self._private.private_bytes_raw()
        encoded = _encode_base64(bytes([self.sig_type]) + seed)
        return f"{SKEY_PREFIX}{self.name}+{self.key_id:08x}+{encoded}"

    def sign(self, text: str) -> NoteSignature:
        _check_signable_text(text)
        return NoteSignature(self.name, self.key_id, self._private.sign(text.encode("utf-8")))


class CosignatureSigner(Signer):
    """A tlog-cosignature/v1 signer (type 0x04): timestamped Ed25519 over a checkpoint."""

    sig_type = SIG_TYPE_COSIGNATURE_V1
    __slots__ = ()

    def sign(self, text: str, *, timestamp: int | None = None) -> NoteSignature:
        _check_signable_text(text)
        when = int(time.time()) if timestamp is None else timestamp
        if isinstance(when, bool) or not 0 <= when <= MAX_COSIGNATURE_TIMESTAMP:
            raise InvalidInput("cosignature timestamp out of range")
        sig = self._private.sign(cosignature_message(text, when))
        return NoteSignature(
            self.name, self.key_id, when.to_bytes(COSIGNATURE_TIMESTAMP_BYTES, "big") + sig
        )


def parse_skey(skey: str) -> Signer:
    """Parse ``PRIVATE+KEY+name+keyid+base64(type || seed)`` into a signer of that type."""
    if not isinstance(skey, str) or not skey.startswith(SKEY_PREFIX):
        raise InvalidInput("malformed signer key")
    name, key_hex, encoded = _split_key(skey[len(SKEY_PREFIX) :], 3, "signer key")
    if not _KEY_ID_HEX.fullmatch(key_hex):
        raise InvalidInput("malformed signer key ID")
    raw = _decode_base64(encoded, "signer key")
    if len(raw) != 1 + ED25519_KEY_BYTES:
        raise InvalidInput("unsupported signer key")
    signer_type: type[Signer]
    if raw[0] == SIG_TYPE_ED25519:
        signer_type = Signer
    elif raw[0] == SIG_TYPE_COSIGNATURE_V1:
        signer_type = CosignatureSigner
    else:
        raise InvalidInput("unsupported signer key")
    signer = signer_type(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
    if signer.key_id != int(key_hex, 16):
        raise InvalidInput("signer key ID does not match the key")
    return signer


def generate_signer(name: str) -> tuple[str, str]:
    """A new Ed25519 note key (type 0x01): returns (skey, vkey)."""
    signer = Signer(name, Ed25519PrivateKey.from_private_bytes(secrets.token_bytes(32)))
    return signer.skey, signer.vkey


def generate_cosigner(name: str) -> tuple[str, str]:
    """A new tlog-cosignature/v1 key (type 0x04), e.g. for a witness: returns (skey, vkey)."""
    signer = CosignatureSigner(name, Ed25519PrivateKey.from_private_bytes(secrets.token_bytes(32)))
    return signer.skey, signer.vkey


# --------------------------------------------------------------------------------------------
# Signing and verifying notes


def sign_note(text: str, signers: Sequence[Signer], *, timestamp: int | None = None) -> str:
    """Sign ``text`` with every signer and return the encoded note.

    ``timestamp`` is used by cosigners (default: now).
    """
    sigs = []
    for signer in signers:
        if isinstance(signer, CosignatureSigner):
            sigs.append(signer.sign(text, timestamp=timestamp))
        else:
            sigs.append(signer.sign(text))
    return format_note(Note(text, tuple(sigs)))


def add_signatures(note: str, signatures: Iterable[NoteSignature]) -> str:
    """Append signature lines to an encoded note (e.g. witness cosignatures); no checks."""
    parsed = parse_unverified_note(note)
    merged = list(parsed.signatures)
    for sig in signatures:
        if sig not in merged:
            merged.append(sig)
    return format_note(Note(parsed.text, tuple(merged)))


def verify_note(data: bytes | str | Note, verifiers: Sequence[Verifier]) -> VerifiedNote:
    """Parse a note and verify its signatures against the trusted ``verifiers``.

    Signatures whose (name, key ID) match no trusted key are ignored (kept in ``unknown``).
    A signature by a trusted key must verify, otherwise the whole note is rejected; repeated
    identical signature lines count once. Raises `VerificationError` if no trusted signature
    is present, if one fails, or if two trusted keys share a name and key ID and one of them
    signed; `InvalidInput` if the note is malformed.
    """
    note = data if isinstance(data, Note) else parse_unverified_note(data)
    by_id: dict[tuple[str, int], list[Verifier]] = {}
    for v in verifiers:
        by_id.setdefault((v.name, v.key_id), []).append(v)
    verified: list[NoteSignature] = []
    verified_keys: set[tuple[str, int]] = set()
    unknown: list[NoteSignature] = []
    for sig in note.signatures:
        candidates = by_id.get((sig.name, sig.key_id))
        if not candidates:
            if sig not in unknown:
                unknown.append(sig)
            continue
        if len(candidates) > 1:
            raise VerificationError(f"ambiguous key {sig.key_label}")
        if not candidates[0].verify(note.text, sig.signature):
            raise VerificationError(f"invalid signature for key {sig.key_label}")
        if (sig.name, sig.key_id) not in verified_keys:
            verified_keys.add((sig.name, sig.key_id))
            verified.append(sig)
    if not verified:
        raise VerificationError("note has no verifiable signatures")
    return VerifiedNote(note.text, tuple(verified), tuple(unknown))


def verify_cosignature(
    checkpoint_text: str, signature: NoteSignature | str, verifier: Verifier
) -> int:
    """Verify one tlog-cosignature/v1 by ``verifier`` over ``checkpoint_text``.

    ``signature`` is a parsed signature or a ``— name base64`` line. Returns the cosignature's
    timestamp (seconds since the epoch). Raises `VerificationError`.
    """
    if not verifier.is_cosigner:
        raise VerificationError("not a cosignature key")
    try:
        sig = parse_signature_line(signature) if isinstance(signature, str) else signature
        timestamp, _ = split_cosignature(sig.signature)
    except InvalidInput:
        raise VerificationError("malformed cosignature") from None
    if (sig.name, sig.key_id) != (verifier.name, verifier.key_id):
        raise VerificationError("cosignature is by another key")
    if not verifier.verify(checkpoint_text, sig.signature):
        raise VerificationError(f"invalid cosignature for key {verifier.key_label}")
    return timestamp


# --------------------------------------------------------------------------------------------
# Checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """The text of a tlog-checkpoint: origin, tree size, root hash, extension lines."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or _CONTROL_CHARS.search(self.origin):
            raise InvalidInput("invalid checkpoint origin")
        if isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise InvalidInput("checkpoint size out of range")
        if len(self.root_hash) != HASH_SIZE_BYTES:
            raise InvalidInput("checkpoint root hash has the wrong length")
        for line in self.extensions:
            if not line or "\n" in line or _CONTROL_CHARS.search(line):
                raise InvalidInput("invalid checkpoint extension line")

    def to_text(self) -> str:
        """The note text (body) of this checkpoint."""
        lines = [self.origin, str(self.size), _encode_base64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class VerifiedCheckpoint:
    """A checkpoint whose log signature (and witness quorum, if asked) verified."""

    checkpoint: Checkpoint
    note: VerifiedNote
    log_signatures: tuple[NoteSignature, ...]
    witness_signatures: tuple[NoteSignature, ...]


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (no signatures). Raises `InvalidInput`."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise InvalidInput("checkpoint must end in a newline")
    if len(text) > MAX_NOTE_SIZE_BYTES:
        raise TooLarge("checkpoint exceeds the size limit")
    lines = text[:-1].split("\n")
    # At least three lines, all non-empty (extension lines too).
    if len(lines) < 3 or any(not line for line in lines):
        raise InvalidInput("checkpoint needs three non-empty lines")
    origin, size_line, hash_line, *extensions = lines
    # Tree size: ASCII decimal, no leading zeroes, uint64.
    if not _DECIMAL.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise InvalidInput("invalid checkpoint size")
    root = _decode_base64(hash_line, "checkpoint root hash")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def verify_checkpoint(
    data: bytes | str,
    *,
    log_verifiers: Sequence[Verifier],
    origin: str | None = None,
    witness_verifiers: Sequence[Verifier] = (),
    witness_quorum: int = 0,
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint: steps V1 and V2 of docs/protocol/transparency.md.

    V1: at least one signature by a trusted log key verifies (and every trusted signature
    present verifies), the body parses as a checkpoint, and its origin is the expected one.
    V2: at least ``witness_quorum`` distinct trusted witness keys cosigned it.
    """
    if isinstance(witness_quorum, bool) or not 0 <= witness_quorum <= len(witness_verifiers):
        raise InvalidInput("witness quorum out of range")
    note = parse_unverified_note(data)
    log_keys = {(v.name, v.key_id) for v in log_verifiers}
    witness_keys = {(v.name, v.key_id) for v in witness_verifiers}
    if not log_keys:
        raise InvalidInput("no log key configured")
    # V1: verify_note checks every trusted signature present (log and witness keys alike).
    verified = verify_note(note, [*log_verifiers, *witness_verifiers])
    log_sigs = tuple(s for s in verified.verified if (s.name, s.key_id) in log_keys)
    if not log_sigs:
        raise VerificationError("checkpoint is not signed by the log")
    try:
        checkpoint = parse_checkpoint(verified.text)
    except InvalidInput:
        raise VerificationError("signed note is not a checkpoint") from None
    if origin is not None and checkpoint.origin != origin:
        raise VerificationError("checkpoint is for another log")
    # V2: witness quorum, counting each trusted witness key once.
    witness_sigs = tuple(
        s for s in verified.verified if (s.name, s.key_id) in witness_keys - log_keys
    )
    if len(witness_sigs) < witness_quorum:
        raise VerificationError(
            "checkpoint lacks a quorum of witness cosignatures", code="witness_quorum_not_met"
        )
    return VerifiedCheckpoint(checkpoint, verified, log_sigs, witness_sigs)
