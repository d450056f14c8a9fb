"""Reading and writing hash lists from outside: CSV, python-threatexchange/HMA, NCMEC XML.

All three parsers take text from third parties, so each has size limits, rejects anything
malformed with `InvalidInput` naming the line (never echoing its content: it may hold hashes of
user content), and is fuzzed in the tests. XML is parsed with defusedxml (no DTDs, no entity
expansion, no external references).

Formats:

- ``csv``: ``type,hash[,label]`` per line; an optional first line ``type,hash,label`` is skipped.
  Types: pdq, md5, sha256, vpdq (and the aliases python-threatexchange uses).
- ``hma``: python-threatexchange's ``threatexchange dataset -P --csv`` export, which HMA also
  reads: a header naming at least ``signal_type`` and ``signal_str``, optionally ``collab``,
  ``category`` and ``tags``. Tags become the label; rows whose category is ``NEGATIVE_CLASS``
  (the exchange says "not harmful") are imported disabled. Unsupported signal types (url,
  text...) are skipped and counted.
- ``ncmec``: NCMEC hash-sharing API v2 ``queryResult`` XML: ``image``/``video`` entries with a
  ``classification`` (the label) and ``fingerprints`` (``md5`` and ``pdq`` are imported; others
  such as sha1, pdna, tmk-pdqf are skipped and counted); ``deletedImage``/``deletedVideo``
  entries are reported so their earlier imports can be disabled.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from accord.errors import InvalidInput, TooLarge
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.signals import SIGNAL_ALIASES

#: Largest bank file read in one import.
IMPORT_MAX_BYTES = 4 * 1024 * 1024 * 1024
#: Largest single CSV line (a vPDQ hash of a long video is the long case).
IMPORT_MAX_LINE_CHARS = 8 * 1024 * 1024
#: Largest NCMEC XML document (one API page is about 1,000 entries).
NCMEC_MAX_XML_BYTES = 256 * 1024 * 1024
#: Most entries in one import.
IMPORT_MAX_ENTRIES = 100_000_000

ImportFormat = Literal["csv", "hma", "ncmec"]
IMPORT_FORMATS: tuple[ImportFormat, ...] = ("csv", "hma", "ncmec")
EXPORT_FORMATS = ("csv", "hma")


@dataclass(slots=True)
class ImportResult:
    """What an import found: entries to add, sources deleted upstream, rows skipped."""

    entries: list[BankEntry] = field(default_factory=list)
    deleted_sources: list[str] = field(default_factory=list)
    skipped: int = 0


def _csv_rows(lines: Iterable[str], what: str) -> Iterator[tuple[int, list[str]]]:
    csv.field_size_limit(IMPORT_MAX_LINE_CHARS)
    reader = csv.reader(lines, strict=True)
    try:
        for row in reader:
            yield reader.line_num, row
    except csv.Error:
        raise InvalidInput(f"{what}: malformed CSV near line {reader.line_num + 1}") from None


def _text_lines(text: str, what: str) -> Iterator[str]:
    if len(text) > IMPORT_MAX_BYTES:
        raise TooLarge(f"{what} file too large")
    return iter(io.StringIO(text, newline=""))


def read_text_lines(stream: BinaryIO, what: str) -> Iterator[str]:
    """The lines of a UTF-8 file (a BOM is dropped), read one at a time: a line longer than
    IMPORT_MAX_LINE_CHARS or a file longer than IMPORT_MAX_BYTES stops the import."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    total = 0
    try:
        while line := text.readline(IMPORT_MAX_LINE_CHARS + 1):
            if len(line) > IMPORT_MAX_LINE_CHARS:
                raise TooLarge(f"{what} file has a line longer than {IMPORT_MAX_LINE_CHARS}")
            total += len(line)
            if total > IMPORT_MAX_BYTES:
                raise TooLarge(f"{what} file too large")
            yield line
    except UnicodeDecodeError:
        raise InvalidInput(f"{what} file is not UTF-8 text") from None
    finally:
        with contextlib.suppress(ValueError):  # already closed: nothing to hand back
            text.detach()  # the caller's stream stays open


def _entry(line: int, what: str, signal: str, value: str, **kw: object) -> BankEntry:
    try:
        return BankEntry.parse(signal, value, **kw)  # type: ignore[arg-type]
    except InvalidInput as exc:
        raise InvalidInput(f"{what} line {line}: {exc.message}") from None


