"""The hash banks in a server's database, as a `BankStore`, through its operator API.

Files are hashed where the caller is; only their hashes go to the server, which matches them
against its banks (PDQ, MD5 and SHA-256: the server takes no vPDQ queries).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from accord.client.operator import OperatorApi
from accord.protocols.detection.banks import BankEntry, BankInfo
from accord.protocols.detection.importers import ImportFormat
from accord.protocols.detection.matching import BankMatch, MatchQuery
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS
from accord.storage.banks import BankImport, BankMatcher, BankStore


def _bank_info(record: dict[str, Any]) -> BankInfo:
    """A server's bank record (its list gives no counts by signal type)."""
    return BankInfo(
        name=str(record["name"]),
        threshold=int(record["threshold"]),
        version=str(record["version"]),
        entry_count=int(record["entries"]),
        enabled_count=int(record["enabled"]),
        counts_by_type=None,
    )


class RemoteBankStore(BankStore):
    """Banks on a server (operator token required)."""

    def __init__(self, api: OperatorApi) -> None:
        self.api = api

    def close(self) -> None:
        self.api.close()

    def create_bank(self, name: str, *, threshold: int = PDQ_MATCH_THRESHOLD_BITS) -> BankInfo:
        return _bank_info(self.api.create_bank(name, threshold))

    def get_bank(self, name: str) -> BankInfo:
        return _bank_info(self.api.get_bank(name))

    def list_banks(self) -> list[BankInfo]:
        return [_bank_info(r) for r in self.api.list_banks()]

    def add_entries(self, name: str, entries: Iterable[BankEntry]) -> int:
        return self.api.add_entries(name, list(entries))

    def import_file(
        self, name: str, data: bytes, fmt: ImportFormat, *, source: str | None = None
    ) -> BankImport:
        """The server parses the file and names its source itself (`FORMAT:upload`)."""
        return BankImport(added=self.api.import_file(name, data, fmt))

    def export_file(self, name: str, fmt: str) -> Iterator[str]:
        return iter([self.api.export(name, fmt)])

    def open_matcher(self, banks: Sequence[str] = ()) -> BankMatcher:
        return RemoteBankMatcher(self.api, banks)


class RemoteBankMatcher(BankMatcher):
    """Sends a query's hashes to the server in one request; keeps each entry's best distance."""

    def __init__(self, api: OperatorApi, banks: Sequence[str]) -> None:
        self.api = api
        self.banks = list(banks)

    def match(self, query: MatchQuery) -> list[BankMatch]:
        # The server decides by hashes alone, so a hash only the verifying stage may accept
        # (derived from an image below the quality gate) is not sent.
        sent = [h for h in query.pdq if not h.verified_only]
        hashes = [("pdq", h.result.hash.hex()) for h in sent]
        vias = [h.via for h in sent]
        if query.md5 is not None:
            hashes.append(("md5", query.md5.hex()))
            vias.append("md5")
        if query.sha256 is not None:
            hashes.append(("sha256", query.sha256.hex()))
            vias.append("sha256")
        if not hashes:
            return []
        best: dict[tuple[str, int], BankMatch] = {}
        for via, found in zip(vias, self.api.match(hashes, self.banks), strict=True):
            for m in found:
                key = (m["bank"], m["entry_id"])
                if key not in best or m["distance"] < best[key].distance:
                    best[key] = BankMatch(
                        bank=m["bank"],
                        entry_id=m["entry_id"],
                        signal_type=m["signal_type"],
                        distance=m["distance"],
                        via=via,
                        label=m["label"],
                        hash=m["hash"],
                    )
        return sorted(best.values(), key=lambda m: (m.distance, m.bank, m.entry_id))
