"""`Services`: every service of one server process, built from a `ServerConfig` and closed
together. Each reads the time from the config's clock. Routes reach them through `server.deps`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from accord.clock import Clock
from accord.server.access import AccessService
from accord.server.blobs import BlobCollector, BlobService, FileBlobStore
from accord.server.config import ServerConfig, ensure_admin_token
from accord.server.detection import DetectionService
from accord.server.franking import FRANKING_SECRETS, FrankingKeyRing
from accord.server.housekeeping import ServerHousekeeping
from accord.server.limits import (
    LoginThrottle,
    SendLimiter,
    SqlCounters,
    registration_limiter,
    report_limiter,
)
from accord.server.messaging import AuthedDevice, MessagingService
from accord.server.notify import LocalNotifier, Notifier, RedisNotifier
from accord.server.observability import Metrics
from accord.server.private_files import secure_data_dir
from accord.server.private_matching import PrivateMatchingService
from accord.server.private_matching.tables import TABLE_SECRETS
from accord.server.private_matching.worker import EPOCH_KEY_SECRETS
from accord.server.reports import ReportService, ReviewVault
from accord.server.review import ReviewService
from accord.server.review_counts import ReviewCountsPublisher
from accord.server.secrets import FileSecretsKey, seal_plain_rows, secrets_key_path
from accord.server.translog import LogService
from accord.storage.db import Database, make_engine
from accord.storage.migrate import upgrade_to_head

logger = logging.getLogger("accord.server")


@dataclass
class Services:
    config: ServerConfig
    clock: Clock
    db: Database
    log: LogService
    messaging: MessagingService
    blobs: BlobService
    notifier: Notifier
    limiter: SendLimiter
    metrics: Metrics
    admin_token: str
    reports: ReportService
    review: ReviewService
    detection: DetectionService
    matching: PrivateMatchingService
    access: AccessService
    housekeeping: ServerHousekeeping

    async def aclose(self) -> None:
        """Stop the background workers, then release Redis and the database."""
        self.housekeeping.worker.close()
        self.matching.close()
        self.access.close()
        await self.limiter.close()
        await self.reports.limiter.close()
        close = getattr(self.notifier, "close", None)
        if close is not None:
            close()
        self.db.dispose()


def build_services(config: ServerConfig, *, notifier: Notifier | None = None) -> Services:
    """Migrate the database to the current schema and build every service on it."""
    secure_data_dir(config.data_dir)
    engine = make_engine(config.database_url)
    upgrade_to_head(engine)
    db = Database(engine)
    secrets = FileSecretsKey(path=secrets_key_path(config.data_dir, config.secrets_key_file))
    # Secrets stored in plain form by older versions are sealed now.
    for column in (FRANKING_SECRETS, TABLE_SECRETS, EPOCH_KEY_SECRETS):
        if sealed := seal_plain_rows(db, secrets, column):
            logger.info("sealed %d secrets stored in plain form in %s", sealed, column.table.name)
    if notifier is None:
        notifier = (
            RedisNotifier(config.redis_url, poll_interval_s=config.socket_poll_s)
            if config.redis_url
            else LocalNotifier()
        )
    clock = config.clock
    limiter = SendLimiter(
        rate_per_s=config.send_rate_per_s,
        burst=config.send_burst,
        redis_url=config.redis_url,
        clock=clock,
    )
    # Counts that must hold across processes and restarts live in the database.
    counters = SqlCounters(db, clock=clock)
    metrics = Metrics()
    log = LogService(
        engine,
        config.data_dir,
        config.log_origin,
        witnesses=config.witnesses,
        clock=clock,
        refresh_s=config.checkpoint_refresh_s,
        secrets=secrets,
    )
    messaging = MessagingService(
        db,
        log,
        notify=notifier.publish,
        franking=FrankingKeyRing(db, secrets=secrets, clock=clock),
        limiter=limiter,
        max_queue=config.max_queue,
        clock=clock,
        registration=registration_limiter(
            rate_per_s=config.account_rate_per_s,
            burst=config.account_burst,
            clock=clock,
            counters=counters,
        ),
        registration_token=config.registration_token(),
    )
    messaging.send_observers.append(_count_accepted(metrics))
    store = FileBlobStore(config.data_dir / "blobs")
    vault = ReviewVault(config.data_dir, secrets=secrets)
    reports = ReportService(
        db,
        messaging.franking,
        store,
        vault,
        max_attachment_bytes=config.max_attachment_bytes,
        clock=clock,
        limiter=report_limiter(clock=clock, redis_url=config.redis_url, counters=counters),
    )
    detection = DetectionService(engine, config.data_dir / "bank-index")
    matching = PrivateMatchingService(
        db, log, detection, config.data_dir, secrets=secrets, clock=clock
    )
    matching.attach(messaging)
    housekeeping = ServerHousekeeping(
        BlobCollector(db, store, clock=clock),
        counters,
        metrics,
        interval_s=config.housekeeping_interval_s,
        review_counts=ReviewCountsPublisher(db, log, clock=clock),
    )
    housekeeping.worker.start()
    return Services(
        config=config,
        clock=clock,
        db=db,
        log=log,
        messaging=messaging,
        blobs=BlobService(db, store, max_attachment_bytes=config.max_attachment_bytes, clock=clock),
        notifier=notifier,
        limiter=limiter,
        metrics=metrics,
        admin_token=ensure_admin_token(config.data_dir),
        reports=reports,
        review=ReviewService(
            db,
            vault,
            messaging,
            clock=clock,
            throttle=LoginThrottle(clock=clock, counters=counters),
        ),
        detection=detection,
        matching=matching,
        access=AccessService(db, log, messaging, config.data_dir, secrets_key=secrets, clock=clock),
        housekeeping=housekeeping,
    )


def _count_accepted(metrics: Metrics) -> Callable[..., Awaitable[None]]:
    async def observe(_dev: AuthedDevice, _req: Any, accepted: Any) -> None:
        metrics.messages.inc()
        metrics.deliveries.inc(accepted.devices)

    return observe
