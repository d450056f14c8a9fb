"""Threshold events for review (docs/console.md): each crossing's event with the bank entries
its images matched, their distances, and the 64 x 64 derivatives the protocol reveals. They back
`GET /v1/review/events...` and the console, which audit every view."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

from PIL import Image
from sqlalchemy import Connection, select

from accord.errors import (
    NotFound,
)
from accord.protocols.private_matching.params import DERIVATIVE_SIDE_PX
from accord.storage.db import Database
from accord.storage.schema import (
    pm_epochs,
    pm_event_images,
    pm_events,
)
from accord.wire.matching import (
    EventImage,
    ReviewEventDetail,
    ReviewEventList,
    ReviewEventSummary,
)


def derivative_png(derivative: bytes) -> bytes:
    image = Image.frombytes("L", (DERIVATIVE_SIDE_PX, DERIVATIVE_SIDE_PX), derivative)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def event_query() -> Any:
    """Events with the log index of their crossing (None until it is appended)."""
    return select(pm_events, pm_epochs.c.log_index).join(
        pm_epochs,
        (pm_epochs.c.matching_account == pm_events.c.matching_account)
        & (pm_epochs.c.epoch == pm_events.c.epoch),
        isouter=True,
    )


def read_event(conn: Connection, event_id: str) -> tuple[Any, Sequence[Any]]:
    """An event's row (`event_query`) and its images' rows, in order; `NotFound` if none."""
    row = conn.execute(event_query().where(pm_events.c.event_id == event_id)).first()
    if row is None:
        raise NotFound("no such event")
    images = conn.execute(
        select(pm_event_images)
        .where(pm_event_images.c.event_pk == row.id)
        .order_by(pm_event_images.c.idx)
    ).all()
    return row, images


def crossing_log_index(row: Any) -> int | None:
    """An event row's crossing log index, None while it is not in the log."""
    return row.log_index if row.log_index is not None and row.log_index >= 0 else None


class MatchingEvents:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _event_query(self) -> Any:
        return event_query()

    @staticmethod
    def _event_summary(row: Any) -> ReviewEventSummary:
        log_index = crossing_log_index(row)
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

    async def summary(self, event_id: str) -> ReviewEventSummary:
        """One event without its images."""

        def _rd(conn: Connection) -> Any:
            return conn.execute(self._event_query().where(pm_events.c.event_id == event_id)).first()

        row = await self.db.read_async(_rd)
        if row is None:
            raise NotFound()
        return self._event_summary(row)

    async def event(self, event_id: str) -> ReviewEventDetail:
        """One event with its images: bank entry, distance, the image's PDQ hash, derivative."""

        row, images = await self.db.read_async(lambda conn: read_event(conn, event_id))
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
