"""Signal types: what a hash is, how it is written down and how two of them are compared.

One abstract class per concept, as in python-threatexchange's `SignalType`, but every hash is a
typed value (a small frozen dataclass over bytes), never a bare string. Parsing text from outside
(bank files, command lines, requests) goes through `SignalType.parse`, which raises `InvalidInput`
with a message that never repeats the rejected value.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from accord.errors import InvalidInput

#: Two PDQ hashes at Hamming distance <= this are a match (ThreatExchange's recommended value).
PDQ_MATCH_THRESHOLD_BITS = 31
#: PDQ hashes whose quality is below this are neither indexed nor queried (flat or tiny images).
PDQ_MIN_QUALITY = 50
#: Number of bits in a PDQ hash.
PDQ_HASH_BITS = 256
#: A vPDQ video matches when at least this share of its good frames match a banked video's frames.
VPDQ_QUERY_MATCH_THRESHOLD_PERCENT = 80.0
#: At most this many frames in one vPDQ hash (one frame per second: about 28 hours of video).
VPDQ_MAX_FRAMES = 100_000

_HEX = re.compile(r"[0-9a-fA-F]+")


def _parse_hex(text: str, n_bytes: int, what: str) -> bytes:
    value = text.strip()
    if len(value) != 2 * n_bytes or not _HEX.fullmatch(value):
        raise InvalidInput(f"a {what} hash is {2 * n_bytes} hexadecimal digits")
    return bytes.fromhex(value)


@dataclass(frozen=True, slots=True)
class PdqHash:
    """A 256-bit PDQ hash. Bit 0 of the reference implementation's vector is the first bit."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != PDQ_HASH_BITS // 8:
            raise InvalidInput("a PDQ hash is 32 bytes")

    @classmethod
    def from_hex(cls, text: str) -> PdqHash:
        return cls(_parse_hex(text, 32, "PDQ"))

    def hex(self) -> str:
        return self.value.hex()

    def distance(self, other: PdqHash) -> int:
        """Hamming distance in bits."""
        return (int.from_bytes(self.value, "big") ^ int.from_bytes(other.value, "big")).bit_count()

    def __repr__(self) -> str:  # hashes of user content stay out of logs and tracebacks
        return "PdqHash(...)"


@dataclass(frozen=True, slots=True)
class Md5Hash:
    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != 16:
            raise InvalidInput("an MD5 hash is 16 bytes")

    @classmethod
    def from_hex(cls, text: str) -> Md5Hash:
        return cls(_parse_hex(text, 16, "MD5"))

    @classmethod
    def of(cls, data: bytes) -> Md5Hash:
        return cls(hashlib.md5(data, usedforsecurity=False).digest())

    def hex(self) -> str:
        return self.value.hex()

    def __repr__(self) -> str:
        return "Md5Hash(...)"


@dataclass(frozen=True, slots=True)
class Sha256Hash:
    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != 32:
            raise InvalidInput("a SHA-256 hash is 32 bytes")

    @classmethod
    def from_hex(cls, text: str) -> Sha256Hash:
        return cls(_parse_hex(text, 32, "SHA-256"))

    @classmethod
    def of(cls, data: bytes) -> Sha256Hash:
        return cls(hashlib.sha256(data).digest())

    def hex(self) -> str:
        return self.value.hex()

    def __repr__(self) -> str:
        return "Sha256Hash(...)"


@dataclass(frozen=True, slots=True)
class VpdqFrame:
    """One sampled video frame: its PDQ hash, quality (0..100) and time in seconds."""

    pdq: PdqHash
    quality: int
    timestamp_s: float

    def __post_init__(self) -> None:
        if not 0 <= self.quality <= 100:
            raise InvalidInput("a vPDQ frame quality is between 0 and 100")
        if not math.isfinite(self.timestamp_s) or self.timestamp_s < 0:
            raise InvalidInput("a vPDQ frame timestamp is a non-negative number")


