"""Bit-sampling bands (locality-sensitive hashing for Hamming distance).

Band j takes `band_bits` bit positions of the 256-bit PDQ hash, chosen pseudo-randomly from the
table's public seed; a band *element* is the band index and the sampled bits. Two hashes d bits
apart agree on one band with probability C(256-d, b) / C(256, b), so near-duplicates share at
least one element with high probability and unrelated hashes (about 128 bits apart) almost never.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from accord.errors import InvalidInput
from accord.protocols.detection.signals import PDQ_HASH_BITS, PdqHash
from accord.protocols.private_matching.params import MatchingParams

BAND_SEED_BYTES = 32
_POSITIONS_LABEL = b"accord-pm-v1 band positions"


def _u32_stream(seed: bytes, band: int) -> Iterator[int]:
    counter = 0
    while True:
        block = hmac.digest(
            seed, _POSITIONS_LABEL + struct.pack(">HI", band, counter), hashlib.sha256
        )
        counter += 1
        for i in range(0, 32, 4):
            yield int.from_bytes(block[i : i + 4], "big")


def band_positions(seed: bytes, params: MatchingParams) -> tuple[tuple[int, ...], ...]:
    """The sorted bit positions of every band: a Fisher-Yates shuffle of 0..255 per band, driven
    by HMAC-SHA256(seed, label || band || counter)."""
    if len(seed) != BAND_SEED_BYTES:
        raise InvalidInput("a band seed is 32 bytes")
    bands = []
    for j in range(params.band_count):
        stream = _u32_stream(seed, j)
        order = list(range(PDQ_HASH_BITS))
        for i in range(PDQ_HASH_BITS - 1, 0, -1):
            # rejection sampling keeps the shuffle uniform
            limit = (2**32 // (i + 1)) * (i + 1)
            while True:
                r = next(stream)
                if r < limit:
                    break
            k = r % (i + 1)
            order[i], order[k] = order[k], order[i]
        bands.append(tuple(sorted(order[: params.band_bits])))
    return tuple(bands)


@dataclass(frozen=True, slots=True)
class BandSampler:
    """Turns PDQ hashes into band elements for one table (seed and parameters)."""

    positions: tuple[tuple[int, ...], ...]
    element_bytes: int

    @classmethod
    def create(cls, seed: bytes, params: MatchingParams) -> BandSampler:
        return cls(band_positions(seed, params), params.band_element_bytes)

    def elements(self, pdq: PdqHash) -> list[bytes]:
        """One element per band: 2-byte band index then the sampled bits, packed MSB first."""
        bits = np.unpackbits(np.frombuffer(pdq.value, dtype=np.uint8))
        return [
            struct.pack(">H", j) + np.packbits(bits[list(pos)]).tobytes()
            for j, pos in enumerate(self.positions)
        ]

    def elements_batch(self, hashes: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.uint8]]:
        """For an (n, 32) array of hashes: per band, an (n, element_bytes) array of elements."""
        if hashes.ndim != 2 or hashes.shape[1] != PDQ_HASH_BITS // 8:
            raise InvalidInput("hashes must be an (n, 32) byte array")
        bits = np.unpackbits(hashes, axis=1)
        out = []
        for j, pos in enumerate(self.positions):
            packed = np.packbits(bits[:, list(pos)], axis=1)
            prefix = np.tile(np.frombuffer(struct.pack(">H", j), dtype=np.uint8), (len(hashes), 1))
            out.append(np.concatenate([prefix, packed], axis=1))
        return out
