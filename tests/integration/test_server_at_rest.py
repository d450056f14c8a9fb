"""The server at rest: what a copy of its database or of its data directory gives away
(docs/threat-model.md, "server at rest").

Found by a red team: the franking keys sat in the database in plain form, so whoever read the
database (a copy of the SQLite file, a PostgreSQL dump, a backup) could tag a rewritten message
and have it filed as "Verified sender: alice"; and the server's files were readable by every
user of the machine. Now the keys are sealed under a secrets key kept outside the database, and
the data directory is private whatever umask the server was started with.

One server per database kind for the module, started under umask 0o022 (the usual default);
every test has its own accounts and looks only at its own rows.
"""

from __future__ import annotations

import base64
import os
import secrets
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from accord.client.client import AccordClient
from accord.protocols.franking import (
    SERVER_KEY_BYTES,
    FrankingKey,
    TagContext,
    commit_message,
    conversation_label,
    tag_commitment,
)
from accord.server.secrets import FileSecretsKey
from accord.wire.franking import franked_message, franking_key_of
from accord.wire.reports import ReportedMessage

PASS = "test passphrase"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", autouse=True)
def _loose_umask() -> Iterator[None]:
    """The module's servers start under umask 0o022 (autouse: set before `server` starts)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _evidence(pair, text: str, attachments: list[Path] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    alice, bob = pair
    alice.send(bob.account_name, text, attachments or [])
    (message,) = bob.receive().messages
    assert message.evidence is not None
    return message.evidence.model_dump(mode="json")


def _file(client: AccordClient, evidence: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        client.api.base_url + "/v1/reports",
        json={"message": evidence},
        headers={"Authorization": f"Bearer {client._token(False)}"},
        timeout=30,
    )


def _stored_franking_key(server, tmp_path: Path, key_id: str) -> bytes:  # type: ignore[no-untyped-def]
    """The franking key row as a dishonest reader gets it: from a copy of the SQLite file, or
    straight from PostgreSQL's rows (what a dump holds)."""
    if server.db_url is None:
        copy = tmp_path / "stolen.db"
        live = sqlite3.connect(f"file:{server.data_dir / 'accord.db'}?mode=ro", uri=True)
        with sqlite3.connect(copy) as dst:
            live.backup(dst)
        live.close()
        with sqlite3.connect(copy) as conn:
            row = conn.execute(
                "SELECT secret FROM franking_keys WHERE key_id = ?", (key_id,)
            ).fetchone()
    else:
        import psycopg

        with psycopg.connect(server.db_url) as conn:
            row = conn.execute(
                "SELECT secret FROM franking_keys WHERE key_id = %s", (key_id,)
            ).fetchone()
    assert row is not None
    return bytes(row[0])


def _forge(evidence: dict[str, Any], server_key: bytes, text: str) -> dict[str, Any]:
    """The message rewritten to `text`, recommitted with its own franking key, and tagged with
    `server_key` as the server would have tagged it."""
    message = ReportedMessage.model_validate(evidence)
    content = message.content.model_copy(update={"text": text})
    commitment = commit_message(FrankingKey(franking_key_of(content)), franked_message(content))
    context = TagContext(
        sender_account=message.sender.account,
        sender_device=message.sender.device_id,
        conversation=conversation_label(message.to.account, message.to.group),
        accepted_at_ms=message.received_at,
        message_id=content.message_id,
    )
    tag = tag_commitment(server_key, commitment, context)
    forged = message.model_copy(
        update={
            "content": content,
            "franking": message.franking.model_copy(
                update={
                    "commitment": base64.b64encode(commitment).decode(),
                    "tag": base64.b64encode(tag).decode(),
                }
            ),
        }
    )
    return forged.model_dump(mode="json")


