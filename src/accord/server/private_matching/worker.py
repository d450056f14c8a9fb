"""The voucher worker (docs/protocol/private-matching.md, steps P1-P9), in a thread off the
request path: per voucher, the scalar multiplications and AES trials outside any transaction,
then in one transaction the voucher id, the share, the threshold test and, past the threshold,
a review event holding the confirmed images (full PDQ hash re-checked against the banks with
each bank's threshold, and a 64 x 64 derivative). A voucher that fails here (a tampered
matching voucher, inconsistent shares) is counted as rejected for its device, invisibly to the
sender. Each crossing is appended to the transparency log as a count and a commitment."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import OperationalError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import (
    AccordError,
)
from accord.primitives.encoding import b64url
from accord.protocols.private_matching.log_entries import (
    ThresholdCrossing,
)
from accord.protocols.private_matching.matcher import ConfirmedMatch
from accord.protocols.private_matching.voucher import (
    OpenedShare,
)
from accord.server.private_matching.intake import voucher_table_digest_unverified
from accord.server.private_matching.recheck import BankRecheck
from accord.server.private_matching.tables import LoadedTable, MatchingTables
from accord.server.secrets import SealedColumn
from accord.server.translog import LogService
from accord.storage.db import Database, inserted_id
from accord.storage.private_matching import SqlShareStore, drop_seen_before, ensure_account_row
from accord.storage.schema import (
    pm_accounts,
    pm_epochs,
    pm_event_images,
    pm_events,
    pm_queue,
)

log = logging.getLogger("accord.server.private_matching")

QUEUE_BATCH = 64
QUEUE_POLL_S = 2.0
LOG_PENDING = -1  # pm_epochs.log_index while a crossing's entry is being appended


def _set_log_index(conn: Connection, *, key: Any, index: int | None) -> None:
    conn.execute(update(pm_epochs).where(key).values(log_index=index))


# Each voucher's processing runs these; built once (SQLAlchemy caches their compiled form).
_CLAIM = (
    select(pm_queue.c.id).where(pm_queue.c.id == bindparam("id")).with_for_update(skip_locked=True)
)
_LATEST_EPOCH = (
    select(pm_accounts.c.latest_epoch)
    .where(pm_accounts.c.matching_account == bindparam("b_matching_account"))
    .with_for_update()
)
_DEQUEUE = delete(pm_queue).where(pm_queue.c.id == bindparam("id"))


def _count(counter: Any) -> Any:
    return (
        update(pm_accounts)
        .where(pm_accounts.c.matching_account == bindparam("b_matching_account"))
        .values({counter.name: counter + 1, "latest_epoch": bindparam("b_latest_epoch")})
    )


_COUNT_VOUCHER = _count(pm_accounts.c.vouchers)
_COUNT_REJECTED = _count(pm_accounts.c.rejected)

#: The recovered voucher keys of crossed epochs, sealed at rest like the tables' secrets.
EPOCH_KEY_SECRETS = SealedColumn(
    table=pm_epochs,
    row_id=(pm_epochs.c.matching_account, pm_epochs.c.epoch),
    secret=pm_epochs.c.voucher_key,
    plain_bytes=32,
)


@dataclass(frozen=True)
class _Prepared:
    row: Any
    account_id: bytes
    loaded: LoadedTable | None  # None: the voucher is rejected
    opened: OpenedShare | None
    epoch: int | None  # the key epoch in the voucher's header (None if it did not parse)


class VoucherWorker:
    """Processes the voucher queue in a thread of its own, woken when vouchers are queued (and
    every QUEUE_POLL_S). `process_pending` runs one pass in the caller's thread."""

    def __init__(
        self,
        db: Database,
        log_service: LogService,
        tables: MatchingTables,
        recheck: BankRecheck,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.log = log_service
        self.tables = tables
        self.recheck = recheck
        self.clock = clock
        self._processing = threading.Lock()  # one pass at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()

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

    def recover(self) -> None:
        """On start: crossings whose log append was interrupted are appended again, and queued
        vouchers are processed."""

        def _tx(conn: Connection) -> int:
            conn.execute(
                update(pm_epochs).where(pm_epochs.c.log_index == LOG_PENDING).values(log_index=None)
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
            except Exception:  # the worker must survive; retried at the next poll
                log.exception("private matching worker failed; retrying")
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
            loaded = self.tables.loaded_by_digest(voucher_table_digest_unverified(data))
            parsed = loaded.matcher.check_voucher(account_id=account_id, voucher=data)
        except AccordError:
            return _Prepared(row, account_id, None, None, None)
        try:
            opened = loaded.matcher.open_voucher(parsed)
        except AccordError:
            return _Prepared(row, account_id, None, None, parsed.epoch)
        return _Prepared(row, account_id, loaded, opened, parsed.epoch)

    def _process_batch(self, rows: Sequence[Any]) -> int:
        """One transaction for a batch of vouchers (one durable commit), each voucher's changes
        in a savepoint of their own."""
        prepared = [self._prepare(row) for row in rows]
        tables = {id(p.loaded): p.loaded for p in prepared if p.loaded}.values()
        with self.recheck.banks_of(tables):
            return self._commit(prepared, now_ms(self.clock))

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
        except Exception:
            if len(prepared) > 1:
                log.warning("private matching: a batch failed; one by one now", exc_info=True)
                return sum(self._commit([p], now) for p in prepared)
            log.exception("private matching: a queued voucher was dropped")
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
        claimed = conn.execute(_CLAIM, {"id": row.id}).first()
        if claimed is None:  # another server process has it
            return 0
        ensure_account_row(conn, row.matching_account)
        latest = conn.execute(
            _LATEST_EPOCH, {"b_matching_account": row.matching_account}
        ).scalar_one()
        conn.execute(_DEQUEUE, {"id": row.id})
        epoch = latest if p.epoch is None else p.epoch
        secrets_key = self.tables.secrets
        store = SqlShareStore(
            conn,
            epoch=epoch,
            now_ms=now,
            seal=lambda key, rid: EPOCH_KEY_SECRETS.seal(secrets_key, key, rid),
            open_=lambda key, rid: EPOCH_KEY_SECRETS.open(secrets_key, key, rid),
        )
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
        conn.execute(
            _COUNT_VOUCHER if outcome is not None else _COUNT_REJECTED,
            {"b_matching_account": row.matching_account, "b_latest_epoch": max(latest, epoch)},
        )
        if outcome is None:
            store.record_voucher_id(p.account_id, voucher_id)
        # Voucher ids are kept for the account's current key epoch only.
        drop_seen_before(conn, row.matching_account, max(latest, epoch))
        if outcome is not None and outcome.confirmed and p.loaded and p.opened is not None:
            self._insert_event(
                conn,
                matching_account=str(row.matching_account),
                device_id=str(row.device_id),
                epoch=p.opened.epoch,
                loaded=p.loaded,
                kind="threshold" if outcome.threshold_crossed else "additional",
                confirmed=outcome.confirmed,
                discarded=outcome.discarded_band_collisions,
                now=now,
            )
        return 1

    def _insert_event(
        self,
        conn: Connection,
        *,
        matching_account: str,
        device_id: str,
        epoch: int,
        loaded: LoadedTable,
        kind: str,
        confirmed: tuple[ConfirmedMatch, ...],
        discarded: int,
        now: int,
    ) -> None:
        account = conn.execute(
            select(pm_accounts.c.account).where(pm_accounts.c.matching_account == matching_account)
        ).scalar_one()
        inserted = inserted_id(
            conn.execute(
                insert(pm_events).values(
                    event_id="e_" + b64url(secrets.token_bytes(16)),
                    kind=kind,
                    status="open",
                    matching_account=matching_account,
                    account=account,
                    device_id=device_id,
                    epoch=epoch,
                    table_version=loaded.version,
                    images=len(confirmed),
                    discarded=discarded,
                    created_at=now,
                )
            )
        )
        event_pk = inserted
        rows = []
        for i, match in enumerate(confirmed):
            hit = self.recheck.best_hit(loaded.banks, match.pdq)
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
                    .values(log_index=LOG_PENDING)
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
