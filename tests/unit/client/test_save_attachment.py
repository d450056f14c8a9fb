"""Saving a received attachment out of the home: never replacing a file, never leaving the
chosen folder, readable by this user only."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from accord.client.attachments import save_attachment
from accord.client.received import ReceivedAttachment
from accord.errors import InvalidInput


def _kept(tmp_path: Path, name: str, data: bytes) -> ReceivedAttachment:
    kept = tmp_path / "home" / "kept.bin"
    kept.parent.mkdir(exist_ok=True)
    kept.write_bytes(data)
    return ReceivedAttachment(name=name, size=len(data), sha256="", path=str(kept))


def test_into_a_folder_under_a_safe_name_never_replacing(tmp_path: Path) -> None:
    attachment = _kept(tmp_path, "../../[b]x\x1b.txt", b"data")
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / "_b_x_.txt").write_bytes(b"someone else's")
    first = save_attachment(attachment, folder)
    second = save_attachment(attachment, folder)
    assert (first.name, second.name) == ("_b_x_ (2).txt", "_b_x_ (3).txt")
    assert first.parent == second.parent == folder
    assert (folder / "_b_x_.txt").read_bytes() == b"someone else's"
    assert first.read_bytes() == second.read_bytes() == b"data"
    assert stat.S_IMODE(first.stat().st_mode) == 0o600


def test_to_a_path_as_named(tmp_path: Path) -> None:
    attachment = _kept(tmp_path, "photo.jpg", b"jpeg")
    dest = tmp_path / "holiday.jpg"
    assert save_attachment(attachment, dest) == dest
    assert save_attachment(attachment, dest) == tmp_path / "holiday (2).jpg"


def test_an_attachment_this_device_sent_has_no_copy_to_save(tmp_path: Path) -> None:
    sent = ReceivedAttachment(name="a.txt", size=1, sha256="", path="")
    with pytest.raises(InvalidInput):
        save_attachment(sent, tmp_path)
