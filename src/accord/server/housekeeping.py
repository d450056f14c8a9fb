"""The server's own housekeeping, in a background thread of each process: attachment blobs no
one needs any more are removed (`server.blobs.BlobCollector`), rate-limit counts past their
time are dropped (`server.limits.SqlCounters`), and each day's review counts go into the
transparency log once the day is over (`server.review_counts`). Every process may run it; the
work is in transactions that check again, so two processes never remove one blob twice. Time is the
injected clock's, so a test moves it instead of waiting days."""

from __future__ import annotations

import logging

from accord.server.blobs import BlobCollector
from accord.server.limits import SqlCounters
from accord.server.observability import Metrics
from accord.server.periodic import PeriodicThread
from accord.server.review_counts import ReviewCountsPublisher

log = logging.getLogger("accord.server.housekeeping")

HOUSEKEEPING_INTERVAL_S = 5.0


class ServerHousekeeping:
    def __init__(
        self,
        collector: BlobCollector,
        counters: SqlCounters,
        metrics: Metrics,
        *,
        interval_s: float = HOUSEKEEPING_INTERVAL_S,
        review_counts: ReviewCountsPublisher | None = None,
    ) -> None:
        self.collector = collector
        self.review_counts = review_counts
        self.counters = counters
        self.metrics = metrics
        self.worker = PeriodicThread(
            self.housekeep, interval_s=interval_s, name="accord-housekeeping", log=log
        )

    def housekeep(self) -> None:
        collected = self.collector.collect()
        for reason, count in collected.blobs.items():
            self.metrics.blobs_collected.labels(reason=reason).inc(count)
            self.metrics.blob_bytes_collected.labels(reason=reason).inc(collected.bytes[reason])
        if collected.blobs:
            log.info("collected blobs: %s", collected.blobs)
        self.counters.purge_expired()
        if self.review_counts is not None:
            self.review_counts.publish_due()
