"""Known-content detection on the server: hashing, matching and bank management.

For content the server legitimately sees in plaintext (reported material, opened threshold
vouchers) and for operators managing hash banks (routes/detection.py, all operator-only).
Hashes of content never go to logs.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints
from sqlalchemy import Engine

from accord.protocols.detection.banks import BankEntry, BankInfo
from accord.protocols.detection.hashers import FileHashes, PdqResult, hash_file
from accord.protocols.detection.importers import export_csv, export_hma, parse_bank_file
from accord.protocols.detection.matching import BankIndex, MatchQuery, RawMatch
from accord.protocols.detection.signals import Md5Hash, PdqHash, Sha256Hash
from accord.protocols.detection.variants import NamedHash
from accord.storage.banks import SqlBankStore, load_bank_index
from accord.wire.common import WireModel

MAX_HASH_UPLOAD_BYTES = 100 * 1000 * 1000
MAX_BANK_IMPORT_BYTES = 64 << 20
MAX_MATCH_HASHES = 1000

BankFormat = Literal["csv", "hma", "ncmec"]
ExportFormat = Literal["csv", "hma"]

BankName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]


class HashResult(WireModel):
    pdq: str | None
    quality: int | None
    md5: str
    sha256: str


class HashQuery(WireModel):
    signal_type: Literal["pdq", "md5", "sha256"]
    hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{32,64}$")]


class MatchRequest(WireModel):
    hashes: Annotated[list[HashQuery], Field(min_length=1, max_length=MAX_MATCH_HASHES)]
    banks: Annotated[list[BankName], Field(max_length=64)] = []


class MatchHit(WireModel):
    bank: str
    hash: str | None
    distance: int
    label: str
    signal_type: str
    entry_id: int


class MatchResult(WireModel):
    matches: list[MatchHit]


class MatchResponse(WireModel):
    results: list[MatchResult]


class BankRecord(WireModel):
    name: str
    threshold: int
    version: str
    entries: int
    enabled: int


class CreateBankRequest(WireModel):
    name: BankName
    threshold: Annotated[int, Field(ge=0, le=64)] = 31


class EntryIds(WireModel):
    entry_ids: Annotated[
        list[Annotated[int, Field(ge=1, le=2**62)]], Field(min_length=1, max_length=10000)
    ]


class EntryIn(WireModel):
    signal_type: Literal["pdq", "md5", "sha256", "vpdq"]
    hash: Annotated[str, StringConstraints(min_length=32, max_length=200_000)]
    source: Annotated[str, StringConstraints(max_length=256)] = ""
    label: Annotated[str, StringConstraints(max_length=128)] = ""
    variant: Annotated[str, StringConstraints(max_length=32)] = "original"


class AddEntriesRequest(WireModel):
    entries: Annotated[list[EntryIn], Field(min_length=1, max_length=10000)]


class CountResult(WireModel):
    count: int


def _bank_record(info: BankInfo) -> BankRecord:
    return BankRecord(
        name=info.name,
        threshold=info.threshold,
        version=info.version,
        entries=info.entry_count,
        enabled=info.enabled_count,
    )


def _hash_result(hashes: FileHashes) -> HashResult:
    pdq = hashes.pdq
    return HashResult(
        pdq=pdq.hash.hex() if pdq is not None else None,
        quality=pdq.quality if pdq is not None else None,
        md5=hashes.md5.hex(),
        sha256=hashes.sha256.hex(),
    )


class DetectionService:
    """Banks in the server's database; indexes built once per bank version and kept in memory."""

    def __init__(self, engine: Engine, cache_dir: Path) -> None:
        self.store = SqlBankStore(engine)
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._indexes: dict[str, tuple[str, BankIndex]] = {}

    def bank_index(self, name: str) -> BankIndex:
        info = self.store.get_bank(name)
        with self._lock:
            cached = self._indexes.get(name)
            if cached is not None and cached[0] == info.version:
                return cached[1]
        index = load_bank_index(self.store, name, cache_dir=self.cache_dir)
        with self._lock:
            self._indexes[name] = (info.version, index)
        return index

    def match(self, req: MatchRequest) -> MatchResponse:
        names = list(req.banks) or [b.name for b in self.store.list_banks()]
        indexes = [self.bank_index(n) for n in names]
        results = []
        for q in req.hashes:
            query = _query(q)
            hits: list[MatchHit] = []
            for index in indexes:
                raw: list[RawMatch] = index.match(query)
                entries = self.store.get_entries(index.name, [m.entry_id for m in raw])
                for m in raw:
                    entry = entries.get(m.entry_id)
                    if entry is not None:
                        hits.append(
                            MatchHit(
                                bank=index.name,
                                hash=entry.hash_text,
                                distance=m.distance,
                                label=entry.label,
                                signal_type=m.signal_type,
                                entry_id=m.entry_id,
                            )
                        )
            results.append(MatchResult(matches=hits))
        return MatchResponse(results=results)

    def hash_bytes(self, data: bytes) -> HashResult:
        """A file's hashes (PDQ for an image, MD5 and SHA-256 for anything)."""
        with tempfile.NamedTemporaryFile(prefix="accord-hash-") as f:
            f.write(data)
            f.flush()
            return _hash_result(hash_file(Path(f.name), video=False))

    # --- banks ------------------------------------------------------------------------------

    def list_banks(self) -> list[BankRecord]:
        return [_bank_record(i) for i in self.store.list_banks()]

    def create_bank(self, req: CreateBankRequest) -> BankRecord:
        return _bank_record(self.store.create_bank(req.name, threshold=req.threshold))

    def get_bank(self, name: str) -> BankRecord:
        return _bank_record(self.store.get_bank(name))

    def import_bank(self, name: str, data: bytes, fmt: BankFormat) -> CountResult:
        """Add a hash list file's entries; entries it marks deleted are disabled."""
        self.store.get_bank(name)
        result = parse_bank_file(data, fmt, source=f"{fmt}:upload")
        added = self.store.add_entries(name, result.entries)
        if result.deleted_sources:
            self.store.withdraw_sources(name, result.deleted_sources)
        return CountResult(count=int(added))

    def add_entries(self, name: str, req: AddEntriesRequest) -> CountResult:
        entries = [
            BankEntry.parse(
                e.signal_type, e.hash, source=e.source, label=e.label, variant=e.variant
            )
            for e in req.entries
        ]
        self.store.get_bank(name)
        return CountResult(count=int(self.store.add_entries(name, entries)))

    def export_bank(self, name: str, fmt: ExportFormat) -> tuple[str, str]:
        """The bank as a file: (text, media type)."""
        self.store.get_bank(name)
        entries = list(self.store.iter_entries(name))
        lines = export_csv(entries) if fmt == "csv" else export_hma(entries)
        return "".join(lines), "text/csv" if fmt == "csv" else "text/plain"

    def set_enabled(self, name: str, req: EntryIds, enabled: bool) -> CountResult:
        return CountResult(count=self.store.set_enabled(name, req.entry_ids, enabled))


def _query(q: HashQuery) -> MatchQuery:
    if q.signal_type == "pdq":
        pdq = PdqHash.from_hex(q.hash)
        # A hash handed in is taken as it is: the quality gate applies where pixels are hashed.
        return MatchQuery(pdq=(NamedHash("original", PdqResult(hash=pdq, quality=100)),))
    if q.signal_type == "md5":
        return MatchQuery(md5=Md5Hash.from_hex(q.hash))
    return MatchQuery(sha256=Sha256Hash.from_hex(q.hash))
