"""Small tables, hashes and clients for the private-matching tests."""

from __future__ import annotations

import numpy as np

from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, PdqHash
from accord.protocols.private_matching.matcher import InMemoryShareStore, ThresholdMatcher
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.private_matching.table import BlindedTable, TableSecret, build_table
from accord.protocols.private_matching.voucher import AccountMatchingSecret, VoucherClient

DERIVATIVE = bytes(range(256)) * 16


def random_hash(rng: np.random.Generator) -> PdqHash:
    """A balanced 256-bit hash (PDQ hashes have 128 ones, being thresholded at the median)."""
    bits = np.zeros(256, dtype=np.uint8)
    bits[rng.choice(256, 128, replace=False)] = 1
    return PdqHash(np.packbits(bits).tobytes())


def near_hash(h: PdqHash, distance: int, rng: np.random.Generator) -> PdqHash:
    bits = np.unpackbits(np.frombuffer(h.value, dtype=np.uint8)).copy()
    ones, zeros = np.flatnonzero(bits == 1), np.flatnonzero(bits == 0)
    bits[rng.choice(ones, distance // 2, replace=False)] = 0
    bits[rng.choice(zeros, distance // 2, replace=False)] = 1
    return PdqHash(np.packbits(bits).tobytes())


class World:
    """One bank, its table, a server matcher and clients."""

    def __init__(self, params: MatchingParams, n_bank: int = 20, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.params = params
        self.bank = [random_hash(self.rng) for _ in range(n_bank)]
        self.secret = TableSecret.generate()
        self.table = build_table(self.bank, params=params, secret=self.secret)
        self.digest = self.table.digest()
        self.store = InMemoryShareStore()
        self.matcher = ThresholdMatcher(
            table=self.table, secret=self.secret, store=self.store, bank_check=self.in_bank
        )

    def in_bank(self, pdq: PdqHash) -> bool:
        return min(pdq.distance(b) for b in self.bank) <= PDQ_MATCH_THRESHOLD_BITS

    def client(self, account: bytes, secret: AccountMatchingSecret | None = None) -> VoucherClient:
        client_table = BlindedTable.parse(self.table.encode(), expected_digest=self.digest)
        return VoucherClient(
            table=client_table,
            table_digest=self.digest,
            account_id=account,
            secret=secret or AccountMatchingSecret.generate(),
        )

    def unrelated(self) -> PdqHash:
        return random_hash(self.rng)


SMALL = MatchingParams(
    band_count=4, band_bits=40, threshold=3, synthetic_rate_ppm=0, detection_dim=16
)