@dataclass(frozen=True, slots=True)
class VpdqHash:
    """A video's vPDQ hash: its sampled frames.

    The text form is python-threatexchange's (and so HMA's): a JSON list of "pdqhex,quality,time"
    strings, the time with three decimals.
    """

    frames: tuple[VpdqFrame, ...]

    def __post_init__(self) -> None:
        if len(self.frames) > VPDQ_MAX_FRAMES:
            raise InvalidInput("a vPDQ hash has too many frames")

    @classmethod
    def from_hex(cls, text: str) -> VpdqHash:
        if len(text) > VPDQ_MAX_FRAMES * 80:
            raise InvalidInput("a vPDQ hash has too many frames")
        try:
            items = json.loads(text or "[]")
        except (ValueError, RecursionError):
            raise InvalidInput("a vPDQ hash is a JSON list of frame strings") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise InvalidInput("a vPDQ hash is a JSON list of frame strings")
        frames = []
        for item in items:
            parts = item.split(",")
            if len(parts) != 3:
                raise InvalidInput("a vPDQ frame is 'pdqhex,quality,seconds'")
            try:
                quality, timestamp = int(parts[1]), float(parts[2])
            except ValueError:
                raise InvalidInput("a vPDQ frame is 'pdqhex,quality,seconds'") from None
            frames.append(VpdqFrame(PdqHash.from_hex(parts[0]), quality, timestamp))
        return cls(tuple(frames))

    def hex(self) -> str:
        return json.dumps(
            [f"{f.pdq.hex()},{f.quality},{f.timestamp_s:.3f}" for f in self.frames],
            separators=(",", ":"),
        )

    def good_frames(self, min_quality: int = PDQ_MIN_QUALITY) -> list[PdqHash]:
        """Distinct frame hashes of usable quality, in order (what is indexed and queried)."""
        seen: set[bytes] = set()
        out = []
        for frame in self.frames:
            if frame.quality >= min_quality and frame.pdq.value not in seen:
                seen.add(frame.pdq.value)
                out.append(frame.pdq)
        return out

    def __repr__(self) -> str:
        return f"VpdqHash(<{len(self.frames)} frames>)"


AnyHash = PdqHash | Md5Hash | Sha256Hash | VpdqHash
H = TypeVar("H", PdqHash, Md5Hash, Sha256Hash, VpdqHash)


class SignalType(ABC, Generic[H]):
    """A kind of hash: its name in files and APIs, its parser and its default match threshold."""

    name: ClassVar[str]
    #: Default threshold for a bank of this type (bits for PDQ, 0 for exact hashes).
    default_threshold: ClassVar[int] = 0
    #: Largest threshold a bank of this type may set.
    max_threshold: ClassVar[int] = 0

    @classmethod
    @abstractmethod
    def parse(cls, text: str) -> H:
        """Parse the text form; raise `InvalidInput` (without echoing the value) if malformed."""

    @classmethod
    def format(cls, value: H) -> str:
        return value.hex()

    @classmethod
    def to_bytes(cls, value: H) -> bytes:
        """Canonical bytes (for bank versions)."""
        return cls.format(value).encode("ascii")


class PdqSignal(SignalType[PdqHash]):
    name = "pdq"
    default_threshold = PDQ_MATCH_THRESHOLD_BITS
    max_threshold = 64

    @classmethod
    def parse(cls, text: str) -> PdqHash:
        return PdqHash.from_hex(text)


class Md5Signal(SignalType[Md5Hash]):
    name = "md5"

    @classmethod
    def parse(cls, text: str) -> Md5Hash:
        return Md5Hash.from_hex(text)


class Sha256Signal(SignalType[Sha256Hash]):
    name = "sha256"

    @classmethod
    def parse(cls, text: str) -> Sha256Hash:
        return Sha256Hash.from_hex(text)


class VpdqSignal(SignalType[VpdqHash]):
    name = "vpdq"
    #: Per-frame PDQ distance; a video also needs VPDQ_QUERY_MATCH_THRESHOLD_PERCENT of frames.
    default_threshold = PDQ_MATCH_THRESHOLD_BITS
    max_threshold = 64

    @classmethod
    def parse(cls, text: str) -> VpdqHash:
        return VpdqHash.from_hex(text)


SIGNAL_TYPES: dict[str, type[SignalType[Any]]] = {
    PdqSignal.name: PdqSignal,
    Md5Signal.name: Md5Signal,
    Sha256Signal.name: Sha256Signal,
    VpdqSignal.name: VpdqSignal,
}

#: Names other tools use for the same signal types (python-threatexchange, HMA, NCMEC).
SIGNAL_ALIASES: dict[str, str] = {
    "pdq": "pdq",
    "md5": "md5",
    "video_md5": "md5",
    "photo_md5": "md5",
    "sha256": "sha256",
    "sha-256": "sha256",
    "video_sha256": "sha256",
    "vpdq": "vpdq",
    "video_vpdq": "vpdq",
}


def signal_type_named(name: str) -> str:
    """The canonical signal type name for `name` (case-insensitive, aliases accepted)."""
    canonical = SIGNAL_ALIASES.get(name.strip().lower())
    if canonical is None:
        raise InvalidInput("unknown signal type (expected pdq, md5, sha256 or vpdq)")
    return canonical


def parse_hash(signal_type: str, text: str) -> AnyHash:
    """Parse `text` as a hash of the (canonical or alias) signal type."""
    canonical = signal_type_named(signal_type)
    if canonical == "pdq":
        return PdqHash.from_hex(text)
    if canonical == "md5":
        return Md5Hash.from_hex(text)
    if canonical == "sha256":
        return Sha256Hash.from_hex(text)
    return VpdqHash.from_hex(text)


def signal_type_of(value: AnyHash) -> str:
    if isinstance(value, PdqHash):
        return "pdq"
    if isinstance(value, Md5Hash):
        return "md5"
    if isinstance(value, Sha256Hash):
        return "sha256"
    return "vpdq"
