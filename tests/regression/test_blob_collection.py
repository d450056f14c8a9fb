"""Issue 15, finding 5: uploaded attachment blobs were never collected (and a suspended account
could go on uploading). The server's housekeeping now removes what no one needs, on the
injected clock, and counts it in /metrics (`accord_blobs_collected`), on SQLite and PostgreSQL:

- an upload no message names goes a day after upload; a blob a queued message carries stays;
- once every device fetched the message, its blob goes after the retention period;
- what a suspended account uploaded goes at once (it can no longer send it).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from accord.client.client import AccordClient
from accord.errors import NotFound
from accord.server.blobs import BLOB_RETENTION_S, BLOB_UNSENT_TTL_S
from accord.storage.schema import accounts, message_blobs
from accord_testing import eventually, server_database

pytestmark = pytest.mark.timeout(300)

# Housekeeping (what the moved clock made due) runs every 0.2 s instead of every 5.
SERVER_ENV = {"ACCORD_HOUSEKEEPING_INTERVAL": "0.2"}


def _upload(client: AccordClient, path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(client.api.upload_blob(path, hashlib.sha256(data).digest())["blob_id"])


def _on_server(client: AccordClient, blob_id: str, tmp_path: Path) -> bool:
    try:
        client.api.download_blob(blob_id, tmp_path / "probe", 1 << 20)
    except NotFound:
        return False
    return True


def _collected(server: Any, reason: str) -> float:
    metrics = httpx.get(
        f"{server.url}/metrics", headers={"Authorization": f"Bearer {server.admin_token()}"}
    ).text
    found = re.search(rf'^accord_blobs_collected_total{{reason="{reason}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def _carried_blobs(server: Any) -> set[str]:
    with server_database(server) as engine, engine.connect() as conn:
        return set(conn.execute(select(message_blobs.c.blob_id)).scalars())


def test_an_unreferenced_upload_is_collected_and_a_referenced_one_is_not(  # type: ignore[no-untyped-def]
    server, pair, tmp_path
) -> None:
    alice, bob = pair
    before = _carried_blobs(server)
    photo = tmp_path / "photo.bin"
    photo.write_bytes(b"a photo, as far as the server knows" * 100)
    alice.send(bob.account_name, "with an attachment", attachments=[photo])
    (carried,) = _carried_blobs(server) - before
    unsent = _upload(alice, tmp_path / "stray.bin", b"uploaded, never sent" * 50)
    unsent_before = _collected(server, "unsent")

    server.clock.advance(BLOB_UNSENT_TTL_S + 1)
    eventually(lambda: not _on_server(alice, unsent, tmp_path), "the unsent upload collected")
    assert _collected(server, "unsent") >= unsent_before + 1
    assert _on_server(bob, carried, tmp_path), "a blob a queued message carries stays"

    (got,) = bob.receive().messages
    assert got.text == "with an attachment"
    assert Path(got.attachments[0].path).read_bytes() == photo.read_bytes()
    server.clock.advance(BLOB_RETENTION_S - BLOB_UNSENT_TTL_S)
    eventually(lambda: not _on_server(bob, carried, tmp_path), "the delivered blob collected")
    assert _collected(server, "delivered") >= 1


def test_what_a_suspended_account_uploaded_is_collected_at_once(  # type: ignore[no-untyped-def]
    server, pair, tmp_path
) -> None:
    alice, _bob = pair
    blob = _upload(alice, tmp_path / "stray.bin", b"uploaded before the suspension" * 50)
    with server_database(server) as engine, engine.begin() as conn:
        conn.execute(
            update(accounts).where(accounts.c.name == alice.account_name).values(suspended=True)
        )
    eventually(lambda: not _on_server(alice, blob, tmp_path), "the suspended account's upload")
    assert _collected(server, "suspended") >= 1
