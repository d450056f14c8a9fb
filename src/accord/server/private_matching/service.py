"""`PrivateMatchingService`: private threshold matching on the server, built from its parts."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from accord.clock import SYSTEM_CLOCK, Clock
from accord.server.detection import DetectionService
from accord.server.messaging import MessagingService
from accord.server.private_matching.events import MatchingEvents
from accord.server.private_matching.intake import VoucherIntake
from accord.server.private_matching.jobs import PublishJobs
from accord.server.private_matching.recheck import BankRecheck
from accord.server.private_matching.tables import (
    TABLES_DIR,
    MatchingTables,
)
from accord.server.private_matching.worker import LOG_PENDING, VoucherWorker
from accord.server.secrets import SecretsKey
from accord.server.translog import LogService
from accord.storage.db import Database
from accord.storage.schema import (
    pm_accounts,
    pm_epochs,
    pm_events,
    pm_queue,
    pm_shares,
    pm_tables,
)
from accord.wire.matching import (
    MatchingStatus,
    PublishJob,
    PublishTableRequest,
    ReviewEventDetail,
    ReviewEventList,
    ReviewEventSummary,
    TableInfo,
    TableSummary,
)


class PrivateMatchingService(VoucherWorker):
    """- `tables`: publishing blinded tables, and the current ones (S1-S5); `jobs`: publishing
      in the background, followed by job id;
    - `intake`: vouchers checked before a message is stored, queued once it is (D1-D4);
    - the worker itself (this class is one): the queue processed in a thread (P1-P9), with
      the banks re-checked (`recheck`, P7);
    - `events`: threshold events for review.
    """

    def __init__(
        self,
        db: Database,
        log_service: LogService,
        detection: DetectionService,
        data_dir: Path,
        *,
        secrets: SecretsKey,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        recheck = BankRecheck(detection)
        tables = MatchingTables(
            db,
            log_service,
            detection,
            data_dir / TABLES_DIR,
            secrets=secrets,
            bank_check=recheck.confirms,
            clock=clock,
        )
        super().__init__(db, log_service, tables, recheck, clock=clock)
        self.detection = detection
        self.tables_dir = tables.root
        self.intake = VoucherIntake(db, self.tables, on_queued=self.wake, clock=clock)
        self.jobs = PublishJobs(self.tables, clock=clock)
        self.events = MatchingEvents(db)
        self.recover()

    def attach(self, messaging: MessagingService) -> None:
        messaging.send_checks.append(self.intake.check_send)
        messaging.send_observers.append(self.intake.observe_send)

    # --- tables -------------------------------------------------------------------------------

    def publish_table(self, req: PublishTableRequest) -> TableSummary:
        """Build and publish in the calling thread (benchmarks, tests of the storage)."""
        return self.tables.publish(req)

    def start_publish(self, req: PublishTableRequest) -> PublishJob:
        """Check the request, then build and publish in the background."""
        return self.jobs.start(req)

    def publish_job(self, job_id: str) -> PublishJob:
        return self.jobs.get(job_id)

    def table_info(self) -> TableInfo:
        return self.tables.info()

    def table_file(self, digest_hex: str) -> Path:
        return self.tables.file(digest_hex)

    def table_delta(self, digest_hex: str, base_hex: str) -> Path:
        return self.tables.delta_file(digest_hex, base_hex)

    async def table_summary(self, version: int) -> TableSummary:
        return await self.tables.summary_of(version)

    # --- review events ------------------------------------------------------------------------

    async def list_events(
        self, *, account: str | None = None, limit: int = 50, before: int | None = None
    ) -> ReviewEventList:
        return await self.events.list_events(account=account, limit=limit, before=before)

    async def event(self, event_id: str) -> ReviewEventDetail:
        return await self.events.event(event_id)

    async def event_summary(self, event_id: str) -> ReviewEventSummary:
        return await self.events.summary(event_id)

    async def derivative_png(self, event_id: str, index: int) -> bytes:
        return await self.events.derivative_png(event_id, index)

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
                    pm_epochs.c.log_index.is_(None) | (pm_epochs.c.log_index == LOG_PENDING)
                )
            ).scalar_one()
            events = conn.execute(select(func.count()).select_from(pm_events)).scalar_one()
        return MatchingStatus(
            tables=[self.tables.summary(t) for t in tables],
            queued=int(queued),
            accounts=int(counts[0]),
            vouchers_processed=int(counts[1]),
            vouchers_rejected=int(counts[2]),
            opened_shares=int(shares),
            crossings=int(crossings),
            crossings_unlogged=int(unlogged),
            events=int(events),
        )
