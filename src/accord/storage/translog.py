"""Durable storage of the transparency log: entries and Merkle node hashes, on SQLAlchemy.

Layout (the tables are defined here and only here; migrations import `metadata`):

- ``tlog_entries(idx, data)``: the logged entries, one row per leaf.
- ``tlog_nodes(id, hash)``: the hash of every complete, aligned subtree of the RFC 9162 tree:
  node ``(level, idx)`` covers leaves ``[idx * 2**level, (idx + 1) * 2**level)`` and is stored
  under ``id = node_key(level, idx)`` (its in-order position). Level 0 holds the leaf hashes.
  A node is written once, when its last leaf is appended, and never changes, so any node read
  back can be cached forever.
- ``tlog_state(id, size)``: one row with the tree size; updating it first serialises appenders
  (a row lock on PostgreSQL, the write lock on SQLite).

Roots and proofs for any size up to the current one need only O(log n) nodes, fetched in one
query (`merkle.root_nodes`, `merkle.inclusion_proof_nodes`, `merkle.consistency_proof_nodes`),
so the store serves trees of tens of millions of entries without reading leaves. Appending a
batch reads the frontier (at most 64 nodes), hashes the batch, and inserts the entries and the
about 2n new nodes in the same transaction.

Works on SQLite and PostgreSQL (sync engine). For SQLite use `create_sqlite_engine`, which sets
WAL and ``synchronous=FULL``: a log must never lose an appended batch it may have signed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from accord.errors import Conflict, InvalidInput, NotFound
from accord.protocols.translog import merkle
from accord.protocols.translog.merkle import NodeId

MAX_ENTRY_BYTES = 64 * 1024
"""Largest single log entry accepted."""

MAX_BATCH_ENTRIES = 1_000_000
"""Most entries appended in one transaction."""

MAX_ENTRIES_PER_READ = 10_000
"""Most entries returned by one `TransparencyLogStore.entries` call."""

MAX_LOG_SIZE = 2**62
"""Largest log this store holds: node keys (see `node_key`) stay below 2**63."""

NODE_CACHE_MIN_LEVEL = 6
"""Nodes at this level and above are cached in memory once read (they never change)."""

NODE_CACHE_MAX_NODES = 1 << 18
"""Bound on the node cache (about 20 MB); it is emptied when full."""

RANGE_CACHE_MAX_RANGES = 1 << 12
"""Bound on the cache of folded range hashes (a proof's right-edge ranges: about 64 a size),
emptied when full."""

_STATE_ID = 1

metadata = MetaData()

# SQLite: INTEGER PRIMARY KEY makes idx the rowid (no separate index); BIGINT elsewhere.
_Index = BigInteger().with_variant(Integer(), "sqlite")

tlog_state = Table(
    "tlog_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

tlog_entries = Table(
    "tlog_entries",
    metadata,
    Column("idx", _Index, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

tlog_nodes = Table(
    "tlog_nodes",
    metadata,
    # node_key(NodeId(level, idx)): the in-order position of the node, see `node_key`.
    Column("id", _Index, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(merkle.HASH_SIZE_BYTES), nullable=False),
)


def node_key(node: NodeId) -> int:
    """The primary key of a node: its in-order position in the complete binary tree.

    Node ``(level, idx)`` gets ``idx * 2**(level + 1) + 2**level - 1``: leaves are the even
    numbers, every key is below twice the tree size, and keys of new nodes grow with the log
    (appends go to the end of the index). One integer key lets a proof's nodes be fetched with
    a plain ``IN`` list, which both SQLite and PostgreSQL answer from the primary key.
    """
    return (node.idx << (node.level + 1)) + (1 << node.level) - 1


# Key transparency (docs/protocol/transparency.md §8; `accord.storage.key_directory`): the
# current state of every account in the map, and where each version of it sits in the log.
kt_accounts = Table(
    "kt_accounts",
    metadata,
    Column("search_key", LargeBinary(32), primary_key=True),
    Column("account", String(64), nullable=False, unique=True),
    Column("state", LargeBinary, nullable=False),  # canonical `AccountState` bytes
)

kt_versions = Table(
    "kt_versions",
    metadata,
    Column("account", String(64), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, nullable=False),
)

kt_state = Table(
    "kt_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("applied_size", BigInteger, nullable=False),  # log entries the map has taken in
)

TABLES = (tlog_state, tlog_entries, tlog_nodes, kt_accounts, kt_versions, kt_state)


def create_tables(engine: Engine) -> None:
    """Create the ``tlog_*`` tables if missing, and the state row."""
    metadata.create_all(engine, tables=list(TABLES))
    _ensure_state_row(engine)


def _ensure_state_row(engine: Engine) -> None:
    with engine.begin() as conn:
        exists = conn.execute(select(tlog_state.c.id).where(tlog_state.c.id == _STATE_ID))
        if exists.first() is not None:
            return
    try:
        with engine.begin() as conn:
            conn.execute(insert(tlog_state).values(id=_STATE_ID, size=0))
    except IntegrityError:
        pass  # another process created it first


def create_sqlite_engine(path: str | Path, *, synchronous: str = "FULL") -> Engine:
    """A SQLite engine for the log: WAL journal, ``synchronous`` (FULL by default)."""
    if synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise InvalidInput("synchronous must be FULL, NORMAL or EXTRA")
    engine = create_engine(f"sqlite:///{path}", connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return engine


_select_size = select(tlog_state.c.size).where(tlog_state.c.id == _STATE_ID)


class TransparencyLogStore:
    """An append-only RFC 9162 Merkle log in SQL tables (see the module docstring).

    Thread-safe; several processes may share one database (appends serialise on the state row).
    """

    def __init__(self, engine: Engine, *, create: bool = False) -> None:
        self._engine = engine
        if create:
            create_tables(engine)
        else:
            _ensure_state_row(engine)
        self._cache: dict[NodeId, bytes] = {}
        self._cache_lock = threading.Lock()
        # MTH of leaf ranges [start, end) that are not one stored node (those along a tree's
        # right edge); like nodes, a range's hash never changes once its leaves exist.
        self._range_cache: dict[tuple[int, int], bytes] = {}
        self._select_sql_cache: dict[int, str] = {}
        paramstyle = engine.dialect.paramstyle
        if paramstyle == "qmark":
            self._placeholder = "?"
        elif paramstyle in ("format", "pyformat"):
            self._placeholder = "%s"
        else:  # pragma: no cover - sqlite and psycopg use the two above
            raise InvalidInput(f"unsupported DB-API parameter style {paramstyle}")
        mark = self._placeholder
        modulo = "%%" if mark == "%s" else "%"  # a literal % beside format-style parameters
        # Leaves have the even keys (`node_key`); as driver SQL, like `_select_sql`.
        self._leaf_range_sql = (
            f"SELECT hash FROM {tlog_nodes.name} WHERE id >= {mark} AND id <= {mark} "  # noqa: S608
            f"AND id {modulo} 2 = 0 ORDER BY id"
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    # ---------------------------------------------------------------------------------------
    # Writing

    def append_batch(
        self,
        entries: Sequence[bytes],
        *,
        expected_first: int | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> int:
        """Append entries in one transaction; returns the index of the first one.

        The new leaves and every subtree they complete are stored before the commit, so a root
        or proof at the new size can be served as soon as this returns. With `expected_first`,
        the batch is refused (`Conflict`) unless it lands at that index; `also` runs in the
        same transaction (the key directory's rows).
        """
        count = len(entries)
        if count == 0:
            raise InvalidInput("empty batch")
        if count > MAX_BATCH_ENTRIES:
            raise InvalidInput("batch too large")
        leaf_hashes = []
        for entry in entries:
            if not isinstance(entry, bytes) or len(entry) > MAX_ENTRY_BYTES:
                raise InvalidInput("log entry must be bytes of at most MAX_ENTRY_BYTES")
            leaf_hashes.append(merkle.leaf_hash(entry))
        with self._engine.begin() as conn:
            # Reserve the indexes first: this takes the lock that serialises appenders.
            conn.execute(
                update(tlog_state)
                .where(tlog_state.c.id == _STATE_ID)
                .values(size=tlog_state.c.size + count)
            )
            new_size: int = conn.execute(_select_size).scalar_one()
            first = new_size - count
            if new_size > MAX_LOG_SIZE:
                raise InvalidInput("log is full")
            if expected_first is not None and first != expected_first:
                raise Conflict("another writer appended to the log")
            frontier_ids = merkle.frontier_nodes(first)
            frontier = self._fetch_nodes(conn, frontier_ids, use_cache=False)
            size, _, created = merkle.append_leaves(
                first, [frontier[n] for n in frontier_ids], leaf_hashes
            )
            if size != new_size:  # pragma: no cover - append_leaves counts the same leaves
                raise InvalidInput("log size mismatch")
            conn.execute(
                insert(tlog_entries),
                [{"idx": first + i, "data": e} for i, e in enumerate(entries)],
            )
            conn.execute(insert(tlog_nodes), [{"id": node_key(n), "hash": h} for n, h in created])
            if also is not None:
                also(conn)
        return first

    # ---------------------------------------------------------------------------------------
    # Reading

    def size(self) -> int:
        with self._engine.connect() as conn:
            size: int = conn.execute(_select_size).scalar_one()
            return size

    def tree_head(self) -> tuple[int, bytes]:
        """The current (size, root), read in one transaction."""
        with self._engine.begin() as conn:
            size = int(conn.execute(_select_size).scalar_one())
            return size, self._root(conn, size)

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` entries (any size up to the current one)."""
        with self._engine.connect() as conn:
            return self._root(conn, size)

    def _root(self, conn: Connection, size: int) -> bytes:
        nodes = merkle.root_nodes(size)
        if not nodes:
            return merkle.EMPTY_ROOT
        hashes = self._fetch_nodes(conn, nodes)
        return merkle.fold_range([hashes[n] for n in nodes])

    def leaf_hash(self, index: int) -> bytes:
        node = NodeId(0, _check_index(index))
        with self._engine.connect() as conn:
            return self._fetch_nodes(conn, [node])[node]

    def leaf_hashes(self, start: int, end: int) -> list[bytes]:
        """The leaf hashes of entries ``[start, end)`` (at most `MAX_ENTRIES_PER_READ`), from
        one range scan of the primary key: the leaves' keys are the even ones in
        ``[node_key(start), node_key(end - 1)]``, between them the nodes they complete."""
        _check_index(start)
        _check_index(end)
        if end <= start or end - start > MAX_ENTRIES_PER_READ:
            raise InvalidInput("leaf range is empty or too long")
        low, high = node_key(NodeId(0, start)), node_key(NodeId(0, end - 1))
        with self._engine.connect() as conn:
            rows = conn.exec_driver_sql(self._leaf_range_sql, (low, high)).fetchall()
        hashes = [bytes(h) for (h,) in rows]
        if len(hashes) != end - start:
            raise NotFound("leaves beyond the end of the log")
        return hashes

    def subtree_hashes(self, nodes: Sequence[NodeId]) -> list[bytes]:
        """The hashes of complete, aligned subtrees (e.g. a tlog-tiles tile's 256), in order;
        `NotFound` if one lies beyond the end of the log."""
        with self._engine.connect() as conn:
            hashes = self._fetch_nodes(conn, nodes)
        return [hashes[node] for node in nodes]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``size`` entries."""
        return self._proof(merkle.inclusion_proof_ranges(index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof between two sizes (0 < old_size <= new_size)."""
        return self._proof(merkle.consistency_proof_ranges(old_size, new_size))

    def _proof(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The MTH of each range, from its stored nodes fetched in one query. Every range of a
        proof but those ending at the tree's right edge is one complete subtree, so one node;
        the others fold several nodes and recur in every proof at that size, so their folded
        hashes are kept (`RANGE_CACHE_MAX_RANGES`)."""
        plan: list[NodeId | bytes | list[NodeId]] = []
        wanted: list[NodeId] = []
        for start, end in ranges:
            if (folded := self._range_cache.get((start, end))) is not None:
                plan.append(folded)
                continue
            nodes = merkle.range_nodes(start, end)  # refuses a range of another shape
            plan.append(nodes[0] if len(nodes) == 1 else nodes)
            wanted.extend(nodes)
        hashes = self._fetch_nodes(None, wanted) if wanted else {}
        proof: list[bytes] = []
        for span, step in zip(ranges, plan, strict=True):
            if isinstance(step, bytes):
                proof.append(step)
            elif isinstance(step, NodeId):
                proof.append(hashes[step])
            else:
                folded = merkle.fold_range([hashes[node] for node in step])
                self._remember_range(span, folded)
                proof.append(folded)
        return proof

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)``, at most `MAX_ENTRIES_PER_READ` at a time."""
        _check_index(start)
        _check_index(end)
        if end <= start or end - start > MAX_ENTRIES_PER_READ:
            raise InvalidInput("entry range is empty or too long")
        query = (
            select(tlog_entries.c.data)
            .where(tlog_entries.c.idx >= start, tlog_entries.c.idx < end)
            .order_by(tlog_entries.c.idx)
        )
        with self._engine.connect() as conn:
            rows = [bytes(r) for r in conn.execute(query).scalars()]
        if len(rows) != end - start:
            raise NotFound("entries beyond the end of the log")
        return rows

    def entries_at(self, indexes: Sequence[int]) -> dict[int, bytes]:
        """The entries at `indexes` (at most `MAX_ENTRIES_PER_READ`)."""
        wanted = sorted({_check_index(i) for i in indexes})
        if len(wanted) > MAX_ENTRIES_PER_READ:
            raise InvalidInput("too many entries asked for")
        if not wanted:
            return {}
        query = select(tlog_entries.c.idx, tlog_entries.c.data).where(
            tlog_entries.c.idx.in_(wanted)
        )
        with self._engine.connect() as conn:
            found = {int(i): bytes(d) for i, d in conn.execute(query).all()}
        if len(found) != len(wanted):
            raise NotFound("entries beyond the end of the log")
        return found

    # ---------------------------------------------------------------------------------------

    def _fetch_nodes(
        self, conn: Connection | None, nodes: Sequence[NodeId], *, use_cache: bool = True
    ) -> dict[NodeId, bytes]:
        """The nodes' hashes, those not cached in one query: on `conn`, or with None on a
        pooled connection of its own (`_select_nodes`)."""
        found: dict[NodeId, bytes] = {}
        missing: list[NodeId] = []
        for node in nodes:
            cached = self._cache.get(node) if use_cache else None
            if cached is None:
                missing.append(node)
            else:
                found[node] = cached
        if missing:
            keys = {node_key(n): n for n in missing}
            fetched = {
                keys[key]: bytes(value) for key, value in self._select_nodes(conn, tuple(keys))
            }
            if len(fetched) != len(keys):
                # Every requested node lies inside [0, size); one is missing only when the
                # size is beyond the end of the log.
                raise NotFound("tree size beyond the end of the log")
            found.update(fetched)
            if use_cache:
                self._remember(fetched)
        return found

    def _select_nodes(self, conn: Connection | None, keys: tuple[int, ...]) -> list[Any]:
        """The (id, hash) rows of the nodes with these keys. Without `conn` (the proofs' read
        path), on the driver's cursor of a pooled connection: SQLAlchemy's execution context
        costs more than the query. Its errors become SQLAlchemy's, as `exec_driver_sql` makes
        them (a lost connection is dropped from the pool)."""
        sql = self._select_sql(len(keys))
        if conn is not None:
            return list(conn.exec_driver_sql(sql, keys).fetchall())
        dialect = self._engine.dialect
        raw = self._engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute(sql, keys)
                return list(cursor.fetchall())
            except dialect.loaded_dbapi.Error as exc:
                if dialect.is_disconnect(exc, raw.dbapi_connection, cursor):
                    raw.invalidate(exc)
                raise DBAPIError.instance(sql, keys, exc, dialect.loaded_dbapi.Error) from exc
            finally:
                cursor.close()
        finally:
            raw.close()

    def _select_sql(self, count: int) -> str:
        """``SELECT id, hash FROM tlog_nodes WHERE id IN (...)`` for ``count`` keys, as driver
        SQL: the hot read path skips SQLAlchemy's statement compilation."""
        sql = self._select_sql_cache.get(count)
        if sql is None:
            marks = ", ".join([self._placeholder] * count)
            sql = f"SELECT id, hash FROM {tlog_nodes.name} WHERE id IN ({marks})"  # noqa: S608
            self._select_sql_cache[count] = sql
        return sql

    def _remember_range(self, span: tuple[int, int], folded: bytes) -> None:
        with self._cache_lock:
            if len(self._range_cache) >= RANGE_CACHE_MAX_RANGES:
                self._range_cache = {}
            self._range_cache[span] = folded

    def _remember(self, nodes: dict[NodeId, bytes]) -> None:
        keep = {n: h for n, h in nodes.items() if n.level >= NODE_CACHE_MIN_LEVEL}
        if not keep:
            return
        with self._cache_lock:
            if len(self._cache) + len(keep) > NODE_CACHE_MAX_NODES:
                self._cache = {}
            self._cache.update(keep)


def _check_index(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LOG_SIZE:
        raise InvalidInput("index out of range")
    return value
