"""Bank stores: the interfaces, and the SQLAlchemy implementation (SQLite or PostgreSQL).

`BankStore` is what can be done with named banks wherever they are kept: create and list them,
add and import entries, export them, match against them. `BankEntryStore` is a store that holds
the entries itself, so they can be listed, looked up and indexed here; `SqlBankStore` is one.
(`accord.client.banks.RemoteBankStore` is a `BankStore` whose banks are in a server's database.)

The tables are prefixed `bank_` and live in their own `MetaData`; their schema is made and
changed by the Alembic migrations alone (`accord.storage.migrate`), wherever the store is: a
store opened on a database first brings it to the migrations' head, so a bank database made by
`accord bank` is one the server can later start on, and the reverse. The store holds entries;
indexes are built from them (and may be cached on disk, keyed by the bank's version).
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from accord.errors import Conflict, InvalidInput, NotFound, TooLarge
from accord.protocols.detection.banks import (
    BankEntry,
    BankInfo,
    BankVersion,
    compute_bank_version,
    validate_bank_name,
    validate_threshold,
)
from accord.protocols.detection.features import LocalFeatures, parse_features
from accord.protocols.detection.importers import (
    IMPORT_MAX_BYTES,
    ImportFormat,
    ImportResult,
    export_csv,
    export_hma,
    read_bank_entries,
)
from accord.protocols.detection.index import MihPdqIndex, read_index
from accord.protocols.detection.matching import BankIndex, BankMatch, MatchQuery
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, parse_hash
from accord.storage.migrate import upgrade_to_head
from accord.storage.schema import NAMING_CONVENTION, BigId

metadata = MetaData(naming_convention=NAMING_CONVENTION)
_BigId = BigId

bank_banks = Table(
    "bank_banks",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("threshold", Integer, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    # Cached canonical version; NULL after a change until someone asks for it.
    Column("version", String(64), nullable=True),
)

bank_entries = Table(
    "bank_entries",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("bank_id", _BigId, ForeignKey("bank_banks.id", ondelete="CASCADE"), nullable=False),
    Column("signal_type", String(16), nullable=False),
    Column("hash", Text, nullable=False),
    # SHA-256 of "<signal_type>:<hash>": a fixed-size key for uniqueness (vPDQ hashes are long).
    Column("hash_key", String(64), nullable=False),
    Column("variant", String(32), nullable=False),
    Column("source", String(256), nullable=False),
    Column("label", String(128), nullable=False),
    Column("enabled", Boolean, nullable=False),
    # Disabled because every source that listed it withdrew it (`withdraw_sources`); a source
    # listing it again enables it again.
    Column("withdrawn", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("bank_id", "hash_key", "variant", name="uq_bank_entries_hash"),
    Index("ix_bank_entries_bank_source", "bank_id", "source"),
    # Partial: few entries are withdrawn, and inserts then pay nothing for it.
    Index(
        "ix_bank_entries_withdrawn",
        "bank_id",
        sqlite_where=text("withdrawn = 1"),
        postgresql_where=text("withdrawn"),
    ),
)

# Every source that lists a banked hash: a bank holds a hash once (`source` above is the first
# source's), while several sources may list it (NCMEC's members often upload the same file).
bank_entry_sources = Table(
    "bank_entry_sources",
    metadata,
    Column("entry_id", _BigId, ForeignKey("bank_entries.id", ondelete="CASCADE"), primary_key=True),
    Column("bank_id", _BigId, ForeignKey("bank_banks.id", ondelete="CASCADE"), nullable=False),
    Column("source", String(256), primary_key=True),
    Index("ix_bank_entry_sources_bank_source", "bank_id", "source"),
)

# Local features of a banked image, for the verifying stage (protocols/detection/features.py):
# one row per image, keyed by the entries' source; never the image itself.
bank_features = Table(
    "bank_features",
    metadata,
    Column("bank_id", _BigId, ForeignKey("bank_banks.id", ondelete="CASCADE"), primary_key=True),
    Column("source", String(256), primary_key=True),
    Column("data", LargeBinary, nullable=False),
)

# Where a bank's fetch from a hash-list exchange got to (`accord.storage.bank_fetch`): the
# exchange's own checkpoint, as JSON, one per bank and exchange.
bank_fetch_checkpoints = Table(
    "bank_fetch_checkpoints",
    metadata,
    Column("bank_id", _BigId, ForeignKey("bank_banks.id", ondelete="CASCADE"), primary_key=True),
    Column("exchange", String(64), primary_key=True),
    Column("checkpoint", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

#: Rows per INSERT batch.
_BATCH = 5000
#: Banks with at least this many PDQ hashes get their index cached on disk.
_CACHE_MIN_ENTRIES = 50_000


def _hash_key(entry: BankEntry) -> str:
    return hashlib.sha256(f"{entry.signal_type}:{entry.hash_text}".encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class BankImport:
    """What importing a bank file did. `parsed` is None where the file was parsed elsewhere."""

    added: int
    parsed: int | None = None
    skipped: int = 0
    disabled: int = 0


class BankMatcher(ABC):
    """Matches queries against a set of banks chosen when it was opened."""

    @abstractmethod
    def match(self, query: MatchQuery) -> list[BankMatch]:
        """Every enabled entry the query matches, each once (its best distance)."""

    @property
    def verifies(self) -> bool:
        """Whether any of its banks holds local features, so a query's verifying stage (and
        the candidates only it may decide) can come into play."""
        return False


class BankStore(ABC):
    """Named banks of hash entries. Names are unique; entries are unique per (hash, variant)."""

    @abstractmethod
    def create_bank(self, name: str, *, threshold: int = PDQ_MATCH_THRESHOLD_BITS) -> BankInfo:
        """Create an empty bank (`Conflict` if the name is taken)."""

    @abstractmethod
    def get_bank(self, name: str) -> BankInfo:
        """Settings, counts and current version (`NotFound` if absent)."""

    @abstractmethod
    def list_banks(self) -> list[BankInfo]: ...

    @abstractmethod
    def add_entries(self, name: str, entries: Iterable[BankEntry]) -> int:
        """Add entries, skipping ones already present; returns how many were new."""

    @abstractmethod
    def import_file(
        self, name: str, data: bytes, fmt: ImportFormat, *, source: str | None = None
    ) -> BankImport:
        """Add the entries of a bank file and disable those it says were deleted upstream.

        `source` is recorded with each entry where this store parses the file (a server
        records its own).
        """

    @abstractmethod
    def import_stream(
        self, name: str, stream: BinaryIO, fmt: ImportFormat, *, source: str | None = None
    ) -> BankImport:
        """`import_file` for a file read as it is imported, never whole in memory (an NCMEC
        XML document, at most NCMEC_MAX_XML_BYTES, excepted)."""

    @abstractmethod
    def export_file(self, name: str, fmt: str) -> Iterator[str]:
        """The bank's enabled original entries as a file in one of EXPORT_FORMATS, in pieces."""

    @abstractmethod
    def open_matcher(self, banks: Sequence[str] = ()) -> BankMatcher:
        """A matcher over these banks (all of them if none are named)."""

    @abstractmethod
    def close(self) -> None: ...