def parse_csv(text: str, *, source: str = "csv") -> ImportResult:
    """Parse ``type,hash[,label]`` lines."""
    result = ImportResult()
    result.entries.extend(iter_csv(_text_lines(text, "CSV"), source=source))
    return result


def iter_csv(lines: Iterable[str], *, source: str = "csv") -> Iterator[BankEntry]:
    """The entries of ``type,hash[,label]`` lines, as they are read."""
    count = 0
    for line, row in _csv_rows(lines, "CSV"):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if line == 1 and row[0].strip().lower() in ("type", "signal_type"):
            continue
        if len(row) not in (2, 3):
            raise InvalidInput(f"CSV line {line}: expected type,hash[,label]")
        label = row[2] if len(row) == 3 else ""
        count += 1
        if count > IMPORT_MAX_ENTRIES:
            raise TooLarge("too many entries in one import")
        yield _entry(line, "CSV", row[0], row[1], source=source, label=label)


def parse_hma(text: str, *, source: str = "hma") -> ImportResult:
    """Parse a python-threatexchange / HMA dataset CSV export."""
    result = ImportResult()
    result.entries.extend(iter_hma(_text_lines(text, "HMA"), result, source=source))
    return result


def iter_hma(
    lines: Iterable[str], result: ImportResult, *, source: str = "hma"
) -> Iterator[BankEntry]:
    """The entries of a python-threatexchange / HMA dataset CSV export, as they are read;
    rows of signal types not kept here are counted in `result.skipped`."""
    columns: dict[str, int] | None = None
    count = 0
    for line, row in _csv_rows(lines, "HMA"):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if columns is None:
            columns = {name.strip().lower(): i for i, name in enumerate(row)}
            if "signal_type" not in columns or "signal_str" not in columns:
                raise InvalidInput("HMA export: header must name signal_type and signal_str")
            continue
        if len(row) != len(columns):
            raise InvalidInput(f"HMA line {line}: expected {len(columns)} columns")

        header = columns

        def col(name: str, row: list[str] = row, header: dict[str, int] = header) -> str:
            i = header.get(name)
            return row[i].strip() if i is not None else ""

        if col("signal_type").lower() not in SIGNAL_ALIASES:
            result.skipped += 1
            continue
        collab = col("collab")
        entry_source = f"{source}:{collab}" if collab else source
        count += 1
        if count > IMPORT_MAX_ENTRIES:
            raise TooLarge("too many entries in one import")
        yield _entry(
            line,
            "HMA",
            col("signal_type"),
            col("signal_str"),
            source=entry_source[:256],
            label=col("tags"),
            enabled=col("category").upper() != "NEGATIVE_CLASS",
        )
    if columns is None:
        raise InvalidInput("HMA export: empty file")


_NCMEC_FINGERPRINTS = {"md5": "md5", "pdq": "pdq"}


def _local(tag: object) -> str:
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def ncmec_source(prefix: str, member_id: object, entry_id: str) -> str:
    """The source of an NCMEC entry's bank entries, the same whether the entry came from a file
    (`bank import --format ncmec`) or from the API (`bank fetch --exchange ncmec`), so a
    deletion from either disables an import from the other."""
    return f"{prefix}:{member_id}/{entry_id}"[:256]


def ncmec_fingerprint_entry(tag: str, value: str, *, source: str, label: str) -> BankEntry | None:
    """One fingerprint of an NCMEC entry as a bank entry: `md5` and `pdq`, of images and videos
    alike (None for sha1, PhotoDNA, TMK and the rest: Accord does not compute them). A malformed
    value raises InvalidInput."""
    signal = _NCMEC_FINGERPRINTS.get(tag.lower())
    value = value.strip()
    if signal is None or not value:
        return None
    return BankEntry.parse(signal, value, source=source, label=label)


