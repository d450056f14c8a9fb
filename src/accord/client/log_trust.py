"""What this device trusts about the transparency log, and the checks that rely on it.

Steps (docs/protocol/transparency.md):

P   on first contact the log's origin and key are pinned (trust on first use), with the
    witnesses and quorum the user configured (`LogTrust.pin`);
V1  a checkpoint is signed by the pinned key, for the pinned origin;
V2  the configured quorum of witnesses cosigned it;
V3  it extends the last checkpoint this device accepted, which it then replaces;
V4  an entry is included in an accepted checkpoint.

Device lists (messaging), lawful-access syncs and the matching table (safety vouchers) are all
checked through one `LogTrust`, so they share one last-seen checkpoint: a fork shown to any of
them is a fork for all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum

from accord.client.api import ServerApi
from accord.client.store import LocalStore, LogAnchors
from accord.errors import ConfigurationError, VerificationError
from accord.primitives.encoding import b64decode
from accord.protocols.translog import merkle
from accord.protocols.translog.entries import MAX_ENTRY_BYTES
from accord.protocols.translog.note import Checkpoint, parse_vkey
from accord.protocols.translog.verify import (
    LogTrustPolicy,
    verify_checkpoint_extends,
    verify_checkpoint_note,
    verify_entries_after,
    verify_entry_inclusion,
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
    """The pinned log (origin, key, witnesses, quorum) and the last checkpoint accepted."""

    def __init__(self, store: LocalStore, api: ServerApi) -> None:
        self._store = store
        self._api = api

    def pin(self, *, witnesses: Sequence[str], quorum: int | None) -> None:
        """P: take the log's key and origin from the server (trust on first use), and require
        cosignatures from `quorum` of `witnesses` (default: all of them)."""
        info = self._api.request("GET", "/v1/log/info", auth=False)
        anchors = LogAnchors(
            origin=str(info["origin"]),
            vkey=str(info["vkey"]),
            witnesses=tuple(witnesses),
            quorum=len(witnesses) if quorum is None else quorum,
        )
        _policy(anchors)  # refuse a malformed key, quorum or witness key now, not later
        self._store.set_log_anchors(anchors)

    def policy(self) -> LogTrustPolicy:
        anchors = self._store.log_anchors()
        if anchors is None:
            raise ConfigurationError(f"no transparency log is pinned in {self._store.home}")
        return _policy(anchors)

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
        """V1 and V2."""
        if not note:
            raise VerificationError("the server sent no log checkpoint")
        return verify_checkpoint_note(note, self.policy()).checkpoint

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
