"""A download races the blob collector: the server opens a blob before it answers, so the
collector removing it meanwhile neither cuts the download off (the open file reads to its end)
nor turns it into a broken connection; a blob already removed is a plain NotFound."""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.errors import NotFound
from accord.server.blobs import FileBlobStore

BLOB_ID = "ysVJKBFN-cUb1e9EFn-GSPSiI84BWfMi"


def _stored(root: Path, data: bytes) -> FileBlobStore:
    store = FileBlobStore(root)
    (root / BLOB_ID[:2]).mkdir()
    (root / BLOB_ID[:2] / BLOB_ID).write_bytes(data)
    return store


def test_an_open_blob_reads_to_its_end_after_the_collector_removes_it(tmp_path: Path) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB: more than one chunk of a download
    store = _stored(tmp_path, data)
    with store.open(BLOB_ID) as f:
        first = f.read(1 << 20)
        store.remove(BLOB_ID)
        assert first + f.read() == data
    with pytest.raises(NotFound):
        store.open(BLOB_ID)


def test_a_malformed_id_is_not_found_without_touching_the_disk(tmp_path: Path) -> None:
    (tmp_path / "outside").write_bytes(b"not a blob")
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(NotFound):
        store.open("../outside-of-the-store-dir")
