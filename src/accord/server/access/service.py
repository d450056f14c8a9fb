"""`AccessService`: the provider's part of accountable lawful access, built from its parts."""

from __future__ import annotations

from pathlib import Path

from accord.clock import SYSTEM_CLOCK, Clock
from accord.server.access.agency import AgencyRecords
from accord.server.access.authorities import Authorities, warrant_max_duration_from_env
from accord.server.access.device_sync import DeviceSync
from accord.server.access.housekeeping import Housekeeping
from accord.server.access.ledger import AccessLedger
from accord.server.access.metadata import DeliveryMetadata
from accord.server.messaging import MessagingService
from accord.server.secrets import SecretsKey
from accord.server.translog import LogService
from accord.storage.db import Database


class AccessService:
    """- `authorities`: approver sets, agency keys and warrants, checked and logged;
    - `device_sync`: what a target's devices fetch;
    - `agency`: records from the target's devices, and what the agency retrieves;
    - `metadata`: delivery metadata of metadata-scope targets (a send observer);
    - `housekeeping`: record counts and disclosures, published when due (a background thread).
    """

    def __init__(
        self,
        db: Database,
        log_service: LogService,
        messaging: MessagingService,
        data_dir: Path,
        *,
        secrets_key: SecretsKey,
        max_duration_s: int | None = None,
        housekeeping: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.ledger = AccessLedger(db, log_service, clock=clock)
        self.metadata = DeliveryMetadata(db, clock=clock)
        self.authorities = Authorities(
            self.ledger,
            self.metadata,
            max_duration_s=(
                warrant_max_duration_from_env() if max_duration_s is None else max_duration_s
            ),
            clock=clock,
        )
        self.device_sync = DeviceSync(self.ledger, clock=clock)
        self.agency = AgencyRecords(self.ledger, data_dir, secrets_key=secrets_key, clock=clock)
        self.housekeeping = Housekeeping(self.ledger, self.metadata, clock=clock)
        messaging.send_observers.append(self.metadata.observe_send)
        if housekeeping:
            self.housekeeping.start()

    def close(self) -> None:
        self.housekeeping.close()
