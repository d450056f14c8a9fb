"""What the parts of a client share: its store, its server, its identity, its trust in the
transparency log and its clock. Lawful access, safety vouchers, device lists, sessions, groups
and attachments each take this, never the whole client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from accord.client.api import ServerApi
from accord.client.identity import DeviceIdentity
from accord.client.log_trust import LogTrust
from accord.client.store import LocalStore
from accord.clock import Clock


@dataclass(frozen=True)
class ClientContext:
    store: LocalStore
    api: ServerApi
    identity: DeviceIdentity
    log_trust: LogTrust
    clock: Clock

    @property
    def home(self) -> Path:
        return self.store.home
