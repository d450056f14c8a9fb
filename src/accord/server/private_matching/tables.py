"""Blinded tables (docs/protocol/private-matching.md, steps S1-S5): an operator publishes a
table built from the banks; the file goes to DATA_DIR/matching-tables/<digest>.table, the
blinding scalar alpha to the database (never to a file or a log line), and the digest with the
bank versions to the transparency log before any client is given the table.

A table of the same parameters as the current one is built from it when the change allows
(steps U1-U4, `delta.update_table`): the new file is complete as always, and beside it
`<digest>.delta` turns the previous table into it; the delta's digest is in the new version's
log entry. Which element sits in which slot is kept for the next such build in
DATA_DIR/matching-placements/<digest>.placement (mode 0600, never served)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from anyio import to_thread
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import (
    Conflict,
    InvalidInput,
    NotFound,
)
from accord.primitives.encoding import b64encode
from accord.primitives.ristretto import SCALAR_BYTES, Scalar
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.delta import (
    DELTA_HEADER_BYTES,
    read_delta_header,
    update_table,
)
from accord.protocols.private_matching.log_entries import (
    BankVersionRef,
    HashListVersion,
    TableDeltaRef,
)
from accord.protocols.private_matching.matcher import ThresholdMatcher
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.private_matching.table import (
    BlindedTable,
    Progress,
    TableDigest,
    TableSecret,
    build_workers,
    distinct_rows,
    write_table,
)
from accord.protocols.private_matching.voucher import (
    voucher_size,
)
from accord.server.detection import DetectionService
from accord.server.secrets import SealedColumn, SecretsKey
from accord.server.translog import LogService
from accord.storage.db import Database
from accord.storage.schema import (
    pm_tables,
)
from accord.wire.matching import (
    MAX_VOUCHER_BYTES,
    MatchingParamsModel,
    PublishTableRequest,
    TableInfo,
    TableSummary,
)

TABLES_DIR = "matching-tables"
PLACEMENTS_DIR = "matching-placements"
#: A voucher made for the table just replaced is still accepted this long (clients refresh the
#: table they use before each send with images).
TABLE_GRACE_MS = 10 * 60 * 1000

BankCheck = Callable[[tuple[BankVersionRef, ...], PdqHash], bool]
"""Whether a PDQ hash is within a bank's threshold of one of the table's banks (step P7)."""


def _params_model(params: MatchingParams) -> MatchingParamsModel:
    return MatchingParamsModel(
        band_count=params.band_count,
        band_bits=params.band_bits,
        threshold=params.threshold,
        synthetic_rate_ppm=params.synthetic_rate_ppm,
        detection_dim=params.detection_dim,
        epoch_images=params.epoch_images,
    )


@dataclass(frozen=True)
class LoadedTable:
    version: int
    digest: bytes
    banks: tuple[BankVersionRef, ...]
    matcher: ThresholdMatcher


@dataclass(frozen=True)
class _Previous:
    """The current table, as the base of the next version."""

    digest: TableDigest
    secret: TableSecret


TABLE_SECRETS = SealedColumn(
    table=pm_tables,
    row_id=pm_tables.c.version,
    secret=pm_tables.c.secret,
    plain_bytes=SCALAR_BYTES,
)


class MatchingTables:
    """The published tables, their files, and each one loaded (parsed, with its matcher) once."""

    def __init__(
        self,
        db: Database,
        log_service: LogService,
        detection: DetectionService,
        root: Path,
        *,
        secrets: SecretsKey,
        bank_check: BankCheck,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.log = log_service
        self.detection = detection
        self.root = root
        self.clock = clock
        self._bank_check = bank_check
        self._tables: dict[bytes, LoadedTable] = {}
        self._tables_lock = threading.Lock()

    def check_request(self, req: PublishTableRequest) -> tuple[MatchingParams, list[str]]:
        """The parameters and bank names of a publish request, refused at once (4xx) when they
        cannot make a table."""
        overrides = {k: v for k, v in req.model_dump(exclude={"banks"}).items() if v is not None}
        params = MatchingParams(**overrides)
        if voucher_size(params) > MAX_VOUCHER_BYTES:
            raise InvalidInput(f"these parameters make vouchers larger than {MAX_VOUCHER_BYTES} B")
        store = self.detection.store
        names = list(dict.fromkeys(req.banks)) or [b.name for b in store.list_banks()]
        if not names:
            raise InvalidInput("there is no bank to build a table from")
        for name in names:
            store.get_bank(name)
        return params, names

    def publish(
        self,
        req: PublishTableRequest,
        progress: Progress | None = None,
        phase: Callable[[str], None] | None = None,
    ) -> TableSummary:
        """Build a table from the banks' enabled PDQ hashes (every hash an image bank holds for
        an image, its derived hashes included), store it, log its digest, and make it the
        current one (the previous one is accepted for TABLE_GRACE_MS more). `progress` follows
        the blinding, `phase` the steps ("reading", "building", "logging")."""
        params, names = self.check_request(req)
        if phase is not None:
            phase("reading")
        store = self.detection.store
        refs, parts = [], []
        for name in names:
            info = store.get_bank(name)
            for rows in store.iter_hash_rows(name, "pdq"):
                parts.append(bytes.fromhex("".join(h for _i, h, enabled in rows if enabled)))
            if store.get_bank(name).version != info.version:
                raise Conflict("a bank changed while the table was built; publish again")
            refs.append(BankVersionRef(name=name, version=info.version))
        raw = b"".join(parts)
        if not raw:
            raise InvalidInput("the banks hold no enabled PDQ hash")
        hashes = distinct_rows(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32))
        if phase is not None:
            phase("building")
        self.root.mkdir(parents=True, exist_ok=True)
        self.placements.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = f"build-{os.urandom(8).hex()}"
        tmp, tmp_delta = self.root / f"{name}.tmp", self.root / f"{name}.delta.tmp"
        tmp_placement = self.placements / f"{name}.tmp"
        workers = build_workers(len(hashes), params)
        try:
            previous = self._previous(params)
            incremental = (
                update_table(
                    hashes,
                    base_path=self.path(previous.digest.value),
                    base_digest=previous.digest,
                    base_placement=self.placement_path(previous.digest.value),
                    out_path=tmp,
                    delta_path=tmp_delta,
                    placement_path=tmp_placement,
                    params=params,
                    secret=previous.secret,
                    workers=workers,
                    progress=progress,
                )
                if previous is not None
                else None
            )
            if previous is not None and incremental is not None:
                secret, built = previous.secret, incremental.table
            else:
                secret = TableSecret.generate()
                built = write_table(
                    hashes,
                    tmp,
                    params=params,
                    secret=secret,
                    workers=workers,
                    progress=progress,
                    placement_path=tmp_placement,
                )
            tmp.replace(self.path(built.digest.value))
            tmp_placement.replace(self.placement_path(built.digest.value))
            if incremental is not None:
                tmp_delta.replace(self.delta_path(built.digest.value))
        finally:
            for path in (tmp, tmp_delta, tmp_placement):
                path.unlink(missing_ok=True)
        digest, n_elements = built.digest, built.n_elements
        delta = (
            TableDeltaRef(
                base_digest=previous.digest.hex(),
                delta_digest=incremental.delta_digest.hex(),
            )
            if previous is not None and incremental is not None
            else None
        )
        published = now_ms(self.clock)

        def _insert(conn: Connection) -> int:
            version = int(conn.execute(select(func.max(pm_tables.c.version))).scalar() or 0) + 1
            sealed = TABLE_SECRETS.seal(self.secrets, secret.alpha.value, version)
            conn.execute(
                insert(pm_tables).values(
                    version=version,
                    digest=digest.value,
                    secret=sealed,
                    params=params.encode(),
                    banks_json=json.dumps([r.to_obj() for r in refs]),
                    banked_hashes=len(hashes),
                    elements=n_elements,
                    size=built.size,
                    published_at=published,
                    retired_at=None,
                    log_index=None,
                )
            )
            return version

        try:
            version = self.db.transact(_insert)
        except IntegrityError:
            raise Conflict("another table was published at the same time") from None
        if phase is not None:
            phase("logging")
        entry = HashListVersion(
            table_version=version,
            table_digest=digest.hex(),
            banks=tuple(refs),
            published_at=published,
            delta=delta,
        )
        index = self.log.append([entry.to_bytes()])

        def _activate(conn: Connection) -> None:
            conn.execute(
                update(pm_tables).where(pm_tables.c.version == version).values(log_index=index)
            )
            conn.execute(
                update(pm_tables)
                .where(pm_tables.c.version != version, pm_tables.c.retired_at.is_(None))
                .values(retired_at=now_ms(self.clock))
            )

        self.db.transact(_activate)
        for old in self.placements.glob("*.placement"):  # only the current one is built from
            if old != self.placement_path(digest.value):
                old.unlink(missing_ok=True)
        return self.summary(self.row(version=version))

    def _previous(self, params: MatchingParams) -> _Previous | None:
        """U1: the current table, if the new version may be built from it (same parameters, its
        file here); `update_table` then decides whether the change allows it."""
        try:
            row = self.row()
        except NotFound:
            return None
        digest = TableDigest(bytes(row.digest))
        if MatchingParams.decode(bytes(row.params)) != params:
            return None
        if not self.path(digest.value).is_file():
            return None
        alpha = TABLE_SECRETS.open(self.secrets, bytes(row.secret), row.version)
        return _Previous(digest=digest, secret=TableSecret(Scalar(alpha)))

    @property
    def placements(self) -> Path:
        return self.root.parent / PLACEMENTS_DIR

    def path(self, digest: bytes) -> Path:
        return self.root / f"{digest.hex()}.table"

    def delta_path(self, digest: bytes) -> Path:
        return self.root / f"{digest.hex()}.delta"

    def placement_path(self, digest: bytes) -> Path:
        return self.placements / f"{digest.hex()}.placement"

    def _delta_of(self, digest: bytes) -> tuple[bytes, int] | None:
        """The base digest and size of the delta that makes this table, if there is one."""
        try:
            with self.delta_path(digest).open("rb") as f:
                head = read_delta_header(f.read(DELTA_HEADER_BYTES))
                return head.base.value, os.fstat(f.fileno()).st_size
        except (FileNotFoundError, InvalidInput):
            return None

    def delta_file(self, digest_hex: str, base_hex: str) -> Path:
        """The delta from the table `base_hex` to the logged table `digest_hex`."""
        missing = NotFound("no delta to this table from that table", code="table_delta_not_found")
        try:
            digest, base = bytes.fromhex(digest_hex), bytes.fromhex(base_hex)
        except ValueError:
            raise missing from None
        try:
            row = self.row(digest=digest)
        except NotFound:
            raise missing from None
        found = self._delta_of(bytes(row.digest))
        if found is None or found[0] != base:
            raise missing
        return self.delta_path(bytes(row.digest))

    def row(self, *, version: int | None = None, digest: bytes | None = None) -> Any:
        with self.db.read() as conn:
            query = select(pm_tables).where(pm_tables.c.log_index.is_not(None))
            if version is not None:
                query = query.where(pm_tables.c.version == version)
            if digest is not None:
                query = query.where(pm_tables.c.digest == digest)
            if version is None and digest is None:
                query = query.where(pm_tables.c.retired_at.is_(None))
            row = conn.execute(query.order_by(pm_tables.c.version.desc()).limit(1)).first()
        if row is None:
            raise NotFound("no matching table is published")
        return row

    def summary(self, row: Any) -> TableSummary:
        delta = self._delta_of(bytes(row.digest))
        return TableSummary(
            table_version=row.version,
            digest=bytes(row.digest).hex(),
            size=row.size,
            banked_hashes=row.banked_hashes,
            elements=row.elements,
            params=_params_model(MatchingParams.decode(bytes(row.params))),
            banks=json.loads(row.banks_json),
            published_at=row.published_at,
            retired_at=row.retired_at,
            log_index=row.log_index,
            delta_from=delta[0].hex() if delta is not None else None,
            delta_size=delta[1] if delta is not None else None,
        )

    async def summary_of(self, version: int) -> TableSummary:
        """One published table by version (the console shows an event's threshold from it)."""
        row = await to_thread.run_sync(partial(self.row, version=version))
        return self.summary(row)

    def info(self) -> TableInfo:
        """The current table with its log entry, a signed checkpoint and an inclusion proof."""
        row = self.row()
        params = MatchingParams.decode(bytes(row.params))
        (entry,) = self.log.store.entries(row.log_index, row.log_index + 1)
        note = self.log.checkpoint()
        size = int(note.split("\n", 2)[1])
        proof = self.log.store.inclusion_proof(row.log_index, size)
        return TableInfo(
            table_version=row.version,
            digest=bytes(row.digest).hex(),
            size=row.size,
            params=_params_model(params),
            voucher_bytes=voucher_size(params),
            published_at=row.published_at,
            log_index=row.log_index,
            log_entry=b64encode(entry),
            checkpoint=note,
            inclusion_proof=[b64encode(h) for h in proof],
        )

    def file(self, digest_hex: str) -> Path:
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            raise NotFound() from None
        row = self.row(digest=digest)
        path = self.path(bytes(row.digest))
        if not path.is_file():
            raise NotFound()
        return path

    def loaded(self, row: Any) -> LoadedTable:
        digest = bytes(row.digest)
        with self._tables_lock:
            cached = self._tables.get(digest)
        if cached is not None:
            return cached
        table = BlindedTable.open_file(self.path(digest), expected_digest=TableDigest(digest))
        banks = tuple(
            BankVersionRef(name=b["name"], version=b["version"]) for b in json.loads(row.banks_json)
        )
        loaded = LoadedTable(
            version=int(row.version),
            digest=digest,
            banks=banks,
            matcher=ThresholdMatcher(
                table=table,
                secret=TableSecret(
                    Scalar(TABLE_SECRETS.open(self.secrets, bytes(row.secret), row.version))
                ),
                bank_check=lambda pdq: self._bank_check(banks, pdq),
            ),
        )
        with self._tables_lock:
            self._tables[digest] = loaded
        return loaded

    def loaded_by_digest(self, digest: bytes) -> LoadedTable:
        with self._tables_lock:
            cached = self._tables.get(digest)
        return cached if cached is not None else self.loaded(self.row(digest=digest))

    def accepted(self) -> dict[bytes, Any]:
        """Logged tables a new voucher may be made for: the current one, and any replaced less
        than TABLE_GRACE_MS ago."""
        cutoff = now_ms(self.clock) - TABLE_GRACE_MS
        with self.db.read() as conn:
            rows = conn.execute(
                select(pm_tables)
                .where(pm_tables.c.log_index.is_not(None))
                .where(pm_tables.c.retired_at.is_(None) | (pm_tables.c.retired_at > cutoff))
            ).all()
        return {bytes(r.digest): r for r in rows}
