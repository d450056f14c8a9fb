"""The blinded table: the server's bank, blinded, in a cuckoo table clients can download.

For every band element e of every banked PDQ hash the server computes alpha * H(e) (H is
RFC 9380 hash-to-ristretto255 with the table's seed and a domain separation tag; alpha is the
server's secret scalar) and places it in a cuckoo table with two hash functions: element e sits
in slot h_0(e) or h_1(e). Empty slots get random points, so the table shows how many slots there
are and nothing else. Clients never see a PDQ hash from the bank.

File format (version 1), all integers big-endian::

    magic       16 bytes  b"ACCORD-PM-TABLE" 0x01
    params      16 bytes  MatchingParams.encode()
    band_seed   32 bytes  public seed of the band positions and of H's input
    cuckoo_salt 16 bytes  public salt of the two cuckoo hash functions
    public      32 bytes  alpha * G (ristretto255)
    n_slots      4 bytes
    slots       32 * n_slots bytes, each a ristretto255 point

The table's digest is SHA-256 over the whole file; it is what the transparency log records, and a
client refuses a table whose digest it was not given (`BlindedTable.parse(expected_digest=...)`).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import rbcl

from accord.errors import (
    ConfigurationError,
    InvalidInput,
    TooLarge,
    UnsupportedVersion,
    VerificationError,
)
from accord.primitives.ristretto import Point, Scalar, generator_multiple, hash_to_group, multiply
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.bands import BAND_SEED_BYTES, BandSampler
from accord.protocols.private_matching.params import PARAMS_BYTES, MatchingParams

TABLE_MAGIC = b"ACCORD-PM-TABLE\x01"
CUCKOO_SALT_BYTES = 16
TABLE_HEADER_BYTES = len(TABLE_MAGIC) + PARAMS_BYTES + BAND_SEED_BYTES + CUCKOO_SALT_BYTES + 32 + 4
#: Refuse tables larger than this many slots (4 GiB of points).
TABLE_MAX_SLOTS = 2**27
#: Share of slots holding an element: a two-choice cuckoo table with one slot per bucket builds
#: reliably below 0.5.
CUCKOO_LOAD_FACTOR = 0.45
CUCKOO_MAX_KICKS = 2_000
CUCKOO_MAX_ATTEMPTS = 8
HASH_TO_GROUP_DST = b"accord-pm-v1 band element to ristretto255"
_CUCKOO_LABEL = b"accord-pm-v1 cuckoo"


@dataclass(frozen=True, slots=True)
class TableDigest:
    """SHA-256 of a table file: the value the transparency log records."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != 32:
            raise InvalidInput("a table digest is 32 bytes")

    def hex(self) -> str:
        return self.value.hex()


@dataclass(frozen=True, slots=True)
class TableSecret:
    """The server's blinding scalar alpha for one table version."""

    alpha: Scalar

    @classmethod
    def generate(cls) -> TableSecret:
        return cls(Scalar.random())

    @property
    def public(self) -> Point:
        return generator_multiple(self.alpha)

    def __repr__(self) -> str:
        return "TableSecret(...)"


def band_point(band_seed: bytes, element: bytes) -> Point:
    """H(e): hash-to-group of the element, bound to the table's seed."""
    return hash_to_group(band_seed + element, HASH_TO_GROUP_DST)


def cuckoo_slot(cuckoo_salt: bytes, which: int, element: bytes, n_slots: int) -> int:
    digest = hashlib.sha256(_CUCKOO_LABEL + cuckoo_salt + bytes([which]) + element).digest()
    return int.from_bytes(digest[:8], "big") % n_slots


def slot_count_for(n_elements: int) -> int:
    return max(8, int(n_elements / CUCKOO_LOAD_FACTOR) + 1)


def place_elements(elements: Sequence[bytes], n_slots: int, cuckoo_salt: bytes) -> list[int] | None:
    """Cuckoo placement: slot -> element index (-1 if empty), or None if insertion failed."""
    slots = [-1] * n_slots
    choices = [
        (cuckoo_slot(cuckoo_salt, 0, e, n_slots), cuckoo_slot(cuckoo_salt, 1, e, n_slots))
        for e in elements
    ]
    rng = np.random.default_rng(int.from_bytes(cuckoo_salt, "big"))
    coin = rng.integers(0, 2, size=CUCKOO_MAX_KICKS * 4).tolist()
    for idx in range(len(elements)):
        current = idx
        h0, h1 = choices[current]
        if slots[h0] == -1:
            slots[h0] = current
            continue
        if slots[h1] == -1:
            slots[h1] = current
            continue
        pos = h0 if coin[idx % len(coin)] else h1
        for kick in range(CUCKOO_MAX_KICKS):
            current, slots[pos] = slots[pos], current
            a, b = choices[current]
            pos = b if pos == a else a
            if slots[pos] == -1:
                slots[pos] = current
                break
            del kick
        else:
            return None
    return slots


