"""A transparency log witness (C2SP tlog-witness) with Ed25519 cosignatures."""

from __future__ import annotations

from accord.witness.app import create_witness_app
from accord.witness.request import (
    AddCheckpointRequest,
    format_add_checkpoint_request,
    parse_add_checkpoint_request,
)
from accord.witness.service import OldSizeMismatch, Witness, WitnessConfig, logs_from_vkeys
from accord.witness.state import LogState, SqliteWitnessStateStore, WitnessStateStore

__all__ = [
    "AddCheckpointRequest",
    "LogState",
    "OldSizeMismatch",
    "SqliteWitnessStateStore",
    "Witness",
    "WitnessConfig",
    "WitnessStateStore",
    "create_witness_app",
    "format_add_checkpoint_request",
    "logs_from_vkeys",
    "parse_add_checkpoint_request",
]
