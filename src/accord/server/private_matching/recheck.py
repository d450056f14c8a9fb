"""Step P7, the second and independent check: an opened image's full PDQ hash against the banks
its table was built from, each bank with its own threshold. Only a hit confirms a match, and the
hit (bank entry, label, distance) is what a reviewer sees."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from accord.errors import NotFound
from accord.protocols.detection.hashers import PdqResult
from accord.protocols.detection.matching import BankIndex, MatchQuery
from accord.protocols.detection.signals import PdqHash
from accord.protocols.detection.variants import NamedHash
from accord.protocols.private_matching.log_entries import BankVersionRef
from accord.server.detection import DetectionService
from accord.server.private_matching.tables import LoadedTable


@dataclass(frozen=True)
class BankHit:
    bank: str
    entry_id: int
    label: str
    distance: int


class BankRecheck:
    def __init__(self, detection: DetectionService) -> None:
        self.detection = detection
        # The bank indexes of the batch being processed (the worker runs one at a time).
        self._indexes: dict[str, BankIndex] = {}

    @contextmanager
    def banks_of(self, tables: Iterable[LoadedTable]) -> Iterator[None]:
        """Hold the indexes of these tables' banks while a batch is processed."""
        indexes: dict[str, BankIndex] = {}
        for loaded in tables:
            for ref in loaded.banks:
                try:
                    indexes[ref.name] = self.detection.bank_index(ref.name)
                except NotFound:  # a bank deleted since: nothing of it can be confirmed
                    continue
        self._indexes = indexes
        try:
            yield
        finally:
            self._indexes = {}

    def best_hit(self, banks: tuple[BankVersionRef, ...], pdq: PdqHash) -> BankHit | None:
        """The closest entry of the table's banks within each bank's own threshold."""
        query = MatchQuery(pdq=(NamedHash("original", PdqResult(hash=pdq, quality=100)),))
        best: tuple[int, str, int] | None = None
        for ref in banks:
            index = self._indexes.get(ref.name)
            if index is None:
                continue
            for m in index.match(query):
                name = ref.name
                if m.signal_type == "pdq" and (best is None or m.distance < best[0]):
                    best = (m.distance, name, m.entry_id)
        if best is None:
            return None
        distance, name, entry_id = best
        entry = self.detection.store.get_entries(name, [entry_id]).get(entry_id)
        return BankHit(name, entry_id, entry.label if entry is not None else "", distance)

    def confirms(self, banks: tuple[BankVersionRef, ...], pdq: PdqHash) -> bool:
        return self.best_hit(banks, pdq) is not None
