"""The durable Merkle log store on SQLite and PostgreSQL, checked against the pure functions.

PostgreSQL: the server at ACCORD_TEST_PG_URL (default postgresql://postgres@127.0.0.1:5432/test)
gets one uniquely named database for this module, dropped at the end. If it is unreachable the
PostgreSQL cases are skipped, unless ACCORD_REQUIRE_POSTGRES=1, which makes them fail.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from accord.errors import InvalidInput, NotFound
from accord.protocols.translog import merkle
from accord.storage import translog as store_mod
from accord.storage.translog import TransparencyLogStore, create_sqlite_engine, create_tables

PG_ADMIN_URL = os.environ.get("ACCORD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
if PG_ADMIN_URL.startswith("postgresql://"):  # a libpq URL: use the psycopg 3 driver
    PG_ADMIN_URL = "postgresql+psycopg://" + PG_ADMIN_URL.removeprefix("postgresql://")
MAX_LEAVES = 1500


def entry(i: int) -> bytes:
    return b"entry-%d" % i


@cache
def leaf_hashes() -> tuple[bytes, ...]:
    return tuple(merkle.leaf_hash(entry(i)) for i in range(MAX_LEAVES))


@cache
def root(size: int) -> bytes:
    return merkle.root_hash(leaf_hashes()[:size])


@pytest.fixture(scope="module")
def tlog_pg_url() -> Iterator[str]:
    url = make_url(PG_ADMIN_URL)
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"accord_tlog_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        admin.dispose()
        message = f"PostgreSQL not reachable at {url.render_as_string()}: {type(exc).__name__}"
        if os.environ.get("ACCORD_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def tlog_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        eng = create_sqlite_engine(tmp_path / "log.db")
    else:
        eng = create_engine(request.getfixturevalue("tlog_pg_url"))
        store_mod.metadata.drop_all(eng)
    create_tables(eng)
    yield eng
    if request.param == "postgresql":
        store_mod.metadata.drop_all(eng)
    eng.dispose()


def append_in_batches(store: TransparencyLogStore, target: int, rng: random.Random) -> None:
    size = store.size()
    while size < target:
        n = min(rng.choice([1, 1, 2, 3, 7, 64, 200]), target - size)
        assert store.append_batch([entry(i) for i in range(size, size + n)]) == size
        size += n


def test_store_matches_pure_functions(tlog_engine: Engine) -> None:
    rng = random.Random(1234)
    store = TransparencyLogStore(tlog_engine)
    assert store.size() == 0
    assert store.root(0) == merkle.EMPTY_ROOT
    assert store.tree_head() == (0, merkle.EMPTY_ROOT)
    checkpoints = sorted(rng.sample(range(1, MAX_LEAVES + 1), 6)) + [MAX_LEAVES]
    for size in checkpoints:
        append_in_batches(store, size, rng)
        assert store.size() == size
        assert store.tree_head() == (size, root(size))
        # Roots and proofs at this size and at random earlier sizes.
        for tree_size in {size, *rng.sample(range(1, size + 1), min(size, 4))}:
            assert store.root(tree_size) == root(tree_size)
            leaves = leaf_hashes()[:tree_size]
            for index in {0, tree_size - 1, *rng.sample(range(tree_size), min(tree_size, 5))}:
                proof = store.inclusion_proof(index, tree_size)
                assert proof == merkle.inclusion_proof(leaves, index)
                merkle.verify_inclusion(
                    store.leaf_hash(index), index, tree_size, proof, root(tree_size)
                )
            for old in {1, tree_size, *rng.sample(range(1, tree_size + 1), min(tree_size, 5))}:
                proof = store.consistency_proof(old, tree_size)
                assert proof == merkle.consistency_proof(leaves, old)
                merkle.verify_consistency(old, tree_size, root(old), root(tree_size), proof)
    assert store.entries(0, 3) == [entry(0), entry(1), entry(2)]
    assert store.entries(MAX_LEAVES - 1, MAX_LEAVES) == [entry(MAX_LEAVES - 1)]
    # Leaf hashes by range (level-0 tiles) and node hashes by list (higher tiles).
    for start, end in ((0, MAX_LEAVES), (1, 2), (5, 37), (MAX_LEAVES - 1, MAX_LEAVES)):
        assert store.leaf_hashes(start, end) == list(leaf_hashes()[start:end])
    with pytest.raises(NotFound):
        store.leaf_hashes(MAX_LEAVES - 1, MAX_LEAVES + 1)
    nodes = [merkle.NodeId(2, 0), merkle.NodeId(0, 3), merkle.NodeId(1, 1)]
    assert store.subtree_hashes(nodes) == [store.root(4), leaf_hashes()[3], _pair(2)]


def _pair(first: int) -> bytes:
    return merkle.node_hash(leaf_hashes()[first], leaf_hashes()[first + 1])


def test_every_size_small_tree(tlog_engine: Engine) -> None:
    """Exhaustive over a small tree, one leaf per append (exercises every frontier shape)."""
    store = TransparencyLogStore(tlog_engine)
    for size in range(1, 34):
        store.append_batch([entry(size - 1)])
        assert store.root(size) == root(size)
    leaves = leaf_hashes()[:33]
    for size in range(1, 34):
        for index in range(size):
            assert store.inclusion_proof(index, size) == merkle.inclusion_proof(
                leaves[:size], index
            )
        for old in range(1, size + 1):
            assert store.consistency_proof(old, size) == merkle.consistency_proof(
                leaves[:size], old
            )


def test_out_of_range_requests(tlog_engine: Engine) -> None:
    store = TransparencyLogStore(tlog_engine)
    store.append_batch([entry(i) for i in range(10)])
    with pytest.raises(NotFound):
        store.root(11)
    with pytest.raises(NotFound):
        store.inclusion_proof(3, 11)
    with pytest.raises(NotFound):
        store.consistency_proof(5, 12)
    with pytest.raises(NotFound):
        store.leaf_hash(10)
    with pytest.raises(NotFound):
        store.entries(8, 12)
    with pytest.raises(InvalidInput):
        store.inclusion_proof(10, 10)
    with pytest.raises(InvalidInput):
        store.consistency_proof(0, 10)
    with pytest.raises(InvalidInput):
        store.entries(5, 5)
    with pytest.raises(InvalidInput):
        store.entries(0, store_mod.MAX_ENTRIES_PER_READ + 1)
    with pytest.raises(InvalidInput):
        store.append_batch([])
    with pytest.raises(InvalidInput):
        store.append_batch([b"x" * (store_mod.MAX_ENTRY_BYTES + 1)])
    with pytest.raises(InvalidInput):
        store.append_batch(["not bytes"])  # type: ignore[list-item]
    # A refused batch changes nothing.
    assert store.tree_head() == (10, root(10))


def test_concurrent_appenders_serialise(tlog_engine: Engine) -> None:
    """Two stores (as two server processes would) appending at once: no index is lost or
    reused, and the result is one consistent tree."""
    stores = [TransparencyLogStore(tlog_engine), TransparencyLogStore(tlog_engine)]
    firsts: list[tuple[int, list[bytes]]] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for batch in range(10):
                items = [b"w%d-b%d-%d" % (worker, batch, k) for k in range(1 + batch % 4)]
                first = stores[worker % 2].append_batch(items)
                with lock:
                    firsts.append((first, items))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ordered: list[bytes] = []
    for first, items in sorted(firsts):
        assert first == len(ordered)
        ordered.extend(items)
    size = len(ordered)
    leaves = [merkle.leaf_hash(e) for e in ordered]
    assert stores[0].tree_head() == (size, merkle.root_hash(leaves))
    assert stores[1].entries(0, size) == ordered
    assert stores[1].consistency_proof(3, size) == merkle.consistency_proof(leaves, 3)


def test_state_survives_a_new_store_and_a_new_engine(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    first = TransparencyLogStore(create_sqlite_engine(path), create=True)
    first.append_batch([entry(i) for i in range(100)])
    first.engine.dispose()
    again = TransparencyLogStore(create_sqlite_engine(path))
    assert again.tree_head() == (100, root(100))
    again.append_batch([entry(i) for i in range(100, 150)])
    assert again.root(150) == root(150)


def test_a_database_error_while_reading_a_proof_is_sqlalchemys(tmp_path: Path) -> None:
    """Proofs read the nodes on the driver's cursor; a failure there still arrives as
    SQLAlchemy's error (the server answers `OperationalError` with a 503 to retry)."""
    store = TransparencyLogStore(create_sqlite_engine(tmp_path / "log.db"), create=True)
    store.append_batch([entry(i) for i in range(10)])
    assert store.inclusion_proof(3, 10) == merkle.inclusion_proof(leaf_hashes()[:10], 3)
    with store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE tlog_nodes RENAME TO tlog_nodes_gone"))
    with pytest.raises(OperationalError):
        store.inclusion_proof(4, 10)


def test_node_keys_are_distinct_and_ordered() -> None:
    keys = {}
    for level in range(9):
        for idx in range(256 >> level):
            key = store_mod.node_key(merkle.NodeId(level, idx))
            assert key not in keys
            keys[key] = (level, idx)
    # In-order numbering: every key below 2 * 256, leaves on the even numbers.
    assert sorted(keys) == list(range(511))
    assert all(keys[k][0] == 0 for k in keys if k % 2 == 0)
