"""Parameters of private threshold matching, their canonical encoding and their limits.

The defaults come from measurement on real photos (`bench/vouchers.py params`; the numbers and
the arithmetic are in docs/protocol/private-matching.md, "Parameters"). Every table file carries
the parameters it was built with, so a client always uses the server's values.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from math import comb

from accord.errors import InvalidInput

#: Bands per PDQ hash (L): each band is `DEFAULT_BAND_BITS` sampled bit positions.
DEFAULT_BAND_COUNT = 32
#: Bits per band (b).
DEFAULT_BAND_BITS = 40
#: Distinct real matching images an account must send before the server can open anything (t).
DEFAULT_THRESHOLD = 12
#: Probability that a voucher is synthetic (p), in parts per million.
DEFAULT_SYNTHETIC_RATE_PPM = 10_000
#: Dimension of the detection code (interleaving degree of the Reed-Solomon code): the most
#: non-real shares (synthetic, duplicates excluded) one epoch can hold while real shares stay
#: identifiable.
DEFAULT_DETECTION_DIM = 256
#: Images per key epoch: shares of different epochs never combine.
DEFAULT_EPOCH_IMAGES = 10_000
#: Side of the visual derivative (grayscale, one byte per pixel).
DERIVATIVE_SIDE_PX = 64
DERIVATIVE_BYTES = DERIVATIVE_SIDE_PX * DERIVATIVE_SIDE_PX

#: The prime field of the detection code: 2^31 - 1.
DETECTION_PRIME = 2**31 - 1

#: Distances (bits) between a banked photo's PDQ hash and its everyday edits, as measured on
#: `highres/` (16 edits that PDQ is designed to survive, 712 pairs within 31 bits; PDQ
#: distances are always even): how many pairs
#: were at distance 0, 1, ..., 31. Synthetic vouchers open as many bands as a real near-duplicate
#: would, drawn from this (see `synthetic_open_count_weights`). Regenerate with
#: `bench/vouchers.py params`.
NEAR_DUPLICATE_DISTANCE_COUNTS: tuple[int, ...] = (
    235, 0, 152, 0, 58, 0, 59, 0, 51, 0, 32, 0, 27, 0, 34, 0,
    19, 0, 10, 0, 14, 0, 4, 0, 6, 0, 4, 0, 2, 0, 5, 0,
)  # fmt: skip

_ENCODING = struct.Struct(">HHHIHI")
PARAMS_BYTES = _ENCODING.size


@dataclass(frozen=True, slots=True, kw_only=True)
class MatchingParams:
    band_count: int = DEFAULT_BAND_COUNT
    band_bits: int = DEFAULT_BAND_BITS
    threshold: int = DEFAULT_THRESHOLD
    synthetic_rate_ppm: int = DEFAULT_SYNTHETIC_RATE_PPM
    detection_dim: int = DEFAULT_DETECTION_DIM
    epoch_images: int = DEFAULT_EPOCH_IMAGES

    def __post_init__(self) -> None:
        if not 1 <= self.band_count <= 128:
            raise InvalidInput("band count must be 1..128")
        if not 8 <= self.band_bits <= 128:
            raise InvalidInput("band bits must be 8..128")
        if not 2 <= self.threshold <= 64:
            raise InvalidInput("threshold must be 2..64")
        if not 0 <= self.synthetic_rate_ppm <= 200_000:
            raise InvalidInput("synthetic rate must be at most 20%")
        if not self.threshold <= self.detection_dim <= 1024:
            raise InvalidInput("detection dimension must be between the threshold and 1024")
        if not 1 <= self.epoch_images <= 10_000_000:
            raise InvalidInput("epoch length must be 1..10,000,000 images")

    def encode(self) -> bytes:
        return _ENCODING.pack(
            self.band_count,
            self.band_bits,
            self.threshold,
            self.synthetic_rate_ppm,
            self.detection_dim,
            self.epoch_images,
        )

    @classmethod
    def decode(cls, data: bytes) -> MatchingParams:
        if len(data) != PARAMS_BYTES:
            raise InvalidInput("malformed matching parameters")
        l_, b, t, p, m, e = _ENCODING.unpack(data)
        return cls(
            band_count=l_,
            band_bits=b,
            threshold=t,
            synthetic_rate_ppm=p,
            detection_dim=m,
            epoch_images=e,
        )

    @property
    def band_element_bytes(self) -> int:
        return 2 + (self.band_bits + 7) // 8


def band_collision_probability(distance_bits: int, band_bits: int) -> float:
    """Probability that one band of `band_bits` random positions (of 256) agrees on two hashes
    `distance_bits` apart."""
    return comb(256 - distance_bits, band_bits) / comb(256, band_bits)


def synthetic_open_count_weights(params: MatchingParams) -> list[float]:
    """Distribution of the number of bands a real near-duplicate opens (index k-1 for k bands),
    from the measured distances and the binomial band model, conditioned on at least one."""
    n = params.band_count
    weights = [0.0] * n
    for d, count in enumerate(NEAR_DUPLICATE_DISTANCE_COUNTS):
        if not count:
            continue
        q = band_collision_probability(d, params.band_bits)
        for k in range(1, n + 1):
            weights[k - 1] += count * comb(n, k) * q**k * (1 - q) ** (n - k)
    total = sum(weights)
    return [w / total for w in weights]
