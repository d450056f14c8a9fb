"""The weakest matching table a client accepts, and the arithmetic the floors come from
(docs/protocol/private-matching.md, "Floors").

A server chooses a table's parameters; a client that took them on trust could be handed a table
that opens benign images (narrow bands, a huge table, a threshold of 2, no synthetic vouchers).
The client therefore checks every table against floors it does not learn from the server
(`MatchingFloors`, from the deployment manifest) and refuses one below any of them.

The floors bound the chance that an account sending only images unrelated to the bank crosses
the threshold within one key epoch. One benign image opens a voucher only if one of its band
elements equals a table element of the same band; a table of n slots holds at most n elements,
and two unrelated PDQ hashes agree on a band of b sampled bits with probability rho(b) (the
measured distance distribution of unrelated photos, `chance_band_agreement`). So each image
opens with probability at most q = min(1, n * rho(b)), and an epoch of E distinct images opens
at least t with probability at most P[Binomial(E, q) >= t] (`benign_crossing_bound`). The
defaults keep that below `BENIGN_CROSSING_AIM` at every corner the floors allow.
"""

from __future__ import annotations

from math import exp, lgamma, log, log1p

from accord.errors import VerificationError
from accord.protocols.manifest import MatchingFloors
from accord.protocols.private_matching.params import MatchingParams, band_collision_probability

#: Aim: an account sending only images unrelated to the bank crosses the threshold in one key
#: epoch with probability at most this, at the weakest table the default floors allow.
BENIGN_CROSSING_AIM = 1e-10

#: Distances between PDQ hashes of unrelated photos, as measured (`bench/vouchers.py params`,
#: 1,121,253 pairs): mean and standard deviation in bits. The band model built on them matches
#: the measured per-band agreement where it can be observed and errs high beyond.
UNRELATED_DISTANCE_MEAN_BITS = 128.0
UNRELATED_DISTANCE_SD_BITS = 8.2

#: The default floors (derived in the protocol document; the deployment manifest carries the
#: deployment's own). A table at every one of them at once keeps a benign account's chance of
#: crossing below `BENIGN_CROSSING_AIM` (2.1e-11); the defaults of `MatchingParams` meet them.
DEFAULT_MATCHING_FLOORS = MatchingFloors(
    min_threshold=12,
    min_synthetic_rate_ppm=10_000,
    min_band_bits=40,
    max_band_count=64,
    max_epoch_images=10_000,
    max_table_slots=2**26,
)

BELOW_FLOOR = "matching_params_below_floor"


def chance_band_agreement(band_bits: int) -> float:
    """rho(b): probability that one band of `band_bits` random positions agrees on the PDQ
    hashes of two unrelated photos (distance modelled as the measured normal, on even
    distances, as PDQ distances are)."""
    # Imported where the bound is computed: the command line loads the default floors (for the
    # manifest's options) in every command that sets up or uses a device, which needs no PDQ type.
    from accord.protocols.detection.signals import PDQ_HASH_BITS

    weights = [
        (d, exp(-(((d - UNRELATED_DISTANCE_MEAN_BITS) / UNRELATED_DISTANCE_SD_BITS) ** 2) / 2))
        for d in range(0, PDQ_HASH_BITS + 1, 2)
    ]
    total = sum(w for _, w in weights)
    return sum(w * band_collision_probability(d, band_bits) for d, w in weights) / total


def benign_crossing_bound(
    *, band_bits: int, threshold: int, epoch_images: int, table_slots: int
) -> float:
    """Upper bound on P[an epoch of benign images opens at least `threshold` vouchers]:
    P[Binomial(E, q) >= t] with q = min(1, slots * rho(b)) (see the module docstring)."""
    q = min(1.0, table_slots * chance_band_agreement(band_bits))
    if q >= 1.0:
        return 1.0 if epoch_images >= threshold else 0.0
    total = 0.0
    for k in range(threshold, epoch_images + 1):
        log_term = (
            lgamma(epoch_images + 1)
            - lgamma(k + 1)
            - lgamma(epoch_images - k + 1)
            + k * log(q)
            + (epoch_images - k) * log1p(-q)
        )
        term = exp(log_term)
        total += term
        if k > epoch_images * q and term < total * 1e-17:
            break
    return min(1.0, total)


def floors_bound(floors: MatchingFloors) -> float:
    """The bound at the weakest table `floors` allow (every floor at once)."""
    return benign_crossing_bound(
        band_bits=floors.min_band_bits,
        threshold=floors.min_threshold,
        epoch_images=floors.max_epoch_images,
        table_slots=floors.max_table_slots,
    )


def check_table_size(n_slots: int, floors: MatchingFloors) -> None:
    """Refuse a table with more slots than the floors allow (before it is even downloaded)."""
    if n_slots > floors.max_table_slots:
        raise VerificationError(
            f"the matching table has {n_slots:,} slots; this client accepts at most "
            f"{floors.max_table_slots:,}",
            code=BELOW_FLOOR,
        )


def check_params(params: MatchingParams, n_slots: int, floors: MatchingFloors) -> None:
    """Refuse a table below any floor (`VerificationError`, code `matching_params_below_floor`),
    naming every floor it breaks."""
    broken = [
        f"{what} {value:,} (floor {floor:,})"
        for what, value, floor, ok in (
            (
                "threshold",
                params.threshold,
                floors.min_threshold,
                params.threshold >= floors.min_threshold,
            ),
            (
                "synthetic rate (ppm)",
                params.synthetic_rate_ppm,
                floors.min_synthetic_rate_ppm,
                params.synthetic_rate_ppm >= floors.min_synthetic_rate_ppm,
            ),
            (
                "band bits",
                params.band_bits,
                floors.min_band_bits,
                params.band_bits >= floors.min_band_bits,
            ),
            (
                "band count",
                params.band_count,
                floors.max_band_count,
                params.band_count <= floors.max_band_count,
            ),
            (
                "epoch images",
                params.epoch_images,
                floors.max_epoch_images,
                params.epoch_images <= floors.max_epoch_images,
            ),
            ("table slots", n_slots, floors.max_table_slots, n_slots <= floors.max_table_slots),
        )
        if not ok
    ]
    if broken:
        raise VerificationError(
            "the matching table is below this client's floors: " + ", ".join(broken),
            code=BELOW_FLOOR,
        )
