"""The server's transparency log: appends, signed checkpoints, proofs and entries for anyone.

Every device registration is appended here before the device is stored (see
docs/protocol/transparency.md). The log's Ed25519 note key lives in DATA_DIR/log-key (mode 0600),
made on first start; its verifier key is published at /v1/log/info.

The key-transparency map (§8) is kept here too: each batch of appends is checked against the
map's rules (K8) request by request, and the batch ends with a map head (K5) committing to the
prefix tree after it, written in the same transaction as the map's rows. Immutable snapshots of
the tree are kept for the last checkpoints signed, so a search proof always matches the
checkpoint it is served with.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import httpx
from anyio import to_thread
from sqlalchemy import Connection, Engine

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import (
    AccordError,
    Conflict,
    InvalidInput,
    NotFound,
    ServiceError,
    VerificationError,
)
from accord.primitives.encoding import b64encode
from accord.protocols.key_transparency import (
    AccountState,
    AppliedChange,
    KeyDirectory,
    device_change,
    map_head_entry,
    parse_map_head,
    search_key,
)
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
from accord.protocols.translog.prefix_tree import PrefixTree
from accord.protocols.translog.tiles import TilePath, check_tile_available, encode_entry_bundle
from accord.server.secrets import SecretsKey, read_sealed_file
from accord.storage.key_directory import MAX_HISTORY_PER_READ, KeyDirectoryStore
from accord.storage.translog import TransparencyLogStore
from accord.wire.common import WireModel
from accord.wire.transparency import (
    AccountProof,
    HistoryChange,
    HistoryPage,
    MapSearch,
    ProvenEntry,
)
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
MAP_SNAPSHOTS = 64
"""Trees kept for the most recent checkpoint sizes (older sizes: the map is rebuilt)."""


def load_or_create_signer(data_dir: Path, origin: str, secrets: SecretsKey | None = None) -> Signer:
    """The log's note key from DATA_DIR/log-key (made on first start): sealed under the secrets
    key when the server has one (a plain file from an older version is sealed in place), plain
    (mode 0600) for tools that run a log without one."""
    path = data_dir / LOG_KEY_FILE
    if secrets is not None:
        text = read_sealed_file(
            path,
            secrets,
            make=lambda: (generate_signer(origin)[0] + "\n").encode(),
            plain_check=lambda raw: raw.startswith(b"PRIVATE+KEY+"),
        ).decode()
    else:
        if not path.exists():
            skey, _ = generate_signer(origin)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(skey + "\n")
        text = path.read_text()
    signer = parse_skey(text.strip())
    if signer.name != origin:
        raise InvalidInput(f"{path} holds the key of another log origin")
    return signer


def _is_map_head(entry: bytes) -> bool:
    try:
        parse_map_head(entry)
    except AccordError:
        return False
    return True


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
        secrets: SecretsKey | None = None,
    ) -> None:
        self.store = TransparencyLogStore(engine)
        # The largest size known to exist (the log only grows), so a proof at or below it
        # needs no query for the current size; SQLite's reads are short local calls, run on
        # the event loop as `Database.read_async` runs them.
        self._seen_size = 0
        self._reads_inline = engine.dialect.name == "sqlite"
        self.keys = KeyDirectoryStore(engine)
        self.clock = clock
        self.signer = load_or_create_signer(data_dir, origin, secrets)
        self.origin = origin
        self.witnesses = [w.rstrip("/") for w in witnesses]
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
        self._directory = KeyDirectory()
        self._map_size = -1  # the log size the in-memory map was built for
        self._map_lock = threading.Lock()
        self._snapshots: OrderedDict[int, PrefixTree] = OrderedDict()
        self._open_map()

    # --- the key-transparency map (docs/protocol/transparency.md §8) -----------------------

    def _open_map(self) -> None:
        """Rebuild the map from its rows; take in any entries it has not seen (a log written
        before the map existed); make sure the log ends with a map head (K5)."""
        with self._map_lock:
            self._reload_map()
            applied = self.keys.applied_size()
            size = self.store.size()
            if applied < size:
                self._catch_up(applied, size)
            size = self.store.size()
            if size == 0 or not _is_map_head(self.store.entries(size - 1, size)[0]):
                self._append_with_map([])

    def _reload_map(self) -> None:
        self._directory = KeyDirectory(PrefixTree.from_items(self.keys.commitments()))
        self._map_size = self.keys.applied_size()
        self._snapshots.clear()

    def _catch_up(self, start: int, end: int) -> None:
        """K8 over entries the map has not taken in; a change that breaks a rule is skipped
        (and flagged by `accord log audit`), as every replay does."""
        applied: list[AppliedChange] = []
        states: dict[str, AccountState] = {}
        for chunk in range(start, end, MAX_ENTRIES_PER_REQUEST):
            stop = min(end, chunk + MAX_ENTRIES_PER_REQUEST)
            entries = self.store.entries(chunk, stop)
            names = {c.account for c in map(device_change, entries) if c is not None}
            loaded = self.keys.load_states(n for n in names if n not in states)
            states.update(loaded)
            for offset, entry in enumerate(entries):
                _, changes, refused = self._directory.plan(states, [[entry]], chunk + offset)
                if refused:
                    log.warning("log entry %d breaks a key-transparency rule", chunk + offset)
                applied.extend(changes)
        tree = self._directory.updated(applied)
        with self.store.engine.begin() as conn:
            self.keys.write(conn, applied, end)
        self._directory.commit(tree)
        self._map_size = end

    def _append_with_map(self, requests: list[list[bytes]]) -> list[int | VerificationError]:
        """Append the requests that keep the map's rules, then a map head, in one transaction;
        return each request's first index or its refusal."""
        for _ in range(3):
            first = self.store.size()
            if first != self._map_size:  # another writer: the map is stale
                self._reload_map()
                if self.keys.applied_size() != first:
                    self._catch_up(self.keys.applied_size(), first)
            names = {c.account for e in requests for c in map(device_change, e) if c is not None}
            states = self.keys.load_states(names)
            # The request handlers verified every signature before appending (messaging.py).
            accepted, changes, refused = self._directory.plan(
                states, requests, first, check_signatures=False
            )
            tree = self._directory.updated(changes)
            entries = [e for i in accepted for e in requests[i]]
            entries.append(map_head_entry(tree, now_ms(self.clock)))
            end = first + len(entries)
            try:
                self.store.append_batch(
                    entries,
                    expected_first=first,
                    also=functools.partial(self._write_map, changes=changes, end=end),
                )
            except Conflict:
                self._map_size = -1
                continue
            self._directory.commit(tree)
            self._map_size = end
            self._snapshots[end] = tree
            while len(self._snapshots) > MAP_SNAPSHOTS:
                self._snapshots.popitem(last=False)
            answers: list[int | VerificationError] = []
            index = first
            for number, entries_of_request in enumerate(requests):
                if number in refused:
                    answers.append(refused[number])
                else:
                    answers.append(index)
                    index += len(entries_of_request)
            return answers
        raise ServiceError("the log kept changing under the map")

    def _write_map(self, conn: Connection, *, changes: list[AppliedChange], end: int) -> None:
        self.keys.write(conn, changes, end)

    def _tree_at(self, size: int) -> PrefixTree:
        """The map as of the checkpoint of `size` entries."""
        with self._map_lock:
            tree = self._snapshots.get(size)
            if tree is None and size == self._map_size:
                tree = self._directory.tree
            if tree is None:  # the log was written behind this process's back
                self._reload_map()
                if self._map_size != size:
                    raise NotFound("that checkpoint's map is no longer held")
                tree = self._directory.tree
            return tree

    def account_proof(self, account: str, since: int) -> AccountProof:
        """K9, the server's side: the current checkpoint, its map head, the search for
        `account` and its changes after version `since`."""
        note = self.checkpoint()
        size = int(note.split("\n", 2)[1])
        tree = self._tree_at(size)
        head_index = size - 1
        head = self.store.entries(head_index, size)[0]
        proof = tree.search(search_key(account))
        changes, more = self._changes(account, since, size)
        return AccountProof(
            account=account,
            checkpoint=note,
            map_head=ProvenEntry(
                index=head_index,
                entry=b64encode(head),
                proof=[b64encode(h) for h in self.store.inclusion_proof(head_index, size)],
            ),
            search=MapSearch(
                result=proof.result.value,
                depth=proof.depth,
                elements=[b64encode(e) for e in proof.elements],
                leaf_key=b64encode(proof.leaf_key) if proof.leaf_key else None,
                leaf_commitment=b64encode(proof.leaf_commitment) if proof.leaf_commitment else None,
            ),
            changes=changes,
            more=more,
        )

    def account_history(self, account: str, since: int, size: int) -> HistoryPage:
        """More of an account's changes, proven at an earlier answer's size."""
        if not 0 < size <= self.store.size():
            raise InvalidInput("size out of range")
        changes, more = self._changes(account, since, size)
        return HistoryPage(account=account, size=size, changes=changes, more=more)

    def _changes(self, account: str, since: int, size: int) -> tuple[list[HistoryChange], bool]:
        versions = self.keys.history(account, since, size)
        entries = self.store.entries_at([i for _, i in versions])
        changes = [
            HistoryChange(
                version=version,
                index=index,
                entry=b64encode(entries[index]),
                proof=[b64encode(h) for h in self.store.inclusion_proof(index, size)],
            )
            for version, index in versions
        ]
        return changes, len(versions) == MAX_HISTORY_PER_READ

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
            with self._map_lock:
                answers = self._append_with_map([entries for entries, _ in batch])
            self.checkpoint()
        except BaseException as exc:  # handed to every waiting caller
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            if isinstance(answer, VerificationError):
                future.set_exception(answer)
            else:
                future.set_result(answer)

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

    def _exists(self, size: int) -> bool:
        """Whether the log has `size` entries (asks the database only beyond the last size
        seen: sizes never shrink)."""
        if size <= self._seen_size:
            return True
        self._seen_size = max(self._seen_size, self.store.size())
        return size <= self._seen_size

    def tile(self, tile: TilePath) -> bytes:
        """A tlog-tiles tile (its hashes concatenated) or entry bundle, from the stored nodes
        and entries; `NotFound` unless the log already holds all of it (docs/protocol/
        transparency.md, "Reading the log as tiles")."""
        check_tile_available(tile, self.store.size())
        if tile.is_entries:
            return encode_entry_bundle(self.store.entries(tile.first, tile.first + tile.width))
        if tile.merkle_level == 0:  # one range scan; higher levels are sparse in the key space
            return b"".join(self.store.leaf_hashes(tile.first, tile.first + tile.width))
        return b"".join(self.store.subtree_hashes(tile.nodes()))

    def inclusion_hashes(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof of entry `index` in the tree of `size` entries;
        `InvalidInput` unless the index is inside that tree and the log has reached it."""
        if index >= size or not self._exists(size):
            raise InvalidInput("index or size out of range")
        return self.store.inclusion_proof(index, size)

    def consistency_hashes(self, old: int, new: int) -> list[bytes]:
        """The RFC 9162 consistency proof from size `old` to size `new`; `InvalidInput`
        unless old <= new and the log has reached `new`."""
        if old > new or not self._exists(new):
            raise InvalidInput("sizes out of range")
        return self.store.consistency_proof(old, new)

    def inclusion(self, index: int, size: int) -> Proof:
        return Proof(proof=[b64encode(h) for h in self.inclusion_hashes(index, size)])

    def consistency(self, old: int, new: int) -> Proof:
        return Proof(proof=[b64encode(h) for h in self.consistency_hashes(old, new)])

    async def inclusion_hashes_async(self, index: int, size: int) -> list[bytes]:
        """`inclusion_hashes` for the event loop: inline on SQLite (as `Database.read_async`
        runs reads), in a worker thread otherwise."""
        if self._reads_inline:
            return self.inclusion_hashes(index, size)
        proof: list[bytes] = await to_thread.run_sync(self.inclusion_hashes, index, size)
        return proof

    async def consistency_hashes_async(self, old: int, new: int) -> list[bytes]:
        """`consistency_hashes` for the event loop, as `inclusion_hashes_async`."""
        if self._reads_inline:
            return self.consistency_hashes(old, new)
        proof: list[bytes] = await to_thread.run_sync(self.consistency_hashes, old, new)
        return proof

    async def inclusion_async(self, index: int, size: int) -> Proof:
        return Proof(proof=[b64encode(h) for h in await self.inclusion_hashes_async(index, size)])

    async def consistency_async(self, old: int, new: int) -> Proof:
        return Proof(proof=[b64encode(h) for h in await self.consistency_hashes_async(old, new)])