@dataclass(frozen=True, slots=True, kw_only=True)
class BlindedTable:
    params: MatchingParams
    band_seed: bytes
    cuckoo_salt: bytes
    public: Point
    n_slots: int
    slot_bytes: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.band_seed) != BAND_SEED_BYTES or len(self.cuckoo_salt) != CUCKOO_SALT_BYTES:
            raise InvalidInput("malformed table seed or salt")
        if not 1 <= self.n_slots <= TABLE_MAX_SLOTS:
            raise TooLarge("table slot count out of limits")
        if len(self.slot_bytes) != 32 * self.n_slots:
            raise InvalidInput("table slots do not match the slot count")

    def header(self) -> bytes:
        return (
            TABLE_MAGIC
            + self.params.encode()
            + self.band_seed
            + self.cuckoo_salt
            + self.public.value
            + struct.pack(">I", self.n_slots)
        )

    def encode(self) -> bytes:
        return self.header() + self.slot_bytes

    def digest(self) -> TableDigest:
        h = hashlib.sha256(self.header())
        h.update(self.slot_bytes)
        return TableDigest(h.digest())

    def sampler(self) -> BandSampler:
        return BandSampler.create(self.band_seed, self.params)

    def slot(self, index: int) -> Point:
        """The point in one slot, validated (a bad point in a logged table is refused here)."""
        return Point(self.slot_bytes[32 * index : 32 * index + 32])

    def slots_for(self, element: bytes) -> tuple[int, int]:
        return (
            cuckoo_slot(self.cuckoo_salt, 0, element, self.n_slots),
            cuckoo_slot(self.cuckoo_salt, 1, element, self.n_slots),
        )

    @classmethod
    def parse(cls, data: bytes, *, expected_digest: TableDigest) -> BlindedTable:
        """Parse a table file, refusing it unless its SHA-256 is `expected_digest` (the logged
        value). Sizes are checked before anything else; slot points are validated on use."""
        if len(data) < TABLE_HEADER_BYTES:
            raise InvalidInput("table file too short")
        if not hmac.compare_digest(hashlib.sha256(data).digest(), expected_digest.value):
            raise VerificationError("table digest does not match the logged digest")
        return cls._parse_unverified(data)

    @classmethod
    def _parse_unverified(cls, data: bytes) -> BlindedTable:
        if len(data) < TABLE_HEADER_BYTES:
            raise InvalidInput("table file too short")
        if data[: len(TABLE_MAGIC) - 1] != TABLE_MAGIC[:-1]:
            raise InvalidInput("not a private-matching table file")
        if data[len(TABLE_MAGIC) - 1] != TABLE_MAGIC[-1]:
            raise UnsupportedVersion("unsupported table format version")
        off = len(TABLE_MAGIC)
        params = MatchingParams.decode(data[off : off + PARAMS_BYTES])
        off += PARAMS_BYTES
        band_seed = data[off : off + BAND_SEED_BYTES]
        off += BAND_SEED_BYTES
        salt = data[off : off + CUCKOO_SALT_BYTES]
        off += CUCKOO_SALT_BYTES
        public = Point(data[off : off + 32])
        off += 32
        (n_slots,) = struct.unpack(">I", data[off : off + 4])
        off += 4
        if not 1 <= n_slots <= TABLE_MAX_SLOTS:
            raise TooLarge("table slot count out of limits")
        if len(data) != off + 32 * n_slots:
            raise InvalidInput("table file size does not match its slot count")
        return cls(
            params=params,
            band_seed=band_seed,
            cuckoo_salt=salt,
            public=public,
            n_slots=n_slots,
            slot_bytes=bytes(data[off:]),
        )


def unique_band_elements(
    hashes: Sequence[PdqHash] | npt.NDArray[np.uint8], sampler: BandSampler
) -> list[bytes]:
    """All distinct band elements of the hashes, in a canonical (sorted) order."""
    if isinstance(hashes, np.ndarray):
        arr = hashes
    else:
        arr = np.array([np.frombuffer(h.value, dtype=np.uint8) for h in hashes], dtype=np.uint8)
        arr = arr.reshape(-1, 32)
    seen: set[bytes] = set()
    for band in sampler.elements_batch(arr):
        width = band.shape[1]
        flat = band.tobytes()
        seen.update(flat[i : i + width] for i in range(0, len(flat), width))
    return sorted(seen)


def build_table(
    hashes: Sequence[PdqHash] | npt.NDArray[np.uint8],
    *,
    params: MatchingParams,
    secret: TableSecret,
    band_seed: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BlindedTable:
    """Blind every band element of `hashes` and place it; fill the rest with random points."""
    seed = band_seed if band_seed is not None else os.urandom(BAND_SEED_BYTES)
    sampler = BandSampler.create(seed, params)
    elements = unique_band_elements(hashes, sampler)
    n_slots = slot_count_for(len(elements))
    if n_slots > TABLE_MAX_SLOTS:
        raise TooLarge("bank too large for one table")
    for _attempt in range(CUCKOO_MAX_ATTEMPTS):
        salt = os.urandom(CUCKOO_SALT_BYTES)
        placement = place_elements(elements, n_slots, salt)
        if placement is not None:
            break
    else:  # pragma: no cover - vanishingly unlikely below load 0.5
        raise ConfigurationError("cuckoo table could not be built")
    out = bytearray(32 * n_slots)
    for i, idx in enumerate(placement):
        if idx >= 0:
            point = multiply(secret.alpha, band_point(seed, elements[idx])).value
        else:
            point = bytes(rbcl.crypto_core_ristretto255_random())
        out[32 * i : 32 * i + 32] = point
        if progress is not None and i % 100_000 == 0:
            progress(i, n_slots)
    return BlindedTable(
        params=params,
        band_seed=seed,
        cuckoo_salt=salt,
        public=secret.public,
        n_slots=n_slots,
        slot_bytes=bytes(out),
    )