class BankEntryStore(BankStore):
    """A bank store that holds the entries itself: they can be listed, looked up and indexed."""

    #: Where matchers keep the PDQ index of large banks between runs (None: rebuilt each time).
    index_cache_dir: Path | None = None

    @abstractmethod
    def delete_bank(self, name: str) -> None: ...

    @abstractmethod
    def set_threshold(self, name: str, threshold: int) -> BankInfo: ...

    @abstractmethod
    def set_enabled(self, name: str, entry_ids: Sequence[int], enabled: bool) -> int:
        """Enable or disable entries by id; returns how many changed."""

    @abstractmethod
    def withdraw_sources(self, name: str, sources: Sequence[str]) -> int:
        """These sources no longer list their hashes (deleted upstream): each enabled entry
        that no other source lists is disabled, and enabled again if a source lists it later.
        Returns how many entries were disabled."""

    @abstractmethod
    def iter_entries(
        self,
        name: str,
        *,
        enabled_only: bool = False,
        signal_types: Sequence[str] | None = None,
    ) -> Iterator[BankEntry]:
        """Entries with their ids, in id order (optionally only some signal types)."""

    @abstractmethod
    def iter_hash_rows(
        self, name: str, signal_type: str, *, batch: int = 100_000
    ) -> Iterator[list[tuple[int, str, bool]]]:
        """Bulk path for building indexes: batches of (id, hash text, enabled), in id order."""

    @abstractmethod
    def get_entries(self, name: str, entry_ids: Sequence[int]) -> dict[int, BankEntry]:
        """The entries with these ids (missing ids are left out)."""

    @abstractmethod
    def put_features(self, name: str, source: str, data: bytes) -> None:
        """Keep a banked image's local features (stored form), replacing earlier ones."""

    @abstractmethod
    def iter_features(self, name: str) -> Iterator[tuple[str, bytes]]:
        """(source, stored form) of every banked image with local features."""

    @abstractmethod
    def get_fetch_checkpoint(self, name: str, exchange: str) -> str | None:
        """Where the bank's fetch from this exchange got to (None: never fetched)."""

    @abstractmethod
    def put_fetch_checkpoint(self, name: str, exchange: str, checkpoint: str) -> None: ...

    def import_file(
        self, name: str, data: bytes, fmt: ImportFormat, *, source: str | None = None
    ) -> BankImport:
        if len(data) > IMPORT_MAX_BYTES:
            raise TooLarge("bank file too large")
        return self.import_stream(name, io.BytesIO(data), fmt, source=source)

    def import_stream(
        self, name: str, stream: BinaryIO, fmt: ImportFormat, *, source: str | None = None
    ) -> BankImport:
        self.get_bank(name)
        result = ImportResult()
        parsed = 0

        def counted() -> Iterator[BankEntry]:
            nonlocal parsed
            for entry in read_bank_entries(stream, fmt, result, source=source):
                parsed += 1
                yield entry

        added = self.add_entries(name, counted())
        disabled = 0
        if result.deleted_sources:
            disabled = self.withdraw_sources(name, result.deleted_sources)
        return BankImport(added=added, parsed=parsed, skipped=result.skipped, disabled=disabled)

    def export_file(self, name: str, fmt: str) -> Iterator[str]:
        entries = self.iter_entries(name)
        return export_csv(entries) if fmt == "csv" else export_hma(entries)

    def open_matcher(self, banks: Sequence[str] = ()) -> BankMatcher:
        return IndexedBankMatcher.load(self, banks, cache_dir=self.index_cache_dir)


