"""What a target's devices fetch on their ordinary sync (docs/lawful-access.md §5, flow steps 5
and 9): new approver sets, the account's open warrants as deliveries with every proof the device
checks, and the disclosures published since, all against one signed checkpoint."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update

from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.protocols.access.device import WarrantDelivery
from accord.protocols.access.warrant import SignedWarrant
from accord.protocols.translog.note import parse_checkpoint, parse_unverified_note
from accord.server.access.ledger import KIND_APPROVER_SET, KIND_DISCLOSURE, AccessLedger
from accord.server.messaging import AuthedDevice
from accord.storage.schema import access_log_index, access_warrants
from accord.wire.access import (
    MAX_DELIVERIES_PER_SYNC,
    MAX_DISCLOSURES_PER_SYNC,
    AccessSync,
    ProvenDisclosure,
)


class DeviceSync:
    def __init__(self, ledger: AccessLedger, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.clock = clock

    def sync(
        self, dev: AuthedDevice, *, since: int, sets_after: int, disclosures_from: int
    ) -> AccessSync:
        """Flow step 5 and 9, for one device: new approver sets, this account's open warrants
        as deliveries, and published disclosures, all proven against one checkpoint."""
        now = now_s(self.clock)
        note, size = self.ledger.checkpoint()
        consistency = self.ledger.consistency(since, size)
        sets = [
            self.ledger.proven(i, size)
            for i, version in self.ledger.logged(KIND_APPROVER_SET)
            if i < size and (version or 0) > sets_after
        ]
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_warrants)
                .where(
                    access_warrants.c.target_account_id == dev.account_id,
                    access_warrants.c.commitment_index.is_not(None),
                    access_warrants.c.commitment_index < size,
                    access_warrants.c.start_time <= now,
                    access_warrants.c.end_time > now,
                )
                .order_by(access_warrants.c.id)
                .limit(MAX_DELIVERIES_PER_SYNC)
            ).all()
            disclosed = conn.execute(
                select(access_log_index.c.log_index, access_warrants.c.commitment_index)
                .join(access_warrants, access_warrants.c.commitment == access_log_index.c.ref)
                .where(
                    access_log_index.c.kind == KIND_DISCLOSURE,
                    access_log_index.c.log_index.is_not(None),
                    access_log_index.c.log_index >= disclosures_from,
                    access_log_index.c.log_index < size,
                )
                .order_by(access_log_index.c.log_index)
                .limit(MAX_DISCLOSURES_PER_SYNC + 1)
            ).all()
        deliveries = []
        for row in rows:
            ci, ki = int(row.commitment_index), int(row.agency_key_index)
            first_note = self._first_witnessed(row, note)
            first_proof: tuple[bytes, ...] = ()
            if first_note:
                first_size = parse_checkpoint(parse_unverified_note(first_note).text).size
                first_proof = tuple(self.ledger.log.store.inclusion_proof(ci, first_size))
            delivery = WarrantDelivery(
                signed_warrant=SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")),
                nonce=bytes(row.nonce),
                commitment_entry=self.ledger.entry(ci),
                commitment_index=ci,
                commitment_proof=tuple(self.ledger.log.store.inclusion_proof(ci, size)),
                agency_key_entry=self.ledger.entry(ki),
                agency_key_index=ki,
                agency_key_proof=tuple(self.ledger.log.store.inclusion_proof(ki, size)),
                checkpoint_note=note,
                consistency_proof=tuple(bytes.fromhex(h) for h in consistency),
                commitment_checkpoint_note=first_note,
                commitment_checkpoint_proof=first_proof,
            )
            deliveries.append(delivery.to_obj())
        return AccessSync(
            checkpoint=note,
            consistency_proof=consistency,
            approver_sets=sets,
            deliveries=deliveries,
            disclosures=[
                ProvenDisclosure(
                    disclosure=self.ledger.proven(int(d.log_index), size),
                    commitment=self.ledger.proven(int(d.commitment_index), size),
                )
                for d in disclosed[:MAX_DISCLOSURES_PER_SYNC]
            ],
            more_disclosures=len(disclosed) > MAX_DISCLOSURES_PER_SYNC,
        )

    def _first_witnessed(self, row: Any, current: str) -> str:
        """The earliest checkpoint holding the commitment that carries as many cosignatures as
        the current one (W11): the one kept at submission, unless the witnesses had not all
        answered then; then the current one, kept from now on (later is only stricter)."""
        stored: str = row.commitment_checkpoint or ""
        if stored and _signatures(stored) >= _signatures(current):
            return stored
        self.db.transact(
            lambda conn: conn.execute(
                update(access_warrants)
                .where(access_warrants.c.id == row.id)
                .values(commitment_checkpoint=current)
            )
        )
        return current


def _signatures(note: str) -> int:
    return len(parse_unverified_note(note).signatures)
