"""Matching files and hashes against banks.

`BankIndex` holds one bank's indexes (PDQ by multi-index hashing, MD5 and SHA-256 by equality,
vPDQ frames in a PDQ index); `MatchQuery` holds what was computed for one file (its PDQ query
hashes, with the dihedral and trimmed variants when those measures are on, its MD5, SHA-256 and
vPDQ). Matches carry entry ids; the caller looks up labels and hashes in its bank store.

Two stages where a bank holds images: entries with local features (`features.py`) are
candidates up to VERIFY_CANDIDATE_THRESHOLD_BITS, and a candidate becomes a match only if the
query image shows the banked image geometrically; a query with too few keypoints to verify (a
flat or tiny image), or a query of hashes alone, falls back to the bank's own threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from accord.errors import InvalidInput
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.features import LocalFeatures, QueryFeatures
from accord.protocols.detection.hashers import FileHashes, PdqResult
from accord.protocols.detection.index import ExactHashIndex, MihPdqIndex, pdq_codes
from accord.protocols.detection.signals import (
    PDQ_MATCH_THRESHOLD_BITS,
    VPDQ_QUERY_MATCH_THRESHOLD_PERCENT,
    Md5Hash,
    PdqHash,
    Sha256Hash,
    VpdqHash,
)
from accord.protocols.detection.variants import (
    MatchMeasures,
    NamedHash,
    query_hashes,
    reduced_for_query,
)

#: First-stage distance for entries that the verifying stage checks (chosen by measurement:
#: docs/detection.md, "Verifying stage"); the closest unrelated pair measured is 80 bits apart.
VERIFY_CANDIDATE_THRESHOLD_BITS = 48


@dataclass(frozen=True, slots=True)
class MatchQuery:
    """The hashes of one file to look up (and its image's features, for the verifying stage)."""

    pdq: tuple[NamedHash, ...] = ()
    md5: Md5Hash | None = None
    sha256: Sha256Hash | None = None
    vpdq: VpdqHash | None = None
    features: QueryFeatures | None = None

    @classmethod
    def from_file_hashes(
        cls, hashes: FileHashes, measures: MatchMeasures, *, verify: bool = True
    ) -> MatchQuery:
        pdq: tuple[NamedHash, ...] = ()
        features = None
        if hashes.image is not None:
            pdq = tuple(query_hashes(hashes.image.pixels, measures))
            if verify:
                features = QueryFeatures(reduced_for_query(hashes.image.pixels))
        return cls(
            pdq=pdq, md5=hashes.md5, sha256=hashes.sha256, vpdq=hashes.vpdq, features=features
        )

    @classmethod
    def from_hashes(cls, hashes: Iterable[PdqHash | Md5Hash | Sha256Hash | VpdqHash]) -> MatchQuery:
        """A query from hashes alone (e.g. an API request): no variants can be derived."""
        pdq: list[NamedHash] = []
        md5 = sha = None
        vpdq = None
        for h in hashes:
            if isinstance(h, PdqHash):
                pdq.append(NamedHash("original", PdqResult(h, 100)))
            elif isinstance(h, Md5Hash):
                md5 = h
            elif isinstance(h, Sha256Hash):
                sha = h
            else:
                vpdq = h
        return cls(pdq=tuple(pdq), md5=md5, sha256=sha, vpdq=vpdq)


@dataclass(frozen=True, slots=True)
class RawMatch:
    """A hit in one bank: which entry, how far, and which query hash found it."""

    entry_id: int
    signal_type: str
    distance: int
    via: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BankMatch:
    """A hit as a bank store reports it: the entry, how far, which query hash, and its label.

    `hash` is the entry's hash as text, or None for vPDQ entries (too long to repeat).
    """

    bank: str
    entry_id: int
    signal_type: str
    distance: int
    via: str
    label: str
    hash: str | None


@dataclass(slots=True)
class _VpdqFrames:
    index: MihPdqIndex
    frame_entry: list[int] = field(default_factory=list)
    frames_per_entry: dict[int, int] = field(default_factory=dict)


class BankIndex:
    """In-memory indexes of one bank; entries can be added and disabled without a rebuild."""

    def __init__(
        self, name: str, *, threshold: int = PDQ_MATCH_THRESHOLD_BITS, holds_images: bool = False
    ) -> None:
        if not 0 <= threshold <= 64:
            raise InvalidInput("a PDQ threshold is between 0 and 64")
        self.name = name
        self.threshold = threshold
        #: Local features of PDQ entries whose bank holds the image (several entries of one
        #: image share one object).
        self.features: dict[int, LocalFeatures] = {}
        # Built for the verifying stage's wider reach only where the bank holds images.
        reach = VERIFY_CANDIDATE_THRESHOLD_BITS if holds_images else 1
        self.pdq = MihPdqIndex(max_distance=max(threshold, reach))
        self.md5 = ExactHashIndex("md5")
        self.sha256 = ExactHashIndex("sha256")
        self._vpdq = _VpdqFrames(MihPdqIndex(max_distance=max(threshold, 1)))

    def __len__(self) -> int:
        return len(self.pdq) + len(self.md5) + len(self.sha256) + len(self._vpdq.frames_per_entry)

    def add_entries(self, entries: Iterable[BankEntry]) -> None:
        """Index entries (they must carry ids); disabled ones are indexed but masked."""
        pdq_h: list[PdqHash] = []
        pdq_i: list[int] = []
        disabled: list[int] = []
        for e in entries:
            if e.entry_id is None:
                raise InvalidInput("bank entries need ids to be indexed")
            if not e.enabled:
                disabled.append(e.entry_id)
            if isinstance(e.hash, PdqHash):
                pdq_h.append(e.hash)
                pdq_i.append(e.entry_id)
                if len(pdq_h) >= 100_000:
                    self.pdq.add(pdq_h, pdq_i)
                    pdq_h, pdq_i = [], []
            elif isinstance(e.hash, Md5Hash):
                self.md5.add([e.hash], [e.entry_id])
            elif isinstance(e.hash, Sha256Hash):
                self.sha256.add([e.hash], [e.entry_id])
            else:
                self._add_vpdq(e.hash, e.entry_id)
        if pdq_h:
            self.pdq.add(pdq_h, pdq_i)
        if disabled:
            self.set_enabled(disabled, False)

    def add_features(self, entry_ids: Iterable[int], features: LocalFeatures) -> None:
        """Attach one banked image's features to its PDQ entries: they are verified from now."""
        for entry_id in entry_ids:
            self.features[entry_id] = features

    def add_pdq_codes(self, codes: np.ndarray, ids: np.ndarray) -> None:
        """Bulk path for large banks: (n, 32) uint8 codes with their entry ids."""
        self.pdq.add_codes(codes, ids)

    def _add_vpdq(self, value: VpdqHash, entry_id: int) -> None:
        frames = value.good_frames()
        if not frames:
            return
        start = len(self._vpdq.frame_entry)
        self._vpdq.index.add(frames, list(range(start, start + len(frames))))
        self._vpdq.frame_entry.extend([entry_id] * len(frames))
        self._vpdq.frames_per_entry[entry_id] = len(frames)

    def set_enabled(self, entry_ids: Sequence[int], enabled: bool) -> None:
        for index in (self.pdq, self.md5, self.sha256):
            index.set_enabled(entry_ids, enabled)
        wanted = set(entry_ids)
        frames = [i for i, e in enumerate(self._vpdq.frame_entry) if e in wanted]
        if frames:
            self._vpdq.index.set_enabled(frames, enabled)

    def match(self, query: MatchQuery) -> list[RawMatch]:
        """Every enabled entry matching the query, each once (its best distance)."""
        best: dict[int, RawMatch] = {}

        def keep(m: RawMatch) -> None:
            old = best.get(m.entry_id)
            if old is None or m.distance < old.distance:
                best[m.entry_id] = m

        if query.pdq:
            for raw in self._match_pdq(query):
                keep(raw)
        if query.md5 is not None:
            for hit in self.md5.query([query.md5])[0]:
                keep(RawMatch(hit.entry_id, "md5", 0, "md5"))
        if query.sha256 is not None:
            for hit in self.sha256.query([query.sha256])[0]:
                keep(RawMatch(hit.entry_id, "sha256", 0, "sha256"))
        if query.vpdq is not None:
            for raw in self._match_vpdq(query.vpdq):
                keep(raw)
        return sorted(best.values(), key=lambda m: (m.distance, m.entry_id))

    def _match_pdq(self, query: MatchQuery) -> list[RawMatch]:
        verifier = query.features
        may_verify = bool(self.features) and verifier is not None
        reach = (
            max(self.threshold, VERIFY_CANDIDATE_THRESHOLD_BITS) if may_verify else self.threshold
        )
        found = self.pdq.query_codes(pdq_codes([h.result.hash for h in query.pdq]), reach)
        out = []
        for q, e, d in zip(
            found.query.tolist(), found.entry_id.tolist(), found.distance.tolist(), strict=True
        ):
            named = query.pdq[q]
            via = named.via
            banked = self.features.get(int(e))
            # The query's own features are extracted only here, for a candidate that has some.
            verifying = banked is not None and verifier is not None and verifier.verifiable
            if named.verified_only and not verifying:
                continue  # below the quality gate: only the verifying stage may decide
            if verifying:
                assert verifier is not None and banked is not None
                if not verifier.shows(banked):
                    continue  # refused by the verifying stage, however close the hash
                via += "+verified"
            elif d > self.threshold:
                continue
            out.append(RawMatch(int(e), "pdq", int(d), via))
        return out

    def _match_vpdq(self, value: VpdqHash) -> list[RawMatch]:
        frames = value.good_frames()
        if not frames or not self._vpdq.frame_entry:
            return []
        found = self._vpdq.index.query_codes(pdq_codes(frames), self.threshold)
        frame_entry = np.asarray(self._vpdq.frame_entry, dtype=np.int64)
        entries = frame_entry[found.entry_id]
        out = []
        for entry in np.unique(entries).tolist():
            sel = entries == entry
            matched_query_frames = len(np.unique(found.query[sel]))
            percent = 100.0 * matched_query_frames / len(frames)
            if percent >= VPDQ_QUERY_MATCH_THRESHOLD_PERCENT:
                out.append(RawMatch(int(entry), "vpdq", int(found.distance[sel].min()), "vpdq"))
        return out
