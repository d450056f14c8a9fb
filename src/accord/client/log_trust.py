"""What this device trusts about the transparency log, and the checks that rely on it.

Steps (docs/protocol/transparency.md):

P   at account creation or device linking the deployment manifest is pinned (M1): the log's
    origin and key, the witnesses and quorum come from it, never from the server, and the
    server's /v1/log/info must name the same log (`LogTrust.pin_manifest`); only in insecure
    development mode are the origin and key taken from the server, with no witnesses
    (`LogTrust.pin_insecure_dev`); a later manifest replaces the pinned one only per M2
    (`LogTrust.install_manifest`);
V1  a checkpoint is signed by the pinned key, for the pinned origin;
V2  the manifest's quorum of witnesses cosigned it;
V3  it extends the last checkpoint this device accepted, which it then replaces;
V4  an entry is included in an accepted checkpoint;
V5  the quorum's cosignatures are no older than the manifest's maximum checkpoint age.

The anchors and the last accepted checkpoint are kept in the local store under a tag of the
store key (`anchors_tampered` if they were changed on disk).

Device lists (messaging), lawful-access syncs and the matching table (safety vouchers) are all
checked through one `LogTrust`, so they share one last-seen checkpoint: a fork shown to any of
them is a fork for all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

from accord.client.api import ServerApi
from accord.client.store import LocalStore, LogAnchors
from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.errors import ConfigurationError, VerificationError
from accord.primitives.encoding import b64decode
from accord.protocols.manifest import (
    Manifest,
    verify_manifest,
    verify_manifest_update,
)
from accord.protocols.translog import merkle
from accord.protocols.translog.entries import MAX_ENTRY_BYTES
from accord.protocols.translog.note import Checkpoint, parse_vkey
from accord.protocols.translog.verify import (
    LogTrustPolicy,
    verify_checkpoint_extends,
    verify_checkpoint_fresh,
    verify_checkpoint_note,
    verify_entries_after,
    verify_entry_inclusion,
)

INSECURE_DEV_WARNING = (
    "INSECURE DEVELOPMENT MODE: this home's trust anchors (the log's key) came from the "
    "server, so nothing is protected against the server"
)

#: Most entries `LogTrust.entries_after` reads past one entry (about 1,000 requests).
MAX_ENTRIES_AFTER = 1_000_000


class ProofEncoding(Enum):
    """How an endpoint spells the hashes of a Merkle proof (fixed by its wire format)."""

    BASE64 = "base64"  # device lists, consistency proofs, the matching table
    HEX = "hex"  # lawful-access answers


def decode_proof(hashes: Sequence[str], encoding: ProofEncoding) -> list[bytes]:
    """The hashes of a proof as the server sent them. Raises `InvalidInput` if malformed."""
    if encoding is ProofEncoding.HEX:
        return [bytes.fromhex(h) for h in hashes]  # the wire model checked them
    return [b64decode(h, max_bytes=merkle.HASH_SIZE_BYTES, what="proof") for h in hashes]


def fetch_consistency_proof(
    api: ServerApi, last: Checkpoint | None, new: Checkpoint
) -> list[bytes]:
    """The server's proof (not yet verified) that `new` extends `last`; none is needed from
    nothing, from the empty tree, or to a tree no larger."""
    if last is None or not 0 < last.size < new.size:
        return []
    answer = api.request(
        "GET",
        "/v1/log/proof/consistency",
        params={"old": last.size, "new": new.size},
        auth=False,
    )
    return decode_proof(answer["proof"], ProofEncoding.BASE64)


class LogTrust:
    """The pinned anchors (deployment manifest) and the last checkpoint accepted."""

    def __init__(self, store: LocalStore, api: ServerApi, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._api = api
        self._clock = clock

    def _server_log(self) -> tuple[str, str]:
        info = self._api.request("GET", "/v1/log/info", auth=False)
        return str(info["origin"]), str(info["vkey"])

    def pin_manifest(self, note: str) -> Manifest:
        """P: pin the deployment manifest `note` (M1), after checking the server runs the log
        it names (`manifest_mismatch` otherwise)."""
        manifest = verify_manifest(note)
        if self._server_log() != (manifest.log_origin, manifest.log_vkey):
            raise VerificationError(
                "the server's transparency log is not the one the deployment manifest names",
                code="manifest_mismatch",
            )
        self._store.set_log_anchors(LogAnchors.of_manifest(manifest, note))
        return manifest

    def pin_insecure_dev(self) -> None:
        """P, insecure development mode: take the log's origin and key from the server, with
        no witnesses (quorum 0). Nothing is then protected against the server."""
        origin, vkey = self._server_log()
        anchors = LogAnchors(origin=origin, vkey=vkey)
        _policy(anchors)  # refuse a malformed key now, not later
        self._store.set_log_anchors(anchors)

    def install_manifest(self, note: str) -> Manifest:
        """Replace the pinned manifest by `note`: per M2 (signed by a quorum of the current
        manifest's signers, a larger serial); a home in insecure development mode takes its
        first manifest per M1, for the log it already pinned (`manifest_mismatch`)."""
        current = self._anchors()
        if current.manifest is not None:
            new = verify_manifest_update(current.manifest, note)
        else:
            new = verify_manifest(note)
            if (new.log_origin, new.log_vkey) != (current.origin, current.vkey):
                raise VerificationError(
                    "the manifest names another transparency log than the one this home pinned",
                    code="manifest_mismatch",
                )
        with self._store.transaction():
            if (new.log_origin, new.log_vkey) != (current.origin, current.vkey):
                self._store.forget_log_checkpoint()  # a new log starts a new history
            self._store.set_log_anchors(LogAnchors.of_manifest(new, note))
        return new

    def _anchors(self) -> LogAnchors:
        anchors = self._store.log_anchors()
        if anchors is None:
            raise ConfigurationError(f"no transparency log is pinned in {self._store.home}")
        return anchors

    def manifest(self) -> Manifest | None:
        """The pinned deployment manifest; None in insecure development mode."""
        return self._anchors().manifest

    def insecure_dev(self) -> bool:
        return self.manifest() is None

    def policy(self) -> LogTrustPolicy:
        return _policy(self._anchors())

    def last_checkpoint(self) -> Checkpoint | None:
        return self._store.log_checkpoint()

    def verify_checkpoint(
        self, note: str | None, *, last: Checkpoint | None, consistency_proof: Sequence[bytes]
    ) -> Checkpoint:
        """V1-V3 for `note`, with the consistency proof from `last`. Nothing is stored."""
        checkpoint = self._verify_signed(note)
        verify_checkpoint_extends(last, checkpoint, consistency_proof)
        return checkpoint

    def advance(self, checkpoint: Checkpoint, *, last: Checkpoint | None) -> None:
        """Keep `checkpoint` (verified against `last`) as the last one accepted, if larger."""
        if last is None or checkpoint.size > last.size:
            self._store.set_log_checkpoint(checkpoint)

    def accept_checkpoint(self, note: str | None) -> Checkpoint:
        """V1-V3 for a checkpoint that came without a consistency proof: the proof is asked
        for, and the checkpoint kept. A rollback or fork is an error."""
        checkpoint = self._verify_signed(note)
        last = self.last_checkpoint()
        verify_checkpoint_extends(
            last, checkpoint, fetch_consistency_proof(self._api, last, checkpoint)
        )
        self.advance(checkpoint, last=last)
        return checkpoint

    def _verify_signed(self, note: str | None) -> Checkpoint:
        """V1, V2 and V5."""
        if not note:
            raise VerificationError("the server sent no log checkpoint")
        anchors = self._anchors()
        verified = verify_checkpoint_note(note, _policy(anchors))
        if anchors.manifest is not None:
            verify_checkpoint_fresh(
                verified,
                quorum=anchors.manifest.witness_quorum,
                now_s=now_s(self._clock),
                max_age_s=anchors.manifest.max_checkpoint_age_s,
            )
        return verified.checkpoint

    def entries_after(
        self,
        entry: bytes,
        index: int,
        checkpoint: Checkpoint,
        proof: Sequence[bytes],
        *,
        keep: Callable[[bytes], bool],
    ) -> list[bytes]:
        """V4 for `entry`, then every entry after it up to `checkpoint`, read from the server
        and verified against the same inclusion proof (`verify_entries_after`), so none can be
        left out or altered; returns those `keep` selects."""
        total = checkpoint.size - index - 1
        if total > MAX_ENTRIES_AFTER:
            raise VerificationError("too many log entries to read after this entry")
        hashes: list[bytes] = []
        kept: list[bytes] = []
        while len(hashes) < total:
            start = index + 1 + len(hashes)
            page = self._api.request(
                "GET",
                "/v1/log/entries",
                params={"start": start, "end": checkpoint.size},
                auth=False,
            )
            raw = page.get("entries") if isinstance(page, dict) else None
            if not isinstance(raw, list) or not raw or page.get("start") != start:
                raise VerificationError("the server did not send the log entries asked for")
            for item in raw[: total - len(hashes)]:
                data = b64decode(str(item), max_bytes=MAX_ENTRY_BYTES, what="log entry")
                hashes.append(merkle.leaf_hash(data))
                if keep(data):
                    kept.append(data)
        verify_entries_after(entry, index, checkpoint, proof, hashes)
        return kept

    @staticmethod
    def verify_inclusion(
        entry: bytes, index: int, checkpoint: Checkpoint, proof: Sequence[bytes]
    ) -> None:
        """V4: `entry` is leaf `index` of an accepted checkpoint's tree."""
        verify_entry_inclusion(entry, index, checkpoint, proof)


def _policy(anchors: LogAnchors) -> LogTrustPolicy:
    return LogTrustPolicy(
        origin=anchors.origin,
        log_verifiers=(parse_vkey(anchors.vkey),),
        witness_verifiers=tuple(parse_vkey(w) for w in anchors.witnesses),
        witness_quorum=anchors.quorum,
    )