def parse_ncmec_xml(data: bytes, *, source: str = "ncmec") -> ImportResult:
    """Parse one NCMEC hash-sharing ``queryResult`` document."""
    if len(data) > NCMEC_MAX_XML_BYTES:
        raise TooLarge("NCMEC XML too large")
    try:
        root = SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise InvalidInput("NCMEC XML: DTDs and entities are not allowed") from None
    except (SafeET.ParseError, ValueError, TypeError, LookupError, RecursionError):
        # LookupError: an unknown declared encoding; ValueError covers UnicodeError.
        raise InvalidInput("NCMEC XML: not well-formed XML") from None
    if _local(root.tag) != "queryResult":
        raise InvalidInput("NCMEC XML: expected a queryResult document")
    result = ImportResult()
    for group in root:
        if _local(group.tag) not in ("images", "videos"):
            continue
        for item in group:
            kind = _local(item.tag)
            children = {_local(c.tag): c for c in item}
            entry_id = (children["id"].text or "").strip() if "id" in children else ""
            member = children.get("member")
            member_id = member.get("id", "") if member is not None else ""
            if not entry_id:
                raise InvalidInput(f"NCMEC XML: a {kind} entry has no id")
            entry_source = ncmec_source(source, member_id, entry_id)
            if kind in ("deletedImage", "deletedVideo"):
                result.deleted_sources.append(entry_source)
                continue
            if kind not in ("image", "video"):
                result.skipped += 1
                continue
            classification = children.get("classification")
            label = (classification.text or "").strip() if classification is not None else ""
            fingerprints = children.get("fingerprints")
            for fp in fingerprints if fingerprints is not None else ():
                try:
                    entry = ncmec_fingerprint_entry(
                        _local(fp.tag), fp.text or "", source=entry_source, label=label
                    )
                except InvalidInput as exc:
                    raise InvalidInput(
                        f"NCMEC XML entry {len(result.entries) + 1}: {exc.message}"
                    ) from None
                if entry is None:
                    result.skipped += 1
                    continue
                result.entries.append(entry)
                if len(result.entries) > IMPORT_MAX_ENTRIES:
                    raise TooLarge("too many entries in one import")
    return result


def parse_bank_file(data: bytes, fmt: ImportFormat, *, source: str | None = None) -> ImportResult:
    """Parse a bank file in one of IMPORT_FORMATS held in memory."""
    if len(data) > IMPORT_MAX_BYTES:
        raise TooLarge("bank file too large")
    result = ImportResult()
    result.entries.extend(read_bank_entries(io.BytesIO(data), fmt, result, source=source))
    return result


def read_bank_entries(
    stream: BinaryIO, fmt: ImportFormat, result: ImportResult, *, source: str | None = None
) -> Iterator[BankEntry]:
    """The entries of a bank file as they are read from `stream` (CSV and HMA a line at a
    time; NCMEC XML, at most NCMEC_MAX_XML_BYTES, at once). Skipped rows and sources deleted
    upstream are counted in `result`; its `entries` stay empty."""
    if fmt == "ncmec":
        found = parse_ncmec_xml(stream.read(NCMEC_MAX_XML_BYTES + 1), source=source or "ncmec")
        result.skipped += found.skipped
        result.deleted_sources.extend(found.deleted_sources)
        yield from found.entries
    elif fmt == "csv":
        yield from iter_csv(read_text_lines(stream, "CSV"), source=source or "csv")
    elif fmt == "hma":
        yield from iter_hma(read_text_lines(stream, "HMA"), result, source=source or "hma")
    else:
        raise InvalidInput("unknown import format")


def export_csv(entries: Iterable[BankEntry]) -> Iterator[str]:
    """``type,hash,label`` lines (with a header), enabled original entries only."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["type", "hash", "label"])
    yield _take(out)
    for e in entries:
        if e.enabled and e.variant == "original":
            writer.writerow([e.signal_type, e.hash_text, e.label])
            yield _take(out)


#: python-threatexchange's names; its only SHA-256 type is `video_sha256`, so every SHA-256
#: entry is exported under that name (an image's SHA-256 matches nothing it would mislabel).
_HMA_NAMES = {"pdq": "pdq", "md5": "video_md5", "vpdq": "vpdq", "sha256": "video_sha256"}


def export_hma(entries: Iterable[BankEntry], *, collab: str = "accord") -> Iterator[str]:
    """python-threatexchange dataset CSV (`_HMA_NAMES`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["signal_type", "signal_str", "collab", "category", "tags"])
    yield _take(out)
    for e in entries:
        name = _HMA_NAMES.get(e.signal_type)
        if name is None or e.variant != "original":
            continue
        category = "POSITIVE_CLASS" if e.enabled else "NEGATIVE_CLASS"
        writer.writerow([name, e.hash_text, collab, category, e.label])
        yield _take(out)


def _take(buf: io.StringIO) -> str:
    value = buf.getvalue()
    buf.seek(0)
    buf.truncate()
    return value
