"""Key-transparency answers: an account's map search and history at one checkpoint
(docs/protocol/transparency.md §8, K9). Nothing here is trusted until the client verifies it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from accord.wire.common import AccountName, WireModel

MAX_HISTORY_CHANGES = 1000
"""Most changes in one answer; longer histories come in pages at the same checkpoint size."""

HashB64 = Annotated[str, StringConstraints(min_length=44, max_length=44)]
EntryB64 = Annotated[str, StringConstraints(min_length=4, max_length=90_000)]
LogIndexField = Annotated[int, Field(ge=0, le=2**62)]


class ProvenEntry(WireModel):
    """A log entry and its RFC 9162 inclusion proof at the answer's checkpoint size."""

    index: LogIndexField
    entry: EntryB64
    proof: Annotated[list[HashB64], Field(max_length=64)]


class HistoryChange(ProvenEntry):
    version: Annotated[int, Field(ge=1, le=2**31)]


class MapSearch(WireModel):
    """The prefix-tree search proof (the draft's PrefixProof with one result)."""

    result: Literal["inclusion", "non_inclusion_leaf", "non_inclusion_parent"]
    depth: Annotated[int, Field(ge=0, le=256)]
    elements: Annotated[list[HashB64], Field(max_length=256)]
    leaf_key: HashB64 | None = None
    leaf_commitment: HashB64 | None = None


class AccountProof(WireModel):
    """`GET /v1/accounts/{account}/transparency?since=V`: the checkpoint, its map head (the
    last leaf), the search for the account, and its changes after version V."""

    account: AccountName
    checkpoint: Annotated[str, StringConstraints(max_length=65536)]
    map_head: ProvenEntry
    search: MapSearch
    changes: Annotated[list[HistoryChange], Field(max_length=MAX_HISTORY_CHANGES)]
    more: bool = False


class HistoryPage(WireModel):
    """`GET /v1/accounts/{account}/transparency?since=V&size=N`: more changes, proven at the
    size N of a checkpoint given before."""

    account: AccountName
    size: LogIndexField
    changes: Annotated[list[HistoryChange], Field(max_length=MAX_HISTORY_CHANGES)]
    more: bool = False
