"""Reading every entry of the transparency log, proven complete against a verified checkpoint.

Inclusion proofs show that an entry the server chose to show is in the log; they say nothing
of the entries it chose not to show. A reader that must see *every* entry of some kind (the
target's client looking for disclosures about its account, the agency looking for the target's
device keys) fetches the whole range ``[position, checkpoint.size)`` and appends it to the
frontier it kept (`merkle.append_leaves`): the result must be the checkpoint's root, so a
dropped, added, altered or reordered entry is detected (``log_entries_mismatch``).

A reader starts at position 0 with the empty frontier (its first scan reads the whole log) and
keeps its `LogPosition` between scans, so each later scan reads only the new entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from accord.client.api import ServerApi
from accord.errors import InvalidInput, ProtocolError, VerificationError
from accord.primitives.encoding import b64decode
from accord.protocols.translog import merkle
from accord.protocols.translog.note import Checkpoint

PAGE = 1000
MAX_ENTRY_BYTES = 64 * 1024


@dataclass(frozen=True)
class LogPosition:
    """How far a reader has read the log: the size and the frontier hashes (largest first)."""

    size: int = 0
    frontier: tuple[bytes, ...] = ()

    def to_obj(self) -> dict[str, Any]:
        return {"size": self.size, "frontier": [h.hex() for h in self.frontier]}

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> LogPosition:
        return cls(int(obj["size"]), tuple(bytes.fromhex(h) for h in obj["frontier"]))


def read_new_entries(
    api: ServerApi, position: LogPosition, checkpoint: Checkpoint
) -> tuple[list[tuple[int, bytes]], LogPosition]:
    """Every entry from ``position`` up to ``checkpoint`` (a verified one), with its index, and
    the new position. Raises `VerificationError` (``log_entries_mismatch``) unless the entries
    and the frontier give the checkpoint's root."""
    if checkpoint.size < position.size:
        raise VerificationError("the checkpoint is older than what was read", code="log_rollback")
    entries: list[tuple[int, bytes]] = []
    start = position.size
    while start < checkpoint.size:
        end = min(checkpoint.size, start + PAGE)
        page = api.request(
            "GET", "/v1/log/entries", params={"start": start, "end": end}, auth=False
        )
        got = page.get("entries") if isinstance(page, dict) else None
        if not isinstance(got, list) or not got or len(got) > end - start:
            raise ProtocolError("the server returned no entries below its checkpoint size")
        for text in got:
            if not isinstance(text, str):
                raise ProtocolError("a log entry is not base64 text")
            entries.append((start, b64decode(text, max_bytes=MAX_ENTRY_BYTES, what="log entry")))
            start += 1
    try:
        size, frontier, _ = merkle.append_leaves(
            position.size, position.frontier, (merkle.leaf_hash(e) for _, e in entries)
        )
    except InvalidInput:
        raise VerificationError("the stored log position is damaged") from None
    root = merkle.fold_range(frontier) if frontier else merkle.EMPTY_ROOT
    if size != checkpoint.size or root != checkpoint.root_hash:
        raise VerificationError(
            "the log's entries do not hash to its checkpoint", code="log_entries_mismatch"
        )
    return entries, LogPosition(size, tuple(frontier))
