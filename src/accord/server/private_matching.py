"""Private threshold matching on the server (docs/protocol/private-matching.md).

- **Tables.** An operator publishes a blinded table built from banks (steps S1-S4): the file
  goes to DATA_DIR/matching-tables/<digest>.table, the blinding scalar alpha to the database
  (never to a file or a log line), and the digest with the bank versions to the transparency log
  before any client is given the table.
- **Sending.** `check_send` runs before a message is stored: it parses each voucher strictly
  (exact size, magic, valid points), checks table version, account binding, the blob it travels
  with and replays, and refuses anything wrong with a 4xx. It never opens a voucher: whether a
  voucher opens must not change what the sender sees, or a modified client could probe the
  bank. It then takes the vouchers out of the request, so recipients never receive them.
  `observe_send` queues them durably once the message has committed.
- **Processing** (steps P1-P7) runs in a worker thread off the request path: per voucher, the
  scalar multiplications and AES trials outside any transaction, then in one transaction the
  voucher id, the share, the threshold test and, past the threshold, a review event holding the
  confirmed images (full PDQ hash re-checked against the banks with each bank's threshold, and
  a 64 x 64 derivative). A voucher that fails here (a tampered matching voucher, inconsistent
  shares) is counted as rejected for its device, invisibly to the sender. Each crossing is
  appended to the transparency log as a count and a commitment.
- **Review.** `list_events`, `event` and `derivative_png` back `GET /v1/review/events...` and
  the console. Routes: routes/matching.py and routes/review.py.

Nothing here logs a voucher, a hash, a key or an account's images.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from anyio import to_thread
from PIL import Image
from pydantic import ValidationError
from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from accord.errors import (
    AccordError,
    Conflict,
    InvalidInput,
    NotFound,
    ProtocolError,
    UnsupportedVersion,
)
from accord.primitives.encoding import b64decode, b64encode, b64url
from accord.primitives.ristretto import Scalar
from accord.protocols.detection.hashers import PdqResult
from accord.protocols.detection.matching import BankIndex, MatchQuery
from accord.protocols.detection.signals import PdqHash
from accord.protocols.detection.variants import NamedHash
from accord.protocols.private_matching.bands import BandSampler
from accord.protocols.private_matching.log_entries import (
    BankVersionRef,
    HashListVersion,
    ThresholdCrossing,
)
from accord.protocols.private_matching.matcher import ConfirmedMatch, ThresholdMatcher
from accord.protocols.private_matching.params import DERIVATIVE_SIDE_PX, MatchingParams
from accord.protocols.private_matching.table import (
    BlindedTable,
    TableDigest,
    TableSecret,
    build_table,
    unique_band_elements,
)
from accord.protocols.private_matching.voucher import (
    HEADER_BYTES,
    VOUCHER_MAGIC,
    OpenedShare,
    voucher_size,
)
from accord.server.detection import DetectionService
from accord.server.messaging import AuthedDevice, MessagingService, now_ms
from accord.server.translog import LogService
from accord.storage.db import Database
from accord.storage.private_matching import SqlShareStore, insert_ignore
from accord.storage.schema import (
    blobs,
    pm_accounts,
    pm_epochs,
    pm_event_images,
    pm_events,
    pm_queue,
    pm_seen_vouchers,
    pm_shares,
    pm_tables,
)
from accord.wire.matching import (
    MAX_VOUCHER_BYTES,
    MAX_VOUCHERS_PER_MESSAGE,
    VOUCHERS_EXTENSION,
    EventImage,
    MatchingParamsModel,
    MatchingStatus,
    PublishTableRequest,
    ReviewEventDetail,
    ReviewEventList,
    ReviewEventSummary,
    TableInfo,
    TableSummary,
    VoucherItem,
    matching_account_id,
)
from accord.wire.messaging import SendAccepted, SendRequest

log = logging.getLogger("accord.server.private_matching")

TABLES_DIR = "matching-tables"
#: A voucher made for the table just replaced is still accepted this long (clients refresh the
#: table they use before each send with images).
TABLE_GRACE_MS = 10 * 60 * 1000
#: Vouchers checked by `check_send` wait here until the message commits.
_STASH_TTL_S = 300.0
_STASH_MAX = 10_000
QUEUE_BATCH = 64
QUEUE_POLL_S = 2.0
_LOG_PENDING = -1  # pm_epochs.log_index while a crossing's entry is being appended


def _params_model(params: MatchingParams) -> MatchingParamsModel:
    return MatchingParamsModel(
        band_count=params.band_count,
        band_bits=params.band_bits,
        threshold=params.threshold,
        synthetic_rate_ppm=params.synthetic_rate_ppm,
        detection_dim=params.detection_dim,
        epoch_images=params.epoch_images,
    )


def parse_voucher_items_unverified(raw: Any) -> list[tuple[str, bytes]]:
    """The `vouchers` extension as (blob id, voucher bytes) pairs; sizes and shapes only."""
    if not isinstance(raw, list):
        raise InvalidInput("vouchers must be a list", code="invalid_voucher")
    if not 1 <= len(raw) <= MAX_VOUCHERS_PER_MESSAGE:
        raise InvalidInput(
            f"a message carries 1..{MAX_VOUCHERS_PER_MESSAGE} vouchers", code="invalid_voucher"
        )
    out = []
    for item in raw:
        try:
            parsed = VoucherItem.model_validate(item)
        except ValidationError:
            raise InvalidInput("malformed voucher entry", code="invalid_voucher") from None
        try:
            data = b64decode(parsed.voucher, max_bytes=MAX_VOUCHER_BYTES, what="voucher")
        except InvalidInput as exc:
            raise InvalidInput(exc.message, code="invalid_voucher") from None
        out.append((parsed.blob_id, data))
    if len({b for b, _ in out}) != len(out):
        raise InvalidInput("two vouchers for one attachment", code="invalid_voucher")
    return out


def voucher_table_digest_unverified(data: bytes) -> bytes:
    """The table digest named in a voucher's header, before anything is checked."""
    if len(data) < HEADER_BYTES or data[:3] != VOUCHER_MAGIC[:3]:
        raise InvalidInput("not a safety voucher", code="invalid_voucher")
    return data[len(VOUCHER_MAGIC) : len(VOUCHER_MAGIC) + 32]


