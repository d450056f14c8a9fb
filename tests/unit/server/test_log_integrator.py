"""The server's log integrates concurrent appends in batches and hands out distinct indexes."""

from __future__ import annotations

import threading
from pathlib import Path

from accord.protocols.translog import merkle
from accord.server.translog import LogService
from accord.storage.db import make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head


def test_concurrent_appends_are_batched(tmp_path: Path) -> None:
    engine = make_engine(sqlite_url(tmp_path))
    upgrade_to_head(engine)
    log = LogService(engine, tmp_path)
    results: dict[int, int] = {}

    def add(i: int) -> None:
        results[i] = log.append([f"entry {i}".encode()])

    threads = [threading.Thread(target=add, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    size, root = log.store.tree_head()
    entries = log.store.entries(0, size)
    for i, index in results.items():
        assert entries[index] == f"entry {i}".encode()
    assert len(set(results.values())) == 40
    assert root == merkle.root_hash([merkle.leaf_hash(e) for e in entries])
    # The first map head at start, then one per batch (K5): the log ends with one.
    heads = [i for i, e in enumerate(entries) if e.startswith(b'{"accounts":')]
    assert heads[0] == 0 and heads[-1] == size - 1 and size == 40 + len(heads)
    # Fewer batches than entries appended: appends were integrated together.
    assert len(heads) - 1 < 40 and log.checkpoints_signed < 40
    assert log.checkpoint().splitlines()[1] == str(size)
    engine.dispose()
