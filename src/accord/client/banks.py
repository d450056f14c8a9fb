"""The hash banks in a server's database, as a `BankStore`, through its operator API.

Files are hashed where the caller is; only their hashes go to the server, which matches them
against its banks (PDQ, MD5 and SHA-256: the server takes no vPDQ queries).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO

from accord.client.operator import OperatorApi
from accord.errors import TooLarge
from accord.protocols.detection.banks import BankEntry, BankInfo
from accord.protocols.detection.importers import (
    IMPORT_MAX_LINE_CHARS,
    NCMEC_MAX_XML_BYTES,
    ImportFormat,
)
from accord.protocols.detection.matching import BankMatch, MatchQuery
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS
from accord.storage.banks import BankImport, BankMatcher, BankStore

#: Bytes of a bank file sent in one import request (the server takes up to 64 MiB).
UPLOAD_PIECE_BYTES = 16 << 20


def line_pieces(stream: BinaryIO, max_bytes: int, *, repeat_header: bool) -> Iterator[bytes]:
    """The stream in pieces of whole lines, each at most `max_bytes` unless one line is longer
    (the server then refuses that piece); with `repeat_header`, every piece after the first
    starts with the first line."""
    header = b""
    piece: list[bytes] = []
    size = 0
    while line := stream.readline(IMPORT_MAX_LINE_CHARS + 1):
        if len(line) > IMPORT_MAX_LINE_CHARS:
            raise TooLarge(f"the bank file has a line longer than {IMPORT_MAX_LINE_CHARS} bytes")
        if repeat_header and not header:
            header = line
        if piece and size + len(line) > max_bytes:
            yield b"".join(piece)
            piece, size = ([header], len(header)) if repeat_header else ([], 0)
        piece.append(line)
        size += len(line)
    if piece and (not repeat_header or size > len(header) or len(piece) == 1):
        yield b"".join(piece)


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

    def import_stream(
        self, name: str, stream: BinaryIO, fmt: ImportFormat, *, source: str | None = None
    ) -> BankImport:
        """CSV and HMA files go up in pieces of whole lines (an HMA piece repeats the header);
        an NCMEC document goes up whole."""
        if fmt == "ncmec":
            return self.import_file(name, stream.read(NCMEC_MAX_XML_BYTES + 1), fmt)
        added = 0
        for piece in line_pieces(stream, UPLOAD_PIECE_BYTES, repeat_header=fmt == "hma"):
            added += self.api.import_file(name, piece, fmt)
        return BankImport(added=added)

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
