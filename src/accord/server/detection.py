"""Known-content detection on the server: hashing, matching and bank management.

For content the server legitimately sees in plaintext (reported material, opened threshold
vouchers) and for operators managing hash banks. Every route needs the operator token. Hashes of
content never go to logs.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import FastAPI, Query, Request, Response
from pydantic import Field, StringConstraints
from sqlalchemy import Engine
from starlette.requests import ClientDisconnect

from accord.errors import InvalidInput, TooLarge
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
        self.store = SqlBankStore(engine, create_tables=False)
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


def _query(q: HashQuery) -> MatchQuery:
    if q.signal_type == "pdq":
        pdq = PdqHash.from_hex(q.hash)
        # A hash handed in is taken as it is: the quality gate applies where pixels are hashed.
        return MatchQuery(pdq=(NamedHash("original", PdqResult(hash=pdq, quality=100)),))
    if q.signal_type == "md5":
        return MatchQuery(md5=Md5Hash.from_hex(q.hash))
    return MatchQuery(sha256=Sha256Hash.from_hex(q.hash))


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidInput("upload truncated") from None
    return b"".join(chunks)


def register_detection_routes(app: FastAPI, service: DetectionService, operator: Any) -> None:
    """Routes under /v1/hash, /v1/match and /v1/banks (all operator-only)."""

    async def run(fn: Any, *args: Any) -> Any:
        return await to_thread.run_sync(fn, *args)

    @app.post("/v1/hash", dependencies=[operator])
    async def hash_upload(request: Request) -> HashResult:
        """File in (raw body), hashes out."""
        data = await _read_body(request, MAX_HASH_UPLOAD_BYTES)
        with tempfile.NamedTemporaryFile(prefix="accord-hash-") as f:
            f.write(data)
            f.flush()
            hashes = await run(lambda: hash_file(Path(f.name), video=False))
        return _hash_result(hashes)

    @app.post("/v1/match", dependencies=[operator])
    async def match(req: MatchRequest) -> MatchResponse:
        result: MatchResponse = await run(service.match, req)
        return result

    @app.get("/v1/banks", dependencies=[operator])
    async def list_banks() -> list[BankRecord]:
        infos = await run(service.store.list_banks)
        return [_bank_record(i) for i in infos]

    @app.post("/v1/banks", status_code=201, dependencies=[operator])
    async def create_bank(req: CreateBankRequest) -> BankRecord:
        info = await run(lambda: service.store.create_bank(req.name, threshold=req.threshold))
        return _bank_record(info)

    @app.get("/v1/banks/{name}", dependencies=[operator])
    async def get_bank(name: BankName) -> BankRecord:
        return _bank_record(await run(service.store.get_bank, name))

    @app.post("/v1/banks/{name}/import", dependencies=[operator])
    async def import_bank(
        name: BankName,
        request: Request,
        format: Annotated[Literal["csv", "hma", "ncmec"], Query()] = "csv",
    ) -> CountResult:
        data = await _read_body(request, MAX_BANK_IMPORT_BYTES)
        await run(service.store.get_bank, name)
        result = await run(lambda: parse_bank_file(data, format, source=f"{format}:upload"))
        added = await run(service.store.add_entries, name, result.entries)
        if result.deleted_sources:
            await run(service.store.set_enabled_by_source, name, result.deleted_sources, False)
        return CountResult(count=int(added))

    @app.post("/v1/banks/{name}/entries", dependencies=[operator])
    async def add_entries(name: BankName, req: AddEntriesRequest) -> CountResult:
        entries = [
            BankEntry.parse(
                e.signal_type, e.hash, source=e.source, label=e.label, variant=e.variant
            )
            for e in req.entries
        ]
        await run(service.store.get_bank, name)
        return CountResult(count=int(await run(service.store.add_entries, name, entries)))

    @app.get("/v1/banks/{name}/export", dependencies=[operator])
    async def export_bank(
        name: BankName, format: Annotated[Literal["csv", "hma"], Query()] = "csv"
    ) -> Response:
        await run(service.store.get_bank, name)
        entries = await run(lambda: list(service.store.iter_entries(name)))
        lines = export_csv(entries) if format == "csv" else export_hma(entries)
        return Response("".join(lines), media_type="text/csv" if format == "csv" else "text/plain")

    @app.post("/v1/banks/{name}/disable", dependencies=[operator])
    async def disable_entries(name: BankName, req: EntryIds) -> CountResult:
        return CountResult(count=await run(service.store.set_enabled, name, req.entry_ids, False))

    @app.post("/v1/banks/{name}/enable", dependencies=[operator])
    async def enable_entries(name: BankName, req: EntryIds) -> CountResult:
        return CountResult(count=await run(service.store.set_enabled, name, req.entry_ids, True))
