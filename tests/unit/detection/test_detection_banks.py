"""Banks: entries, the canonical version, and the SQLite bank store."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.errors import Conflict, InvalidInput, NotFound
from accord.protocols.detection.banks import BankEntry, compute_bank_version
from accord.protocols.detection.signals import PdqHash, VpdqFrame, VpdqHash
from accord.storage.banks import MemoryBankStore, SqlBankStore, load_bank_index

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "facefacefacefacefacefacefaceface"


def _entries() -> list[BankEntry]:
    return [
        BankEntry.parse("pdq", PDQ, label="A1", source="ncmec:1/a"),
        BankEntry.parse("md5", MD5, label="A1", source="ncmec:1/a"),
        BankEntry.parse("sha256", "ab" * 32, label="B1", source="file:x"),
    ]


def test_entry_validation() -> None:
    with pytest.raises(InvalidInput):
        BankEntry(signal_type="md5", hash=PdqHash.from_hex(PDQ))
    with pytest.raises(InvalidInput):
        BankEntry.parse("pdq", PDQ, label="x" * 200)
    with pytest.raises(InvalidInput):
        BankEntry.parse("pdq", PDQ, source="a\nb")
    with pytest.raises(InvalidInput):
        BankEntry.parse("pdq", PDQ, variant="Bad Variant")
    assert PDQ not in repr(BankEntry.parse("pdq", PDQ))


def test_version_is_canonical() -> None:
    e = _entries()
    v = compute_bank_version(31, e)
    assert v == compute_bank_version(31, list(reversed(e)))
    assert v != compute_bank_version(30, e)
    disabled = [
        e[0],
        e[1],
        BankEntry.parse("sha256", "ab" * 32, label="B1", source="file:x", enabled=False),
    ]
    assert v != compute_bank_version(31, disabled)
    assert len(v) == 64
    # Pinned: the encoding is a contract with the transparency log.
    assert compute_bank_version(31, []) == compute_bank_version(31, ())


def test_store_lifecycle(tmp_path: Path) -> None:
    store = SqlBankStore.open_sqlite(tmp_path / "banks.db")
    info = store.create_bank("ncmec-test", threshold=28)
    assert info.threshold == 28 and info.entry_count == 0
    assert info.version == compute_bank_version(28, [])
    with pytest.raises(Conflict):
        store.create_bank("ncmec-test")
    with pytest.raises(InvalidInput):
        store.create_bank("bad name!")
    with pytest.raises(InvalidInput):
        store.create_bank("ok", threshold=99)
    assert store.add_entries("ncmec-test", _entries()) == 3
    assert store.add_entries("ncmec-test", _entries()) == 0  # duplicates skipped
    info = store.get_bank("ncmec-test")
    assert info.entry_count == 3 and info.enabled_count == 3
    assert info.counts_by_type == {"pdq": 1, "md5": 1, "sha256": 1}
    assert info.version == compute_bank_version(28, _entries())
    ids = [e.entry_id for e in store.iter_entries("ncmec-test")]
    assert store.set_enabled("ncmec-test", [ids[0]], False) == 1
    assert store.set_enabled("ncmec-test", [ids[0]], False) == 0
    after = store.get_bank("ncmec-test")
    assert after.enabled_count == 2 and after.version != info.version
    assert store.withdraw_sources("ncmec-test", ["ncmec:1/a"]) == 1
    assert [e.enabled for e in store.iter_entries("ncmec-test")] == [False, False, True]
    assert len(list(store.iter_entries("ncmec-test", enabled_only=True))) == 1
    assert set(store.get_entries("ncmec-test", ids + [999])) == set(ids)
    store.set_threshold("ncmec-test", 31)
    assert store.get_bank("ncmec-test").threshold == 31
    store.close()
    reopened = SqlBankStore.open_sqlite(tmp_path / "banks.db")
    assert [b.name for b in reopened.list_banks()] == ["ncmec-test"]
    reopened.delete_bank("ncmec-test")
    with pytest.raises(NotFound):
        reopened.get_bank("ncmec-test")


def test_vpdq_entries_stored() -> None:
    store = MemoryBankStore()
    store.create_bank("v")
    frames = tuple(VpdqFrame(PdqHash.from_hex(PDQ), 100, float(i)) for i in range(3))
    store.add_entries("v", [BankEntry(signal_type="vpdq", hash=VpdqHash(frames))])
    (entry,) = store.iter_entries("v")
    assert entry.hash == VpdqHash(frames)


def test_load_bank_index_and_cache(tmp_path: Path) -> None:
    import numpy as np

    store = MemoryBankStore()
    store.create_bank("big")
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(60_000, 32), dtype=np.uint8)
    store.add_entries(
        "big", (BankEntry(signal_type="pdq", hash=PdqHash(c.tobytes())) for c in codes)
    )
    cache = tmp_path / "cache"
    first = load_bank_index(store, "big", cache_dir=cache)
    files = list(cache.glob("big-*.pdqindex"))
    assert len(files) == 1
    second = load_bank_index(store, "big", cache_dir=cache)
    probe = PdqHash(codes[1234].tobytes())
    assert second.pdq.query([probe], 31) == first.pdq.query([probe], 31)
    files[0].write_bytes(b"garbage")  # a corrupt cache is ignored, never trusted
    third = load_bank_index(store, "big", cache_dir=cache)
    assert third.pdq.query([probe], 31) == first.pdq.query([probe], 31)


def test_bank_file_made_before_migrations_is_carried_over(tmp_path: Path) -> None:
    """A bank file whose tables were made directly (no Alembic version) keeps its banks: it is
    moved aside and its rows copied into a migrated file."""
    import sqlite3

    from sqlalchemy import create_engine

    from accord.storage.banks import metadata

    path = tmp_path / "banks.db"
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)  # how earlier versions made the file
    old = SqlBankStore(engine)
    old.create_bank("kept")
    old.add_entries("kept", _entries())
    old.close()
    store = SqlBankStore.open_sqlite(path)
    assert store.get_bank("kept").entry_count == 3
    store.create_bank("new")
    store.close()
    assert (tmp_path / "banks.db.unmigrated").is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