def _set_log_index(conn: Connection, *, key: Any, index: int | None) -> None:
    conn.execute(update(pm_epochs).where(key).values(log_index=index))


def derivative_png(derivative: bytes) -> bytes:
    image = Image.frombytes("L", (DERIVATIVE_SIDE_PX, DERIVATIVE_SIDE_PX), derivative)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class _LoadedTable:
    version: int
    digest: bytes
    banks: tuple[BankVersionRef, ...]
    matcher: ThresholdMatcher


@dataclass(frozen=True)
class _CheckedVoucher:
    blob_id: str
    voucher_id: bytes
    data: bytes


@dataclass(frozen=True)
class _Prepared:
    row: Any
    account_id: bytes
    loaded: _LoadedTable | None  # None: the voucher is rejected
    opened: OpenedShare | None


@dataclass(frozen=True)
class _BankHit:
    bank: str
    entry_id: int
    label: str
    distance: int


class PrivateMatchingService:
    def __init__(
        self,
        db: Database,
        log_service: LogService,
        detection: DetectionService,
        data_dir: Path,
    ) -> None:
        self.db = db
        self.log = log_service
        self.detection = detection
        self.tables_dir = data_dir / TABLES_DIR
        self._tables: dict[bytes, _LoadedTable] = {}
        self._tables_lock = threading.Lock()
        self._stash: dict[tuple[int, str], tuple[float, list[_CheckedVoucher]]] = {}
        self._stash_lock = threading.Lock()
        # Bank indexes for the voucher being processed (one at a time: `_processing`).
        self._indexes: dict[str, BankIndex] = {}
        self._processing = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._recover()

    def attach(self, messaging: MessagingService) -> None:
        messaging.send_checks.append(self.check_send)
        messaging.send_observers.append(self.observe_send)

    # --- tables (S1-S4) -----------------------------------------------------------------------

    def publish_table(self, req: PublishTableRequest) -> TableSummary:
        """Build a table from the banks' enabled PDQ hashes, store it, log its digest, and make
        it the current one (the previous one is accepted for TABLE_GRACE_MS more)."""
        overrides = {k: v for k, v in req.model_dump(exclude={"banks"}).items() if v is not None}
        params = MatchingParams(**overrides)
        if voucher_size(params) > MAX_VOUCHER_BYTES:
            raise InvalidInput(f"these parameters make vouchers larger than {MAX_VOUCHER_BYTES} B")
        store = self.detection.store
        names = list(dict.fromkeys(req.banks)) or [b.name for b in store.list_banks()]
        if not names:
            raise InvalidInput("there is no bank to build a table from")
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
        hashes = np.unique(np.frombuffer(raw, dtype=np.uint8).reshape(-1, 32), axis=0)
        seed = os.urandom(32)
        n_elements = len(unique_band_elements(hashes, BandSampler.create(seed, params)))
        secret = TableSecret.generate()
        table = build_table(hashes, params=params, secret=secret, band_seed=seed)
        data = table.encode()
        digest = table.digest()
        self.tables_dir.mkdir(parents=True, exist_ok=True)
        path = self._table_path(digest.value)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        published = now_ms()

        def _insert(conn: Connection) -> int:
            version = int(conn.execute(select(func.max(pm_tables.c.version))).scalar() or 0) + 1
            conn.execute(
                insert(pm_tables).values(
                    version=version,
                    digest=digest.value,
                    secret=secret.alpha.value,
                    params=params.encode(),
                    banks_json=json.dumps([r.to_obj() for r in refs]),
                    banked_hashes=len(hashes),
                    elements=n_elements,
                    size=len(data),
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
        entry = HashListVersion(
            table_version=version,
            table_digest=digest.hex(),
            banks=tuple(refs),
            published_at=published,
        )
        index = self.log.append([entry.to_bytes()])

        def _activate(conn: Connection) -> None:
            conn.execute(
                update(pm_tables).where(pm_tables.c.version == version).values(log_index=index)
            )
            conn.execute(
                update(pm_tables)
                .where(pm_tables.c.version != version, pm_tables.c.retired_at.is_(None))
                .values(retired_at=now_ms())
            )

        self.db.transact(_activate)
        return self._summary(self._table_row(version=version))

    def _table_path(self, digest: bytes) -> Path:
        return self.tables_dir / f"{digest.hex()}.table"

    def _table_row(self, *, version: int | None = None, digest: bytes | None = None) -> Any:
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

    def _summary(self, row: Any) -> TableSummary:
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
        )

    async def table_summary(self, version: int) -> TableSummary:
        """One published table by version (the console shows an event's threshold from it)."""
        row = await to_thread.run_sync(partial(self._table_row, version=version))
        return self._summary(row)

    def table_info(self) -> TableInfo:
        """The current table with its log entry, a signed checkpoint and an inclusion proof."""
        row = self._table_row()
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

    def table_file(self, digest_hex: str) -> Path:
        try:
            digest = bytes.fromhex(digest_hex)
        except ValueError:
            raise NotFound() from None
        row = self._table_row(digest=digest)
        path = self._table_path(bytes(row.digest))
        if not path.is_file():
            raise NotFound()
        return path

    def _loaded(self, row: Any) -> _LoadedTable:
        digest = bytes(row.digest)
        with self._tables_lock:
            cached = self._tables.get(digest)
        if cached is not None:
            return cached
        data = self._table_path(digest).read_bytes()
        table = BlindedTable.parse(data, expected_digest=TableDigest(digest))
        banks = tuple(
            BankVersionRef(name=b["name"], version=b["version"]) for b in json.loads(row.banks_json)
        )
        loaded = _LoadedTable(
            version=int(row.version),
            digest=digest,
            banks=banks,
            matcher=ThresholdMatcher(
                table=table,
                secret=TableSecret(Scalar(bytes(row.secret))),
                bank_check=lambda pdq: self._best_hit(banks, pdq) is not None,
            ),
        )
        with self._tables_lock:
            self._tables[digest] = loaded
        return loaded

    def _loaded_by_digest(self, digest: bytes) -> _LoadedTable:
        with self._tables_lock:
            cached = self._tables.get(digest)
        return cached if cached is not None else self._loaded(self._table_row(digest=digest))

    def _accepted_tables(self) -> dict[bytes, Any]:
        """Logged tables a new voucher may be made for: the current one, and any replaced less
        than TABLE_GRACE_MS ago."""
        cutoff = now_ms() - TABLE_GRACE_MS
        with self.db.read() as conn:
            rows = conn.execute(
                select(pm_tables)
                .where(pm_tables.c.log_index.is_not(None))
                .where(pm_tables.c.retired_at.is_(None) | (pm_tables.c.retired_at > cutoff))
            ).all()
        return {bytes(r.digest): r for r in rows}

    # --- sending (before and after the message commits) --------------------------------------

    async def check_send(self, dev: AuthedDevice, req: SendRequest) -> None:
        raw = req.extensions.get(VOUCHERS_EXTENSION)
        if raw is None:
            return
        items = parse_voucher_items_unverified(raw)
        checked = await to_thread.run_sync(self._check_vouchers, dev, req.message_id, items)
        # The server keeps the vouchers; the stored message (what recipients get) has none.
        req.extensions.pop(VOUCHERS_EXTENSION, None)
        now = time.monotonic()
        with self._stash_lock:
            for key in [k for k, (t, _) in self._stash.items() if now - t > _STASH_TTL_S]:
                del self._stash[key]
            if len(self._stash) >= _STASH_MAX:
                raise Conflict("too many sends in progress; try again", code="busy")
            self._stash[(dev.device_pk, req.message_id)] = (now, checked)

    def _check_vouchers(
        self, dev: AuthedDevice, message_id: str, items: list[tuple[str, bytes]]
    ) -> list[_CheckedVoucher]:
        account_id = matching_account_id(dev.account, dev.device_id)
        tables = self._accepted_tables()
        checked = []
        for blob_id, data in items:
            row = tables.get(voucher_table_digest_unverified(data))
            if row is None:
                raise ProtocolError(
                    "voucher made for another table version", code="voucher_table_version"
                )
            matcher = self._loaded(row).matcher
            try:
                parsed = matcher.check_voucher(account_id=account_id, voucher=data)
            except ProtocolError as exc:
                raise ProtocolError(exc.message, code="voucher_other_account") from None
            except UnsupportedVersion:
                raise
            except InvalidInput as exc:
                raise InvalidInput(exc.message, code="invalid_voucher") from None
            checked.append(_CheckedVoucher(blob_id, parsed.voucher_id, data))
        ids = [c.voucher_id for c in checked]
        if len(set(ids)) != len(ids):
            raise InvalidInput("one voucher twice in a message", code="invalid_voucher")
        account = account_id.decode()
        with self.db.read() as conn:
            owned = set(
                conn.execute(
                    select(blobs.c.blob_id)
                    .where(blobs.c.blob_id.in_([c.blob_id for c in checked]))
                    .where(blobs.c.uploader_device_pk == dev.device_pk)
                ).scalars()
            )
            earlier = [
                r.message_id
                for table in (pm_queue, pm_seen_vouchers)
                for r in conn.execute(
                    select(table.c.message_id)
                    .where(table.c.matching_account == account)
                    .where(table.c.voucher_id.in_(ids))
                )
            ]
        if len(owned) != len(checked):
            raise InvalidInput(
                "a voucher travels with an attachment this device did not upload",
                code="invalid_voucher",
            )
        if any(m != message_id for m in earlier):
            raise ProtocolError("voucher already received", code="voucher_replayed")
        return checked

    async def observe_send(self, dev: AuthedDevice, req: SendRequest, _ok: SendAccepted) -> None:
        with self._stash_lock:
            entry = self._stash.pop((dev.device_pk, req.message_id), None)
        if entry is None:
            return
        account = matching_account_id(dev.account, dev.device_id).decode()
        queued = now_ms()

        def _tx(conn: Connection) -> None:
            for c in entry[1]:
                insert_ignore(
                    conn,
                    pm_queue,
                    {
                        "matching_account": account,
                        "voucher_id": c.voucher_id,
                        "message_id": req.message_id,
                        "voucher": c.data,
                        "queued_at": queued,
                    },
                )
            insert_ignore(
                conn,
                pm_accounts,
                {
                    "matching_account": account,
                    "account": dev.account,
                    "device_id": dev.device_id,
                    "vouchers": 0,
                    "rejected": 0,
                },
            )

        await self.db.transact_async(_tx)
        self.wake()

    # --- processing (P1-P7), off the request path ----------------------------------------------

    def wake(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._stop.clear()
                self._worker = threading.Thread(
                    target=self._run, name="accord-private-matching", daemon=True
                )
                self._worker.start()
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.join(timeout=10)

    def _recover(self) -> None:
        """On start: crossings whose log append was interrupted are appended again, and queued
        vouchers are processed."""

        def _tx(conn: Connection) -> int:
            conn.execute(
                update(pm_epochs)
                .where(pm_epochs.c.log_index == _LOG_PENDING)
                .values(log_index=None)
            )
            pending = conn.execute(select(func.count()).select_from(pm_queue)).scalar_one()
            crossings = conn.execute(
                select(func.count()).where(pm_epochs.c.log_index.is_(None))
            ).scalar_one()
            return int(pending) + int(crossings)

        if self.db.transact(_tx):
            self.wake()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(QUEUE_POLL_S)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.process_pending()
            except Exception as exc:  # noqa: BLE001 - the worker must survive; retried next poll
                log.error("private matching worker: %s", type(exc).__name__)
                self._stop.wait(QUEUE_POLL_S)

    def process_pending(self) -> int:
        """Process every queued voucher (oldest first) and log new crossings; returns how many
        vouchers were processed here."""
        with self._processing:
            return self._process_pending()

    def _process_pending(self) -> int:
        done = 0
        after = 0
        while True:
            with self.db.read() as conn:
                rows = conn.execute(
                    select(pm_queue)
                    .where(pm_queue.c.id > after)
                    .order_by(pm_queue.c.id)
                    .limit(QUEUE_BATCH)
                ).all()
            if not rows:
                break
            after = rows[-1].id
            done += self._process_batch(rows)
        self._log_crossings()
        return done

    def _prepare(self, row: Any) -> _Prepared:
        """P1-P4 for one queued voucher: the scalar multiplications and AES trials, outside any
        transaction. A voucher that fails here (a tampered matching voucher, a table gone) is
        rejected when applied."""
        account_id = str(row.matching_account).encode()
        data = bytes(row.voucher)
        try:
            loaded = self._loaded_by_digest(voucher_table_digest_unverified(data))
            parsed = loaded.matcher.check_voucher(account_id=account_id, voucher=data)
            opened = loaded.matcher.open_voucher(parsed)
        except AccordError:
            return _Prepared(row, account_id, None, None)
        return _Prepared(row, account_id, loaded, opened)

    def _process_batch(self, rows: Sequence[Any]) -> int:
        """One transaction for a batch of vouchers (one durable commit), each voucher's changes
        in a savepoint of their own."""
        prepared = [self._prepare(row) for row in rows]
        indexes: dict[str, BankIndex] = {}
        for loaded in {id(p.loaded): p.loaded for p in prepared if p.loaded}.values():
            indexes.update(self._bank_indexes(loaded))
        self._indexes = indexes
        try:
            return self._commit(prepared, now_ms())
        finally:
            self._indexes = {}

    def _commit(self, prepared: list[_Prepared], now: int) -> int:
        """Apply a batch in one transaction. If it fails for anything but the database being
        unavailable, apply its vouchers one by one, and drop (as rejected) one that still
        fails, so a single bad voucher cannot stop the queue."""

        def _tx(conn: Connection) -> int:
            return sum(self._apply(conn, p, now) for p in prepared)

        try:
            return int(self.db.transact(_tx))
        except OperationalError:  # the database is unavailable: retried at the next poll
            raise
        except Exception as exc:
            if len(prepared) > 1:
                return sum(self._commit([p], now) for p in prepared)
            log.error("private matching: a queued voucher was dropped (%s)", type(exc).__name__)
            self.db.transact(partial(self._drop, prepared[0]))
            return 0

    @staticmethod
    def _drop(p: _Prepared, conn: Connection) -> None:
        conn.execute(delete(pm_queue).where(pm_queue.c.id == p.row.id))
        conn.execute(
            update(pm_accounts)
            .where(pm_accounts.c.matching_account == p.row.matching_account)
            .values(rejected=pm_accounts.c.rejected + 1)
        )

    def _apply(self, conn: Connection, p: _Prepared, now: int) -> int:
        """P2 (replay), P4-P7 for one voucher, inside the batch's transaction."""
        row = p.row
        claimed = conn.execute(
            select(pm_queue.c.id).where(pm_queue.c.id == row.id).with_for_update(skip_locked=True)
        ).first()
        if claimed is None:  # another server process has it
            return 0
        account, _, device_id = str(row.matching_account).partition("/")
        insert_ignore(
            conn,
            pm_accounts,
            {
                "matching_account": row.matching_account,
                "account": account,
                "device_id": device_id,
                "vouchers": 0,
                "rejected": 0,
            },
        )
        conn.execute(
            select(pm_accounts.c.matching_account)
            .where(pm_accounts.c.matching_account == row.matching_account)
            .with_for_update()
        ).first()
        conn.execute(delete(pm_queue).where(pm_queue.c.id == row.id))
        store = SqlShareStore(conn, message_id=row.message_id, now_ms=now)
        voucher_id = bytes(row.voucher_id)
        outcome = None
        if p.loaded is not None:
            savepoint = conn.begin_nested()
            try:
                outcome = p.loaded.matcher.record_voucher(
                    account_id=p.account_id, voucher_id=voucher_id, opened=p.opened, store=store
                )
            except AccordError:  # a replay, or shares that do not verify
                savepoint.rollback()
            else:
                savepoint.commit()
        counter = pm_accounts.c.vouchers if outcome is not None else pm_accounts.c.rejected
        conn.execute(
            update(pm_accounts)
            .where(pm_accounts.c.matching_account == row.matching_account)
            .values({counter.name: counter + 1})
        )
        if outcome is None:
            store.record_voucher_id(p.account_id, voucher_id)
        elif outcome.confirmed and p.loaded is not None and p.opened is not None:
            self._insert_event(
                conn,
                matching_account=str(row.matching_account),
                epoch=p.opened.epoch,
                loaded=p.loaded,
                kind="threshold" if outcome.threshold_crossed else "additional",
                confirmed=outcome.confirmed,
                discarded=outcome.discarded_band_collisions,
                now=now,
            )
        return 1

    # --- step 7: the re-check against the banks -----------------------------------------------

    def _bank_indexes(self, loaded: _LoadedTable) -> dict[str, BankIndex]:
        indexes = {}
        for ref in loaded.banks:
            try:
                indexes[ref.name] = self.detection.bank_index(ref.name)
            except NotFound:  # a bank deleted since: nothing of it can be confirmed
                continue
        return indexes

    def _best_hit(self, banks: tuple[BankVersionRef, ...], pdq: PdqHash) -> _BankHit | None:
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
        return _BankHit(name, entry_id, entry.label if entry is not None else "", distance)

    def _insert_event(
        self,
        conn: Connection,
        *,
        matching_account: str,
        epoch: int,
        loaded: _LoadedTable,
        kind: str,
        confirmed: tuple[ConfirmedMatch, ...],
        discarded: int,
        now: int,
    ) -> None:
        account = conn.execute(
            select(pm_accounts.c.account, pm_accounts.c.device_id).where(
                pm_accounts.c.matching_account == matching_account
            )
        ).one()
        inserted = conn.execute(
            insert(pm_events).values(
                event_id="e_" + b64url(secrets.token_bytes(16)),
                kind=kind,
                status="open",
                matching_account=matching_account,
                account=account.account,
                device_id=account.device_id,
                epoch=epoch,
                table_version=loaded.version,
                images=len(confirmed),
                discarded=discarded,
                created_at=now,
            )
        ).inserted_primary_key
        assert inserted is not None
        event_pk = inserted[0]
        rows = []
        for i, match in enumerate(confirmed):
            hit = self._best_hit(loaded.banks, match.pdq)
            if hit is None:  # pragma: no cover - confirmed means a hit was found
                continue
            rows.append(
                {
                    "event_pk": event_pk,
                    "idx": i,
                    "voucher_id": match.voucher_id,
                    "pdq": match.pdq.value,
                    "bank": hit.bank,
                    "entry_id": hit.entry_id,
                    "label": hit.label,
                    "distance": hit.distance,
                    "derivative": match.derivative,
                }
            )
        conn.execute(insert(pm_event_images), rows)

    def _log_crossings(self) -> None:
        """Append one `ThresholdCrossing` per crossing not yet in the log."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(pm_epochs.c.matching_account, pm_epochs.c.epoch).where(
                    pm_epochs.c.log_index.is_(None)
                )
            ).all()
        for r in rows:
            key = (pm_epochs.c.matching_account == r.matching_account) & (
                pm_epochs.c.epoch == r.epoch
            )

            def _claim(conn: Connection, key: Any = key) -> Any:
                claimed = conn.execute(
                    update(pm_epochs)
                    .where(key, pm_epochs.c.log_index.is_(None))
                    .values(log_index=_LOG_PENDING)
                ).rowcount
                if not claimed:
                    return None
                return conn.execute(
                    select(pm_epochs.c.crossed_at, pm_epochs.c.crossing_nonce).where(key)
                ).one()

            claimed = self.db.transact(_claim)
            if claimed is None:
                continue
            entry = ThresholdCrossing.at(int(claimed.crossed_at), bytes(claimed.crossing_nonce))
            index: int | None = None
            try:
                index = self.log.append([entry.to_bytes()])
            finally:
                self.db.transact(partial(_set_log_index, key=key, index=index))

    # --- operator status ----------------------------------------------------------------------

    def status(self) -> MatchingStatus:
        with self.db.read() as conn:
            tables = conn.execute(select(pm_tables).order_by(pm_tables.c.version)).all()
            queued = conn.execute(select(func.count()).select_from(pm_queue)).scalar_one()
            counts = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(pm_accounts.c.vouchers), 0),
                    func.coalesce(func.sum(pm_accounts.c.rejected), 0),
                )
            ).one()
            shares = conn.execute(select(func.count()).select_from(pm_shares)).scalar_one()
            crossings = conn.execute(select(func.count()).select_from(pm_epochs)).scalar_one()
            unlogged = conn.execute(
                select(func.count()).where(
                    pm_epochs.c.log_index.is_(None) | (pm_epochs.c.log_index == _LOG_PENDING)
                )
            ).scalar_one()
            events = conn.execute(select(func.count()).select_from(pm_events)).scalar_one()
        return MatchingStatus(
            tables=[self._summary(t) for t in tables],
            queued=int(queued),
            devices=int(counts[0]),
            vouchers_processed=int(counts[1]),
            vouchers_rejected=int(counts[2]),
            opened_shares=int(shares),
            crossings=int(crossings),
            crossings_unlogged=int(unlogged),
            events=int(events),
        )

    # --- review events (the console and /v1/review/events) -----------------------------------

    def _event_query(self) -> Any:
        return select(pm_events, pm_epochs.c.log_index).join(
            pm_epochs,
            (pm_epochs.c.matching_account == pm_events.c.matching_account)
            & (pm_epochs.c.epoch == pm_events.c.epoch),
            isouter=True,
        )

    @staticmethod
    def _event_summary(row: Any) -> ReviewEventSummary:
        log_index = row.log_index if row.log_index is not None and row.log_index >= 0 else None
        return ReviewEventSummary(
            event_id=row.event_id,
            kind=row.kind,
            status=row.status,
            account=row.account,
            device_id=row.device_id,
            epoch=row.epoch,
            table_version=row.table_version,
            images=row.images,
            discarded_band_collisions=row.discarded,
            created_at=row.created_at,
            log_index=log_index,
        )

    async def list_events(
        self,
        *,
        account: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> ReviewEventList:
        """Newest first; `before` is a `created_at` to page from."""

        def _rd(conn: Connection) -> Any:
            query = self._event_query()
            if account is not None:
                query = query.where(pm_events.c.account == account)
            if before is not None:
                query = query.where(pm_events.c.created_at < before)
            return conn.execute(
                query.order_by(pm_events.c.created_at.desc(), pm_events.c.id.desc()).limit(
                    max(1, min(limit, 500))
                )
            ).all()

        rows = await self.db.read_async(_rd)
        return ReviewEventList(events=[self._event_summary(r) for r in rows])

    async def event(self, event_id: str) -> ReviewEventDetail:
        """One event with its images: bank entry, distance, the image's PDQ hash, derivative."""

        def _rd(conn: Connection) -> Any:
            row = conn.execute(self._event_query().where(pm_events.c.event_id == event_id)).first()
            if row is None:
                raise NotFound()
            images = conn.execute(
                select(pm_event_images)
                .where(pm_event_images.c.event_pk == row.id)
                .order_by(pm_event_images.c.idx)
            ).all()
            return row, images

        row, images = await self.db.read_async(_rd)
        return ReviewEventDetail(
            event=self._event_summary(row),
            images=[
                EventImage(
                    index=i.idx,
                    voucher_id=bytes(i.voucher_id).hex(),
                    bank=i.bank,
                    entry_id=i.entry_id,
                    label=i.label,
                    distance=i.distance,
                    pdq=bytes(i.pdq).hex(),
                    derivative_png=base64.b64encode(derivative_png(bytes(i.derivative))).decode(),
                )
                for i in images
            ],
        )

    async def derivative_png(self, event_id: str, index: int) -> bytes:
        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(pm_event_images.c.derivative)
                .join(pm_events, pm_events.c.id == pm_event_images.c.event_pk)
                .where(pm_events.c.event_id == event_id, pm_event_images.c.idx == index)
            ).scalar()

        derivative = await self.db.read_async(_rd)
        if derivative is None:
            raise NotFound()
        return derivative_png(bytes(derivative))
