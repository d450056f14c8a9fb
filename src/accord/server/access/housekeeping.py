"""Lawful-access housekeeping (docs/lawful-access.md §5, flow step 9), once a second in a
background thread of every server process: publish each warrant's record count (periodically
while its window is open, and finally after it ends) and, once its disclosure time has come,
the warrant's opening, so that its target's devices tell their user. Another process
publishing the same entry first is not an error."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from sqlalchemy import Connection, func, select, update

from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.errors import Conflict
from accord.protocols.access.log_entries import RecordCountEntry, WarrantDisclosureEntry
from accord.protocols.access.warrant import SignedWarrant, WarrantCommitment
from accord.server.access.ledger import KIND_DISCLOSURE, KIND_RECORD_COUNT, AccessLedger
from accord.server.access.metadata import DeliveryMetadata
from accord.server.periodic import PeriodicThread
from accord.storage.schema import access_records, access_warrants

log = logging.getLogger("accord.server.access")

HOUSEKEEPING_INTERVAL_S = 1.0
RECORD_COUNT_GRACE_S = 1
"""The final record count is published this long after the window ends (uploads accepted just
before the end have committed by then)."""
RECORD_COUNT_INTERVAL_S = 3600
"""While a window is open, its record count is published at most this often (if it changed)."""


class Housekeeping:
    def __init__(
        self, ledger: AccessLedger, metadata: DeliveryMetadata, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.metadata = metadata
        self.clock = clock
        self._worker = PeriodicThread(
            self.housekeep,
            interval_s=HOUSEKEEPING_INTERVAL_S,
            name="accord-access",
            log=log,
        )

    def start(self) -> None:
        self._worker.start()

    def close(self) -> None:
        self._worker.close()

    def housekeep(self) -> None:
        """Publish what is due: record counts (after each window, and periodically while it is
        open) and, after the disclosure time, the warrant's opening."""
        now = now_s(self.clock)
        self.metadata.refresh_targets()
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_warrants).where(
                    access_warrants.c.commitment_index.is_not(None),
                    (
                        (access_warrants.c.final_count_index.is_(None))
                        & (access_warrants.c.end_time + RECORD_COUNT_GRACE_S <= now)
                    )
                    | (
                        (access_warrants.c.disclosure_index.is_(None))
                        & (access_warrants.c.disclosure_time <= now)
                    )
                    | (
                        (access_warrants.c.start_time <= now)
                        & (access_warrants.c.end_time > now)
                        & (access_warrants.c.counted_at + RECORD_COUNT_INTERVAL_S <= now)
                    ),
                )
            ).all()
        for row in rows:
            if row.final_count_index is None and row.end_time + RECORD_COUNT_GRACE_S <= now:
                self._publish_count(row, now, final=True)
            elif (
                row.start_time <= now < row.end_time
                and row.counted_at + RECORD_COUNT_INTERVAL_S <= now
            ):
                self._publish_count(row, now, final=False)
            if row.disclosure_index is None and row.disclosure_time <= now:
                self._publish_disclosure(row)

    def _publish_count(self, row: Any, now: int, *, final: bool) -> None:
        with self.db.read() as conn:
            count = int(
                conn.execute(
                    select(func.count())
                    .select_from(access_records)
                    .where(access_records.c.warrant_pk == row.id)
                ).scalar_one()
            )
        if not final and count == row.counted_records:
            self.db.transact(
                lambda conn: conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.id == row.id)
                    .values(counted_at=now)
                )
            )
            return
        entry = RecordCountEntry(
            commitment=WarrantCommitment(bytes(row.commitment)), record_count=count, as_of=now
        )
        data = entry.to_bytes()

        def _also(conn: Connection, index: int | None) -> None:
            if index is None:
                return
            values: dict[str, Any] = {"counted_records": count, "counted_at": now}
            if final:
                values["final_count_index"] = index
            conn.execute(
                update(access_warrants).where(access_warrants.c.id == row.id).values(**values)
            )

        try:
            self.ledger.publish(KIND_RECORD_COUNT, hashlib.sha256(data).digest(), data, also=_also)
        except Conflict:
            pass  # another server process published this very count

    def _publish_disclosure(self, row: Any) -> None:
        entry = WarrantDisclosureEntry(
            commitment=WarrantCommitment(bytes(row.commitment)),
            signed_warrant=SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")),
            nonce=bytes(row.nonce),
        )

        def _also(conn: Connection, index: int | None) -> None:
            if index is not None:
                conn.execute(
                    update(access_warrants)
                    .where(access_warrants.c.id == row.id)
                    .values(disclosure_index=index)
                )

        try:
            self.ledger.publish(
                KIND_DISCLOSURE, bytes(row.commitment), entry.to_bytes(), also=_also
            )
        except Conflict:
            pass  # another server process published it