def test_a_database_copy_alone_cannot_forge_a_verified_report(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    alice, bob = pair
    evidence = _evidence(pair, "see you at noon")
    stored = _stored_franking_key(server, tmp_path, evidence["franking"]["key_id"])
    assert len(stored) > SERVER_KEY_BYTES  # sealed, not the key itself

    # Every 32-byte window of the stored value is tried as the key: none tags a rewritten
    # message the server accepts.
    for start in range(len(stored) - SERVER_KEY_BYTES + 1):
        forged = _forge(evidence, stored[start : start + SERVER_KEY_BYTES], "send me your password")
        answer = _file(bob, forged)
        assert answer.status_code == 422 and answer.json()["code"] == "report_invalid"

    # The genuine report still verifies.
    assert _file(bob, evidence).status_code == 201

    # The same forgery with the secrets key as well goes through: the secrets key is what now
    # stands between a reader and a forged report, hence it is kept off the database host.
    # (On another message: a second report of the same message is the first one, deduplicated.)
    other = _evidence(pair, "see you at one")
    key_id = other["franking"]["key_id"]
    key = FileSecretsKey(path=server.data_dir / "secrets.key").open(
        _stored_franking_key(server, tmp_path, key_id), table="franking_keys", row_id=key_id
    )
    forged = _forge(other, key, "send me your password")
    filed = _file(bob, forged)
    assert filed.status_code == 201
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token()}"}
    ) as op:
        detail = op.get(f"/v1/review/reports/{filed.json()['report_id']}").json()
    assert detail["verified_sender"]["account"] == alice.account_name


def test_server_files_are_private_whatever_the_umask(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    _, bob = pair
    photo = tmp_path / "photo.png"
    Image.effect_mandelbrot((64, 48), (-2, -1.2, 1, 1.2), 30).convert("RGB").save(photo)
    evidence = _evidence(pair, "a photo", [photo])
    assert _file(bob, evidence).status_code == 201  # the review vault keeps the attachment

    data_dir: Path = server.data_dir
    seen = {p.relative_to(data_dir).parts[0] for p in data_dir.rglob("*")}
    assert {"admin-token", "secrets.key", "blobs"} <= seen
    if server.db_url is None:
        assert "accord.db" in seen
    loose = []
    for path in [data_dir, *data_dir.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        expected = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) != expected:
            loose.append((str(path.relative_to(data_dir)), oct(stat.S_IMODE(st.st_mode))))
    assert loose == []


def test_the_log_and_review_keys_are_sealed_and_a_copy_without_the_secrets_key_signs_nothing(
    tmp_path: Path, module_clock: Any
) -> None:
    """The operator keeps the secrets key off the data directory's disk: a copy of the data
    directory then holds the log key and the review key only sealed, and a server started on
    the copy (with another secrets key) refuses to start rather than sign as the log. A plain
    log key or agency token key left by an older version is sealed in place on start."""
    from accord.protocols.translog.note import generate_signer
    from accord.server.access.agency import ACCESS_KEY_FILE
    from accord.server.process import ServerProcess
    from accord.server.translog import DEFAULT_LOG_ORIGIN, LOG_KEY_FILE

    data = tmp_path / "data"
    data.mkdir()
    skey, _vkey = generate_signer(DEFAULT_LOG_ORIGIN)
    (data / LOG_KEY_FILE).write_text(skey + "\n")  # as an older version left it
    token_key = secrets.token_hex(32)
    (data / ACCESS_KEY_FILE).write_text(token_key + "\n")  # likewise
    key_file = tmp_path / "elsewhere" / "secrets.key"
    key_file.parent.mkdir()
    server = ServerProcess(
        data, extra_args=["--secrets-key-file", str(key_file)], env=module_clock.env
    ).start()
    try:
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    finally:
        server.stop()
    log_key = (data / LOG_KEY_FILE).read_bytes()
    review_key = (data / "review-key").read_bytes()
    assert b"PRIVATE+KEY" not in log_key and skey.encode() not in log_key
    assert len(review_key) != 32  # sealed, not the raw X25519 key
    sealed_token_key = (data / ACCESS_KEY_FILE).read_bytes()
    assert token_key.encode() not in sealed_token_key
    assert bytes.fromhex(token_key) not in sealed_token_key
    assert stat.S_IMODE((data / LOG_KEY_FILE).stat().st_mode) == 0o600
    # A copy of the data directory, without the secrets key: nothing opens.
    copy = ServerProcess(
        data, extra_args=["--secrets-key-file", str(tmp_path / "other.key")], env=module_clock.env
    )
    with pytest.raises(Exception):  # noqa: B017 - the server exits at start, saying why
        copy.start()
    assert "does not open under this server's secrets key" in copy.log_path.read_text()
