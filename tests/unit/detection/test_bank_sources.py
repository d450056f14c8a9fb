"""A hash several sources list, withdrawn by some of them (SQLite and PostgreSQL).

A bank holds a hash once; NCMEC's members often upload the same file, so two entries of a list
can carry one hash. A deletion upstream withdraws its own source only: the hash stays enabled
while another source lists it, is disabled when none does, and is enabled again when a source
lists it again. An operator's decision is not undone by a list.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from accord.storage.banks import SqlBankStore
from accord.storage.db import make_engine, sqlite_url
from accord.storage.migrate import alembic_config

MD5 = "a1" * 16
OTHER = "b2" * 16
NS = 'xmlns="https://hashsharing.ncmec.org/hashsharing/v2"'


def _image(member: int, entry_id: str, md5: str, classification: str = "A1") -> str:
    return (
        f'<image><member id="{member}">ESP</member><id>{entry_id}</id>'
        f"<classification>{classification}</classification>"
        f"<fingerprints><md5>{md5}</md5></fingerprints></image>"
    )


def _deleted(member: int, entry_id: str) -> str:
    return f'<deletedImage><member id="{member}">ESP</member><id>{entry_id}</id></deletedImage>'


def _page(*items: str) -> bytes:
    images = f'<images count="{len(items)}">{"".join(items)}</images>'
    return f"<queryResult {NS}>{images}</queryResult>".encode()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBankStore]:
    if request.param == "sqlite":
        opened = SqlBankStore.open_sqlite(tmp_path / "banks.db")
    else:
        url = request.getfixturevalue("fresh_pg_url")
        opened = SqlBankStore.open_migrated(make_engine(url))
    opened.create_bank("ncmec")
    yield opened
    opened.close()


def _state(store: SqlBankStore) -> dict[str, bool]:
    return {e.hash.hex(): e.enabled for e in store.iter_entries("ncmec")}


def test_a_hash_stays_while_another_source_lists_it(store: SqlBankStore) -> None:
    both = _page(_image(42, "img-1", MD5), _image(7, "img-9", MD5), _image(42, "img-2", OTHER))
    assert store.import_file("ncmec", both, "ncmec").added == 2
    version = store.get_bank("ncmec").version

    # Member 42 deletes its entry; member 7's still lists the hash.
    result = store.import_file("ncmec", _page(_deleted(42, "img-1")), "ncmec")
    assert result.disabled == 0
    assert _state(store) == {MD5: True, OTHER: True}
    assert store.get_bank("ncmec").version == version

    # Member 7 deletes its entry too: no source lists it.
    assert store.import_file("ncmec", _page(_deleted(7, "img-9")), "ncmec").disabled == 1
    assert _state(store) == {MD5: False, OTHER: True}
    assert store.get_bank("ncmec").version != version
    assert all(e.hash.hex() != MD5 for e in store.iter_entries("ncmec", enabled_only=True))

    # A member uploads it again: enabled again, though nothing new was added.
    assert store.import_file("ncmec", _page(_image(3, "img-5", MD5)), "ncmec").added == 0
    assert _state(store) == {MD5: True, OTHER: True}


def test_an_operators_decision_is_not_undone_by_a_list(store: SqlBankStore) -> None:
    store.import_file("ncmec", _page(_image(42, "img-1", MD5), _image(42, "img-2", OTHER)), "ncmec")
    ids = {e.hash.hex(): e.entry_id for e in store.iter_entries("ncmec")}
    assert store.set_enabled("ncmec", [ids[MD5]], False) == 1

    # Withdrawn upstream, then listed again: the operator disabled it, so it stays disabled.
    assert store.import_file("ncmec", _page(_deleted(42, "img-1")), "ncmec").disabled == 0
    store.import_file("ncmec", _page(_image(7, "img-9", MD5)), "ncmec")
    assert _state(store) == {MD5: False, OTHER: True}

    # An entry withdrawn upstream and then disabled by the operator is not enabled by a list.
    assert store.import_file("ncmec", _page(_deleted(42, "img-2")), "ncmec").disabled == 1
    assert store.set_enabled("ncmec", [ids[OTHER]], False) == 1
    store.import_file("ncmec", _page(_image(7, "img-8", OTHER)), "ncmec")
    assert _state(store) == {MD5: False, OTHER: False}


def test_an_entry_reclassified_by_its_own_source_takes_the_new_label(store: SqlBankStore) -> None:
    store.import_file("ncmec", _page(_image(42, "img-1", MD5, "B1")), "ncmec")
    version = store.get_bank("ncmec").version
    # Another member's entry for the same file does not relabel it...
    store.import_file("ncmec", _page(_image(7, "img-9", MD5, "A2")), "ncmec")
    assert [e.label for e in store.iter_entries("ncmec")] == ["B1"]
    assert store.get_bank("ncmec").version == version
    # ...the entry's own source does (NCMEC reclassifies an entry: same id, new class).
    store.import_file("ncmec", _page(_image(42, "img-1", MD5, "A1")), "ncmec")
    assert [e.label for e in store.iter_entries("ncmec")] == ["A1"]
    assert store.get_bank("ncmec").version != version


def test_deleting_a_bank_removes_its_listings(store: SqlBankStore) -> None:
    store.import_file("ncmec", _page(_image(42, "img-1", MD5)), "ncmec")
    store.delete_bank("ncmec")
    store.create_bank("ncmec")
    # The new bank's entry has only its own listing: one deletion disables it.
    store.import_file("ncmec", _page(_image(7, "img-9", MD5)), "ncmec")
    assert store.import_file("ncmec", _page(_deleted(7, "img-9")), "ncmec").disabled == 1


def test_entries_banked_before_the_migration_are_listed_under_their_source(
    tmp_path: Path,
) -> None:
    """Migration 0015 lists every existing entry under its own source, so a deletion upstream
    after the upgrade withdraws it as it would a new one."""
    engine = make_engine(sqlite_url(tmp_path))
    command.upgrade(alembic_config(engine), "0014")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO bank_banks (id, name, threshold, created_at) "
                "VALUES (1, 'ncmec', 31, 0)"
            )
        )
        for n, (source, md5) in enumerate((("ncmec:42/img-1", MD5), ("", OTHER)), start=1):
            conn.execute(
                text(
                    "INSERT INTO bank_entries (id, bank_id, signal_type, hash, hash_key, variant,"
                    " source, label, enabled) VALUES (:i, 1, 'md5', :h, :k, 'original', :s,"
                    " 'A1', 1)"
                ),
                {"i": n, "h": md5, "k": f"key-{n}", "s": source},
            )
    store = SqlBankStore.open_migrated(engine)
    assert store.import_file("ncmec", _page(_deleted(42, "img-1")), "ncmec").disabled == 1
    assert _state(store) == {MD5: False, OTHER: True}
    store.close()