class IndexedBankMatcher(BankMatcher):
    """Matches against in-memory indexes of a store's banks; labels and hashes from the store."""

    def __init__(self, store: BankEntryStore, indexes: Sequence[BankIndex]) -> None:
        self.store = store
        self.indexes = list(indexes)

    @classmethod
    def load(
        cls, store: BankEntryStore, banks: Sequence[str], *, cache_dir: Path | None = None
    ) -> IndexedBankMatcher:
        """Build the indexes of these banks (all of them if none are named) once."""
        names = list(banks) or [b.name for b in store.list_banks()]
        return cls(store, [load_bank_index(store, n, cache_dir=cache_dir) for n in names])

    @property
    def verifies(self) -> bool:
        return any(index.features for index in self.indexes)

    def match(self, query: MatchQuery) -> list[BankMatch]:
        matches = []
        for index in self.indexes:
            raw = index.match(query)
            entries = self.store.get_entries(index.name, [m.entry_id for m in raw])
            for m in raw:
                e = entries.get(m.entry_id)
                if e is None:
                    continue
                matches.append(
                    BankMatch(
                        bank=index.name,
                        entry_id=m.entry_id,
                        signal_type=m.signal_type,
                        distance=m.distance,
                        via=m.via,
                        label=e.label,
                        hash=e.hash_text if e.signal_type != "vpdq" else None,
                    )
                )
        return matches


