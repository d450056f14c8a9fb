"""Delivery metadata of a metadata-scope target (docs/lawful-access.md §5): during the
warrant's window only, who a target exchanged messages with, when, and how large they were.
Nothing is recorded outside a window, and no delivery history is kept otherwise."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select

from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.protocols.access.warrant import Scope
from accord.server.messaging import AuthedDevice
from accord.storage.db import Database
from accord.storage.schema import access_delivery_metadata, access_warrants, accounts
from accord.wire.messaging import SendAccepted, SendRequest

log = logging.getLogger("accord.server.access")


def _b64_size(text: str) -> int:
    """Decoded length of standard padded base64, without decoding it."""
    return len(text) * 3 // 4 - (2 if text.endswith("==") else 1 if text.endswith("=") else 0)


@dataclass(frozen=True)
class _Target:
    warrant_pk: int
    start_time: int
    end_time: int


class DeliveryMetadata:
    """A send observer (`MessagingService.send_observers`) that records deliveries to and from
    targets of open metadata warrants."""

    def __init__(self, db: Database, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock
        # account -> warrants with metadata in scope that are upcoming or open
        self._targets: dict[str, tuple[_Target, ...]] = {}

    def refresh_targets(self) -> None:
        now = now_s(self.clock)
        with self.db.read() as conn:
            rows = conn.execute(
                select(
                    access_warrants.c.id,
                    access_warrants.c.scope,
                    access_warrants.c.start_time,
                    access_warrants.c.end_time,
                    accounts.c.name,
                )
                .join(accounts, accounts.c.id == access_warrants.c.target_account_id)
                .where(
                    access_warrants.c.commitment_index.is_not(None),
                    access_warrants.c.end_time > now,
                )
            ).all()
        targets: dict[str, tuple[_Target, ...]] = {}
        for r in rows:
            if Scope.METADATA.value in r.scope.split(","):
                target = _Target(int(r.id), int(r.start_time), int(r.end_time))
                targets[r.name] = (*targets.get(r.name, ()), target)
        self._targets = targets

    async def observe_send(
        self, dev: AuthedDevice, req: SendRequest, accepted: SendAccepted
    ) -> None:
        """A send observer: for a target under a metadata warrant, during its window only,
        record counterpart, time and size of each delivery to or from it. Nothing otherwise."""
        targets = self._targets
        if not targets:
            return
        try:
            rows = self._metadata_rows(dev, req, accepted, targets)
            if rows:

                def _tx(conn: Connection) -> None:
                    conn.execute(insert(access_delivery_metadata), rows)

                await self.db.transact_async(_tx)
        except Exception:  # never fail a send that has already been stored
            log.exception("delivery metadata not recorded")

    @staticmethod
    def _metadata_rows(
        dev: AuthedDevice,
        req: SendRequest,
        accepted: SendAccepted,
        targets: dict[str, tuple[_Target, ...]],
    ) -> list[dict[str, Any]]:
        at_ms = accepted.accepted_at
        at_s = at_ms // 1000
        others = sorted({r.account for r in req.recipients} - {dev.account})

        def size_for(account: str | None) -> int:
            if req.megolm is not None:
                return _b64_size(req.megolm)
            sizes = [_b64_size(c.olm.body) for c in req.copies if account in (None, c.account)]
            return max(sizes, default=0)

        rows: list[dict[str, Any]] = []
        for t in targets.get(dev.account, ()):
            if t.start_time <= at_s < t.end_time:
                rows += [
                    {
                        "warrant_pk": t.warrant_pk,
                        "direction": "sent",
                        "counterpart": other,
                        "occurred_at": at_ms,
                        "size": size_for(other),
                    }
                    for other in others
                ]
        for other in others:
            for t in targets.get(other, ()):
                if t.start_time <= at_s < t.end_time:
                    rows.append(
                        {
                            "warrant_pk": t.warrant_pk,
                            "direction": "received",
                            "counterpart": dev.account,
                            "occurred_at": at_ms,
                            "size": size_for(other),
                        }
                    )
        return rows
