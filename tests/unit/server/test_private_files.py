"""`secure_data_dir`: a data directory left looser by an earlier run is tightened, and logged."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from accord.server.private_files import secure_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_data_directory_is_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "new" / "data"
    assert secure_data_dir(data_dir) == 0
    assert _mode(data_dir) == 0o700


def test_looser_modes_are_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "blobs" / "ab").mkdir(parents=True)
    (data_dir / "accord.db").write_bytes(b"db")
    (data_dir / "blobs" / "ab" / "blob").write_bytes(b"x")
    (data_dir / "admin-token").write_text("t")
    outside = tmp_path / "outside"
    outside.write_text("not ours")
    (data_dir / "link").symlink_to(outside)
    for path, mode in [
        (data_dir, 0o755),
        (data_dir / "blobs", 0o775),
        (data_dir / "blobs" / "ab", 0o755),
        (data_dir / "accord.db", 0o644),
        (data_dir / "blobs" / "ab" / "blob", 0o664),
        (data_dir / "admin-token", 0o600),
        (outside, 0o644),
    ]:
        os.chmod(path, mode)

    with caplog.at_level(logging.WARNING, logger="accord.server"):
        assert secure_data_dir(data_dir) == 5
    assert "5 paths were readable by others" in caplog.text
    assert str(outside) not in caplog.text
    for d in [data_dir, data_dir / "blobs", data_dir / "blobs" / "ab"]:
        assert _mode(d) == 0o700
    for f in [data_dir / "accord.db", data_dir / "blobs" / "ab" / "blob", data_dir / "admin-token"]:
        assert _mode(f) == 0o600
    assert _mode(outside) == 0o644  # a link's target is left alone

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="accord.server"):
        assert secure_data_dir(data_dir) == 0
    assert caplog.text == ""