class SqlBankStore(BankEntryStore):
    """`BankEntryStore` on SQLAlchemy 2 Core; tested on SQLite, written for PostgreSQL too."""

    def __init__(self, engine: Engine, *, index_cache_dir: Path | None = None) -> None:
        """A store on a database whose schema is at the migrations' head (`open_migrated`)."""
        self.engine = engine
        self.index_cache_dir = index_cache_dir

    @classmethod
    def open_migrated(cls, engine: Engine, *, index_cache_dir: Path | None = None) -> SqlBankStore:
        """A store on any database: its schema is first brought to the migrations' head."""
        upgrade_to_head(engine)
        return cls(engine, index_cache_dir=index_cache_dir)

    @classmethod
    def open_sqlite(cls, path: Path, *, index_cache_dir: Path | None = None) -> SqlBankStore:
        """A store in a local SQLite file (created if missing; one made before the schema was
        migrated is moved aside to FILE.unmigrated and its rows copied into a new one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        unmigrated = _move_aside_if_unmigrated(path)
        engine = create_engine(f"sqlite:///{path.resolve()}")

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        store = cls.open_migrated(engine, index_cache_dir=index_cache_dir)
        if unmigrated is not None:
            _copy_bank_rows(unmigrated, into=path)
        return store

    def close(self) -> None:
        self.engine.dispose()

    # -- banks -------------------------------------------------------------------------------

    def _bank_row(self, conn: Any, name: str) -> Any:
        row = conn.execute(select(bank_banks).where(bank_banks.c.name == name)).first()
        if row is None:
            raise NotFound("no such bank")
        return row

    def create_bank(self, name: str, *, threshold: int = PDQ_MATCH_THRESHOLD_BITS) -> BankInfo:
        validate_bank_name(name)
        validate_threshold("pdq", threshold)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(bank_banks).values(
                        name=name,
                        threshold=threshold,
                        created_at=int(time.time()),
                        version=compute_bank_version(threshold, []),
                    )
                )
        except IntegrityError:
            raise Conflict("a bank with this name exists") from None
        return self.get_bank(name)

    def get_bank(self, name: str) -> BankInfo:
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            version = row.version
            if version is None:
                version = self._compute_version(conn, row.id, row.threshold)
                conn.execute(
                    update(bank_banks).where(bank_banks.c.id == row.id).values(version=version)
                )
            counts = conn.execute(
                select(
                    bank_entries.c.signal_type,
                    bank_entries.c.enabled,
                    func.count(),
                )
                .where(bank_entries.c.bank_id == row.id)
                .group_by(bank_entries.c.signal_type, bank_entries.c.enabled)
            ).all()
        by_type: dict[str, int] = {}
        total = enabled = 0
        for signal_type, is_enabled, n in counts:
            by_type[signal_type] = by_type.get(signal_type, 0) + int(n)
            total += int(n)
            enabled += int(n) if is_enabled else 0
        return BankInfo(
            name=row.name,
            threshold=int(row.threshold),
            version=version,
            entry_count=total,
            enabled_count=enabled,
            counts_by_type=by_type,
        )

    def _compute_version(self, conn: Any, bank_id: int, threshold: int) -> str:
        cols = [
            bank_entries.c.signal_type,
            bank_entries.c.hash,
            bank_entries.c.variant,
            bank_entries.c.label,
            bank_entries.c.source,
        ]
        order = [c.collate("C") for c in cols] if conn.dialect.name == "postgresql" else list(cols)
        rows = conn.execute(
            select(*cols, bank_entries.c.enabled)
            .where(bank_entries.c.bank_id == bank_id)
            .order_by(*order, bank_entries.c.enabled)
        )
        version = BankVersion(threshold)
        lines: list[bytes] = []
        for r in rows:
            lines.append(
                "\t".join((r[0], r[1], r[2], r[3], r[4], "1" if r[5] else "0")).encode() + b"\n"
            )
        try:
            for line in lines:
                version.update_sorted(line)
        except InvalidInput:  # a collation that is not bytewise: sort here instead
            version = BankVersion(threshold)
            for line in sorted(lines):
                version.update_sorted(line)
        return version.hexdigest()

    def list_banks(self) -> list[BankInfo]:
        with self.engine.connect() as conn:
            query = select(bank_banks.c.name).order_by(bank_banks.c.name)
            names = [str(n) for n in conn.execute(query).scalars()]
        return [self.get_bank(n) for n in names]

    def delete_bank(self, name: str) -> None:
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            conn.execute(delete(bank_features).where(bank_features.c.bank_id == row.id))
            conn.execute(
                delete(bank_fetch_checkpoints).where(bank_fetch_checkpoints.c.bank_id == row.id)
            )
            conn.execute(delete(bank_entry_sources).where(bank_entry_sources.c.bank_id == row.id))
            conn.execute(delete(bank_entries).where(bank_entries.c.bank_id == row.id))
            conn.execute(delete(bank_banks).where(bank_banks.c.id == row.id))

    def set_threshold(self, name: str, threshold: int) -> BankInfo:
        validate_threshold("pdq", threshold)
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            conn.execute(
                update(bank_banks)
                .where(bank_banks.c.id == row.id)
                .values(threshold=threshold, version=None)
            )
        return self.get_bank(name)

    # -- entries -----------------------------------------------------------------------------

    def _insert_ignore(self, conn: Any, rows: list[dict[str, Any]]) -> int:
        """Insert the rows not banked yet and list every row's source; returns how many were
        new. New rows come back with their ids (RETURNING), so their sources are listed in one
        plain insert; only rows banked before are looked up."""
        if conn.dialect.name not in ("sqlite", "postgresql"):  # pragma: no cover
            added = 0
            for r in rows:
                try:
                    with conn.begin_nested():
                        conn.execute(insert(bank_entries).values(**r))
                    added += 1
                except IntegrityError:
                    pass
            self._list_sources(conn, rows)
            return added
        dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
        stmt = (
            dialect.insert(bank_entries)
            .on_conflict_do_nothing()
            .returning(bank_entries.c.id, bank_entries.c.hash_key, bank_entries.c.variant)
        )
        new = {(k, v): i for i, k, v in conn.execute(stmt, rows)}
        links = {
            (new[r["hash_key"], r["variant"]], r["source"]): r["bank_id"]
            for r in rows
            if r["source"] and (r["hash_key"], r["variant"]) in new
        }
        if links:
            conn.execute(
                dialect.insert(bank_entry_sources).on_conflict_do_nothing(),
                [{"entry_id": e, "source": src, "bank_id": b} for (e, src), b in links.items()],
            )
        banked_before = [r for r in rows if (r["hash_key"], r["variant"]) not in new]
        self._list_sources(conn, banked_before)
        self._relabel(conn, banked_before)
        return len(new)

    def _relabel(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        """An entry listed again by its own source under another label takes the new label (an
        NCMEC entry reclassified, say); another source's label is not taken. The bank's version
        is reset if any label changed."""
        listed = [
            {
                "b": r["bank_id"],
                "k": r["hash_key"],
                "v": r["variant"],
                "s": r["source"],
                "l": r["label"],
            }
            for r in rows
            if r["source"]
        ]
        if not listed:
            return
        result = conn.execute(
            update(bank_entries)
            .where(bank_entries.c.bank_id == bindparam("b"))
            .where(bank_entries.c.hash_key == bindparam("k"))
            .where(bank_entries.c.variant == bindparam("v"))
            .where(bank_entries.c.source == bindparam("s"))
            .where(bank_entries.c.label != bindparam("l"))
            .values(label=bindparam("l")),
            listed,
        )
        if result.rowcount:
            conn.execute(
                update(bank_banks).where(bank_banks.c.id == listed[0]["b"]).values(version=None)
            )

    def _list_sources(self, conn: Any, rows: list[dict[str, Any]]) -> None:
        """Record each row's source as listing its entry, banked before (looked up)."""
        listed = [
            {"b": r["bank_id"], "k": r["hash_key"], "v": r["variant"], "s": r["source"]}
            for r in rows
            if r["source"]
        ]
        if not listed:
            return
        entry = (
            select(bank_entries.c.id, bank_entries.c.bank_id, bindparam("s", type_=String))
            .where(bank_entries.c.bank_id == bindparam("b"))
            .where(bank_entries.c.hash_key == bindparam("k"))
            .where(bank_entries.c.variant == bindparam("v"))
        )
        columns = ["entry_id", "bank_id", "source"]
        if conn.dialect.name == "postgresql":
            into: Any = (
                postgresql.insert(bank_entry_sources)
                .from_select(columns, entry)
                .on_conflict_do_nothing()
            )
        else:
            into = insert(bank_entry_sources).from_select(columns, entry).prefix_with("OR IGNORE")
        conn.execute(into, listed)

    def add_entries(self, name: str, entries: Iterable[BankEntry]) -> int:
        added = 0
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            batch: list[dict[str, Any]] = []
            for e in entries:
                batch.append(
                    {
                        "bank_id": row.id,
                        "signal_type": e.signal_type,
                        "hash": e.hash_text,
                        "hash_key": _hash_key(e),
                        "variant": e.variant,
                        "source": e.source,
                        "label": e.label,
                        "enabled": e.enabled,
                    }
                )
                if len(batch) >= _BATCH:
                    added += self._insert_ignore(conn, batch)
                    batch = []
            if batch:
                added += self._insert_ignore(conn, batch)
            # Entries withdrawn by every source and listed again are enabled again.
            relisted = conn.execute(
                update(bank_entries)
                .where(bank_entries.c.bank_id == row.id)
                .where(bank_entries.c.withdrawn)
                .where(exists().where(bank_entry_sources.c.entry_id == bank_entries.c.id))
                .values(withdrawn=False, enabled=True)
            )
            if added or relisted.rowcount:
                conn.execute(
                    update(bank_banks).where(bank_banks.c.id == row.id).values(version=None)
                )
        return added

    def set_enabled(self, name: str, entry_ids: Sequence[int], enabled: bool) -> int:
        changed = 0
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            ids = [int(i) for i in entry_ids]
            for start in range(0, len(ids), _BATCH):
                result = conn.execute(
                    update(bank_entries)
                    .where(bank_entries.c.bank_id == row.id)
                    .where(bank_entries.c.id.in_(ids[start : start + _BATCH]))
                    # An operator's decision holds even for an entry withdrawn upstream.
                    .where((bank_entries.c.enabled != enabled) | bank_entries.c.withdrawn)
                    .values(enabled=enabled, withdrawn=False)
                )
                changed += int(result.rowcount or 0)
            if changed:
                conn.execute(
                    update(bank_banks).where(bank_banks.c.id == row.id).values(version=None)
                )
        return changed

    def withdraw_sources(self, name: str, sources: Sequence[str]) -> int:
        disabled = 0
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            srcs = list(dict.fromkeys(sources))
            unlisted = ~exists().where(bank_entry_sources.c.entry_id == bank_entries.c.id)
            for start in range(0, len(srcs), _BATCH):
                chunk = srcs[start : start + _BATCH]
                of_chunk = (bank_entry_sources.c.bank_id == row.id) & (
                    bank_entry_sources.c.source.in_(chunk)
                )
                ids = [
                    int(r[0])
                    for r in conn.execute(select(bank_entry_sources.c.entry_id).where(of_chunk))
                ]
                conn.execute(delete(bank_entry_sources).where(of_chunk))
                for at in range(0, len(ids), _BATCH):
                    # An entry an operator disabled stays as it is, and is not enabled when a
                    # source lists it again.
                    result = conn.execute(
                        update(bank_entries)
                        .where(bank_entries.c.bank_id == row.id)
                        .where(bank_entries.c.id.in_(ids[at : at + _BATCH]))
                        .where(bank_entries.c.enabled)
                        .where(unlisted)
                        .values(enabled=False, withdrawn=True)
                    )
                    disabled += int(result.rowcount or 0)
            if disabled:
                conn.execute(
                    update(bank_banks).where(bank_banks.c.id == row.id).values(version=None)
                )
        return disabled

    def get_entries(self, name: str, entry_ids: Sequence[int]) -> dict[int, BankEntry]:
        out: dict[int, BankEntry] = {}
        ids = sorted({int(i) for i in entry_ids})
        with self.engine.connect() as conn:
            row = self._bank_row(conn, name)
            for start in range(0, len(ids), _BATCH):
                rows = conn.execute(
                    select(bank_entries)
                    .where(bank_entries.c.bank_id == row.id)
                    .where(bank_entries.c.id.in_(ids[start : start + _BATCH]))
                )
                for r in rows:
                    out[int(r.id)] = _entry_from_row(r)
        return out

    def iter_hash_rows(
        self, name: str, signal_type: str, *, batch: int = 100_000
    ) -> Iterator[list[tuple[int, str, bool]]]:
        with self.engine.connect() as conn:
            row = self._bank_row(conn, name)
            result = conn.execution_options(yield_per=batch).execute(
                select(bank_entries.c.id, bank_entries.c.hash, bank_entries.c.enabled)
                .where(bank_entries.c.bank_id == row.id)
                .where(bank_entries.c.signal_type == signal_type)
                .order_by(bank_entries.c.id)
            )
            for part in result.partitions(batch):
                yield [(int(r[0]), str(r[1]), bool(r[2])) for r in part]

    def iter_entries(
        self,
        name: str,
        *,
        enabled_only: bool = False,
        signal_types: Sequence[str] | None = None,
    ) -> Iterator[BankEntry]:
        with self.engine.connect() as conn:
            row = self._bank_row(conn, name)
            query = select(
                bank_entries.c.id,
                bank_entries.c.signal_type,
                bank_entries.c.hash,
                bank_entries.c.variant,
                bank_entries.c.source,
                bank_entries.c.label,
                bank_entries.c.enabled,
            ).where(bank_entries.c.bank_id == row.id)
            if enabled_only:
                query = query.where(bank_entries.c.enabled.is_(True))
            if signal_types is not None:
                query = query.where(bank_entries.c.signal_type.in_(list(signal_types)))
            result = conn.execution_options(yield_per=_BATCH).execute(
                query.order_by(bank_entries.c.id)
            )
            for r in result:
                yield _entry_from_row(r)

    def put_features(self, name: str, source: str, data: bytes) -> None:
        parse_features(data)  # nothing malformed is stored
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            where = (bank_features.c.bank_id == row.id) & (bank_features.c.source == source)
            conn.execute(delete(bank_features).where(where))
            conn.execute(insert(bank_features).values(bank_id=row.id, source=source, data=data))

    def iter_features(self, name: str) -> Iterator[tuple[str, bytes]]:
        with self.engine.connect() as conn:
            row = self._bank_row(conn, name)
            rows = conn.execute(
                select(bank_features.c.source, bank_features.c.data)
                .where(bank_features.c.bank_id == row.id)
                .order_by(bank_features.c.source)
            ).all()
        for r in rows:
            yield str(r.source), bytes(r.data)

    def get_fetch_checkpoint(self, name: str, exchange: str) -> str | None:
        with self.engine.connect() as conn:
            row = self._bank_row(conn, name)
            value = conn.execute(
                select(bank_fetch_checkpoints.c.checkpoint)
                .where(bank_fetch_checkpoints.c.bank_id == row.id)
                .where(bank_fetch_checkpoints.c.exchange == exchange)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def put_fetch_checkpoint(self, name: str, exchange: str, checkpoint: str) -> None:
        with self.engine.begin() as conn:
            row = self._bank_row(conn, name)
            where = (bank_fetch_checkpoints.c.bank_id == row.id) & (
                bank_fetch_checkpoints.c.exchange == exchange
            )
            conn.execute(delete(bank_fetch_checkpoints).where(where))
            conn.execute(
                insert(bank_fetch_checkpoints).values(
                    bank_id=row.id,
                    exchange=exchange,
                    checkpoint=checkpoint,
                    updated_at=int(time.time()),
                )
            )


_COPIED_COLUMNS = {
    "bank_banks": "id, name, threshold, created_at, version",
    "bank_entries": "id, bank_id, signal_type, hash, hash_key, variant, source, label, enabled",
    "bank_features": "bank_id, source, data",
}


def _move_aside_if_unmigrated(path: Path) -> Path | None:
    """A bank file whose tables were made without the migrations (no `alembic_version`) is
    renamed to FILE.unmigrated; returns the new name (None if there was nothing to move)."""
    if not path.is_file():
        return None
    with closing(sqlite3.connect(path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "bank_banks" not in tables or "alembic_version" in tables:
        return None
    aside = path.with_name(path.name + ".unmigrated")
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.rename(aside)
    return aside


def _copy_bank_rows(source: Path, *, into: Path) -> None:
    """Copy the bank tables' rows of an unmigrated file into a migrated one."""
    with closing(sqlite3.connect(into, isolation_level=None)) as conn:
        conn.execute("ATTACH DATABASE ? AS old", (str(source),))
        present = {r[0] for r in conn.execute("SELECT name FROM old.sqlite_master")}
        conn.execute("BEGIN")
        for table, columns in _COPIED_COLUMNS.items():
            if table in present:
                conn.execute(
                    f"INSERT INTO main.{table} ({columns}) SELECT {columns} FROM old.{table}"  # noqa: S608 (fixed names)
                )
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE old")


def _entry_from_row(r: Any) -> BankEntry:
    return BankEntry(
        signal_type=r.signal_type,
        hash=parse_hash(r.signal_type, r.hash),
        variant=r.variant,
        source=r.source,
        label=r.label,
        enabled=bool(r.enabled),
        entry_id=int(r.id),
    )


def load_bank_index(
    store: BankEntryStore, name: str, *, cache_dir: Path | None = None
) -> BankIndex:
    """Build the in-memory indexes of a bank from its entries.

    With `cache_dir`, the PDQ part is kept on disk in the pickle-free index format, keyed by the
    bank's version (a changed bank has a new version, so a stale file is never used).
    """
    info = store.get_bank(name)
    features = {source: parse_features(data) for source, data in store.iter_features(name)}
    bank_index = BankIndex(name, threshold=info.threshold, holds_images=bool(features))
    if features:
        _attach_features(store, name, bank_index, features)
    cache_file = None
    if cache_dir is not None:
        cache_file = cache_dir / f"{name}-{info.version}.pdqindex"
    cached = None
    if cache_file is not None and cache_file.is_file():
        try:
            with cache_file.open("rb") as f:
                loaded = read_index(f)
            if isinstance(loaded, MihPdqIndex):
                cached = loaded
        except InvalidInput:
            cached = None
    others = store.iter_entries(name, signal_types=("md5", "sha256", "vpdq"))
    if cached is not None:
        bank_index.pdq = cached
        bank_index.add_entries(others)
        return bank_index
    bank_index.add_entries(others)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    disabled: list[int] = []
    for rows in store.iter_hash_rows(name, "pdq"):
        try:
            codes = np.frombuffer(bytes.fromhex("".join(r[1] for r in rows)), dtype=np.uint8)
        except ValueError:
            raise InvalidInput("a stored PDQ hash is malformed") from None
        if codes.size != 32 * len(rows):
            raise InvalidInput("a stored PDQ hash is malformed")
        parts.append((codes.reshape(-1, 32), np.array([r[0] for r in rows], dtype=np.int64)))
        disabled.extend(r[0] for r in rows if not r[2])
    if parts:  # one bulk add: one segment, built once
        bank_index.add_pdq_codes(
            np.concatenate([c for c, _ in parts]), np.concatenate([i for _, i in parts])
        )
    if disabled:
        bank_index.pdq.set_enabled(disabled, False)
    bank_index.pdq.compact()  # one segment: fastest to query
    if cache_file is not None and len(bank_index.pdq) >= _CACHE_MIN_ENTRIES:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        for old in cache_file.parent.glob(f"{name}-*.pdqindex"):
            old.unlink(missing_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        with tmp.open("wb") as f:
            bank_index.pdq.serialize(f)
        tmp.replace(cache_file)
    return bank_index


def _attach_features(
    store: BankEntryStore, name: str, bank_index: BankIndex, features: dict[str, LocalFeatures]
) -> None:
    by_source: dict[str, list[int]] = {}
    for e in store.iter_entries(name, signal_types=("pdq",)):
        if e.source in features and e.entry_id is not None:
            by_source.setdefault(e.source, []).append(e.entry_id)
    for source, ids in by_source.items():
        bank_index.add_features(ids, features[source])


class MemoryBankStore(SqlBankStore):
    """An in-memory store (SQLite in memory): for tests and one-off evaluations."""

    def __init__(self) -> None:
        from sqlalchemy.pool import StaticPool

        engine = create_engine(
            "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
        )
        upgrade_to_head(engine)
        super().__init__(engine)
