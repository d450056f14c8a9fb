"""The server's transparency log: appends, signed checkpoints, proofs and entries for anyone.

Every device registration is appended here before the device is stored (see
docs/protocol/transparency.md). The log's Ed25519 note key lives in DATA_DIR/log-key (mode 0600),
made on first start; its verifier key is published at /v1/log/info.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated

from anyio import to_thread
from fastapi import FastAPI, Query
from fastapi.responses import PlainTextResponse
from sqlalchemy import Engine

from accord.errors import InvalidInput
from accord.primitives.encoding import b64encode
from accord.protocols.translog.note import (
    Checkpoint,
    Signer,
    generate_signer,
    parse_skey,
    sign_note,
)
from accord.storage.translog import TransparencyLogStore
from accord.wire.common import WireModel

LOG_KEY_FILE = "log-key"
DEFAULT_LOG_ORIGIN = "accord.local/log"
MAX_ENTRIES_PER_REQUEST = 1000


def load_or_create_signer(data_dir: Path, origin: str) -> Signer:
    path = data_dir / LOG_KEY_FILE
    if not path.exists():
        skey, _ = generate_signer(origin)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(skey + "\n")
    signer = parse_skey(path.read_text().strip())
    if signer.name != origin:
        raise InvalidInput(f"{path} holds the key of another log origin")
    return signer


class LogInfo(WireModel):
    origin: str
    vkey: str
    size: int


class EntriesPage(WireModel):
    start: int
    entries: list[str]  # base64 of each entry's bytes


class Proof(WireModel):
    proof: list[str]


class LogService:
    def __init__(self, engine: Engine, data_dir: Path, origin: str = DEFAULT_LOG_ORIGIN) -> None:
        self.store = TransparencyLogStore(engine)
        self.signer = load_or_create_signer(data_dir, origin)
        self.origin = origin
        self._lock = threading.Lock()
        self._signed: tuple[int, bytes, str] | None = None

    def append(self, entries: list[bytes]) -> int:
        """Append and integrate (durably) before returning the first entry's index."""
        return self.store.append_batch(entries)

    def checkpoint(self) -> str:
        """The current tree head as a signed tlog-checkpoint note (signed once per size)."""
        size, root = self.store.tree_head()
        with self._lock:
            if self._signed is not None and self._signed[:2] == (size, root):
                return self._signed[2]
        note = sign_note(Checkpoint(self.origin, size, root).to_text(), [self.signer])
        with self._lock:
            self._signed = (size, root, note)
        return note


def register_log_routes(app: FastAPI, log: LogService) -> None:
    """Public read-only routes: anyone may audit the log."""

    @app.get("/v1/log/info")
    async def log_info() -> LogInfo:
        size = await to_thread.run_sync(log.store.size)
        return LogInfo(origin=log.origin, vkey=log.signer.vkey, size=size)

    @app.get("/v1/log/checkpoint", response_class=PlainTextResponse)
    async def log_checkpoint() -> PlainTextResponse:
        note = await to_thread.run_sync(log.checkpoint)
        return PlainTextResponse(note)

    @app.get("/v1/log/entries")
    async def log_entries(
        start: Annotated[int, Query(ge=0, le=2**62)] = 0,
        end: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> EntriesPage:
        size = await to_thread.run_sync(log.store.size)
        end = min(end or size, size, start + MAX_ENTRIES_PER_REQUEST)
        if start > end:
            raise InvalidInput("start is past the end of the log")
        data = await to_thread.run_sync(log.store.entries, start, end) if end > start else []
        return EntriesPage(start=start, entries=[b64encode(e) for e in data])

    @app.get("/v1/log/proof/inclusion")
    async def inclusion(
        index: Annotated[int, Query(ge=0, le=2**62)],
        size: Annotated[int, Query(ge=1, le=2**62)],
    ) -> Proof:
        current = await to_thread.run_sync(log.store.size)
        if index >= size or size > current:
            raise InvalidInput("index or size out of range")
        proof = await to_thread.run_sync(log.store.inclusion_proof, index, size)
        return Proof(proof=[b64encode(h) for h in proof])

    @app.get("/v1/log/proof/consistency")
    async def consistency(
        old: Annotated[int, Query(ge=0, le=2**62)],
        new: Annotated[int, Query(ge=0, le=2**62)],
    ) -> Proof:
        current = await to_thread.run_sync(log.store.size)
        if old > new or new > current:
            raise InvalidInput("sizes out of range")
        proof = await to_thread.run_sync(log.store.consistency_proof, old, new)
        return Proof(proof=[b64encode(h) for h in proof])
