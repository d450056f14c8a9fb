"""The server's transparency log: appends, signed checkpoints, proofs and entries for anyone.

Every device registration is appended here before the device is stored (see
docs/protocol/transparency.md). The log's Ed25519 note key lives in DATA_DIR/log-key (mode 0600),
made on first start; its verifier key is published at /v1/log/info.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import httpx
from sqlalchemy import Engine

from accord.clock import SYSTEM_CLOCK, Clock
from accord.errors import AccordError, InvalidInput, ServiceError
from accord.primitives.encoding import b64encode
from accord.protocols.translog.note import (
    Checkpoint,
    NoteSignature,
    Signer,
    add_signatures,
    generate_signer,
    parse_signature_line,
    parse_skey,
    sign_note,
)
from accord.storage.translog import TransparencyLogStore
from accord.wire.common import WireModel
from accord.witness.request import format_add_checkpoint_request

log = logging.getLogger("accord.server.translog")
WITNESS_TIMEOUT_S = 10.0
# Appends arriving within this window are integrated together (well inside the 1 s promise).
INTEGRATION_WINDOW_S = 0.05
MAX_REQUESTS_PER_BATCH = 1000

DEFAULT_CHECKPOINT_REFRESH_S = 3600
"""How old the witnesses' cosignatures of an unchanged tree may grow before the checkpoint is
sent to them again: well under a manifest's default maximum age of 24 hours (step V5 of
docs/protocol/transparency.md), so a log that does not grow stays acceptable to clients."""

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
    witnesses: int


class EntriesPage(WireModel):
    start: int
    entries: list[str]  # base64 of each entry's bytes


class Proof(WireModel):
    proof: list[str]


class LogService:
    """The log, its key, and the witnesses each new checkpoint is sent to (tlog-witness)."""

    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        origin: str = DEFAULT_LOG_ORIGIN,
        *,
        witnesses: Sequence[str] = (),
        clock: Clock = SYSTEM_CLOCK,
        refresh_s: float = DEFAULT_CHECKPOINT_REFRESH_S,
    ) -> None:
        self.store = TransparencyLogStore(engine)
        self.signer = load_or_create_signer(data_dir, origin)
        self.origin = origin
        self.witnesses = [w.rstrip("/") for w in witnesses]
        self.clock = clock
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._signed: tuple[int, bytes, str] | None = None
        # The log-signed note of the current tree head, each witness's latest cosignatures of
        # it, and when the witnesses were last asked.
        self._log_note = ""
        self._cosignatures: dict[str, list[NoteSignature]] = {}
        self._asked_at = 0.0
        self._witness_sizes: dict[str, int] = {}
        self._pending_lock = threading.Lock()
        self._pending: list[tuple[list[bytes], Future[int]]] = []
        self._wake = threading.Event()
        self._integrator: threading.Thread | None = None
        self.checkpoints_signed = 0

    def append(self, entries: list[bytes]) -> int:
        """Queue entries for the integrator; return their first index once they are in the
        tree (durably) and the checkpoint that contains them has been sent to the witnesses."""
        future: Future[int] = Future()
        with self._pending_lock:
            self._pending.append((entries, future))
            if self._integrator is None or not self._integrator.is_alive():
                self._integrator = threading.Thread(
                    target=self._integrate_forever, name="accord-log-integrator", daemon=True
                )
                self._integrator.start()
            self._wake.set()
        return future.result()

    def _integrate_forever(self) -> None:
        """Everything queued within one window goes into the tree as one batch: one
        transaction, one signed checkpoint, one round to the witnesses."""
        while True:
            self._wake.wait()
            time.sleep(INTEGRATION_WINDOW_S)
            with self._pending_lock:
                self._wake.clear()
                batch, self._pending = self._pending, []
            for start in range(0, len(batch), MAX_REQUESTS_PER_BATCH):
                self._integrate(batch[start : start + MAX_REQUESTS_PER_BATCH])

    def _integrate(self, batch: list[tuple[list[bytes], Future[int]]]) -> None:
        try:
            first = self.store.append_batch([e for entries, _ in batch for e in entries])
            self.checkpoint()
        except BaseException as exc:  # handed to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        for entries, future in batch:
            future.set_result(first)
            first += len(entries)

    def checkpoint(self) -> str:
        """The current tree head as a signed note, with every cosignature the witnesses gave.

        Signed and sent to the witnesses once per tree size, and sent again when their
        cosignatures are `refresh_s` old (by the server's clock) so that clients keep finding
        it fresh (V5) while the log does not grow. A witness that is down or refuses (a fork, a
        rollback) simply adds no new cosignature, and clients that require a quorum of fresh
        witness cosignatures then refuse the checkpoint.
        """
        with self._lock:
            size, root = self.store.tree_head()
            now = self.clock.time()
            if self._signed is not None and self._signed[:2] == (size, root):
                if not self.witnesses or now - self._asked_at < self.refresh_s:
                    return self._signed[2]
            else:
                text = Checkpoint(self.origin, size, root).to_text()
                self._log_note = sign_note(text, [self.signer])
                self._cosignatures = {}
                self.checkpoints_signed += 1
            self._asked_at = now
            for url in self.witnesses:
                try:
                    self._cosignatures[url] = self._cosign(url, self._log_note, size)
                except (AccordError, httpx.HTTPError, ValueError) as exc:
                    log.warning("witness %s gave no cosignature (%s)", url, type(exc).__name__)
            cosignatures = [sig for sigs in self._cosignatures.values() for sig in sigs]
            note = add_signatures(self._log_note, cosignatures) if cosignatures else self._log_note
            self._signed = (size, root, note)
            return note

    def _cosign(self, url: str, note: str, size: int) -> list[NoteSignature]:
        """POST /add-checkpoint, from the size this witness last cosigned (learnt on 409)."""
        old = self._witness_sizes.get(url, 0)
        for _ in range(3):
            proof = self.store.consistency_proof(old, size) if 0 < old < size else []
            body = format_add_checkpoint_request(old, proof, note)
            response = httpx.post(f"{url}/add-checkpoint", content=body, timeout=WITNESS_TIMEOUT_S)
            if response.status_code == 409 and response.text.strip().isdigit():
                old = int(response.text.strip())
                if old > size:
                    raise ServiceError("the witness has seen a larger tree")
                continue
            if response.status_code != 200:
                raise ServiceError(f"witness answered {response.status_code}")
            self._witness_sizes[url] = size
            return [parse_signature_line(line) for line in response.text.splitlines() if line]
        raise ServiceError("witness kept changing its size")

    # --- reading, for anyone (routes/log.py) ----------------------------------------------

    def info(self) -> LogInfo:
        return LogInfo(
            origin=self.origin,
            vkey=self.signer.vkey,
            size=self.store.size(),
            witnesses=len(self.witnesses),
        )

    def entries_page(self, start: int, end: int) -> EntriesPage:
        """Entries from `start` to `end` (0: the current size), at most MAX_ENTRIES_PER_REQUEST."""
        size = self.store.size()
        end = min(end or size, size, start + MAX_ENTRIES_PER_REQUEST)
        if start > end:
            raise InvalidInput("start is past the end of the log")
        data = self.store.entries(start, end) if end > start else []
        return EntriesPage(start=start, entries=[b64encode(e) for e in data])

    def inclusion(self, index: int, size: int) -> Proof:
        if index >= size or size > self.store.size():
            raise InvalidInput("index or size out of range")
        return Proof(proof=[b64encode(h) for h in self.store.inclusion_proof(index, size)])

    def consistency(self, old: int, new: int) -> Proof:
        if old > new or new > self.store.size():
            raise InvalidInput("sizes out of range")
        return Proof(proof=[b64encode(h) for h in self.store.consistency_proof(old, new)])
