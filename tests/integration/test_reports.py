"""Franking and verified reports through the real server and client (docs/protocol/franking.md).

Acceptance: a report over the CLI names the verified sender; a report with any changed byte is
refused with `report_invalid`; group reports prove which member sent; nothing of an unreported
message reaches the server in plaintext; a sender cannot send a message that cannot be reported.

One server per module and database kind; every test has its own accounts, groups and reviewers
and looks only at its own reports and audit entries. The checks that do not depend on the
database kind (Hypothesis over every field, the client's own refusals) run on SQLite only.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from accord.client.client import AccordClient
from accord.errors import AuthorizationError
from accord.protocols.franking import FrankingKey, commit_message
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"
pytestmark = pytest.mark.timeout(300)
# The module's SQLite server (not a third process) for checks where the database kind is moot.
ON_SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _photo(path: Path, seed: int) -> Path:
    img = Image.effect_mandelbrot((96, 72), (-2 + seed * 0.01, -1.2, 1, 1.2), 40).convert("RGB")
    img.save(path, format="PNG")
    return path


def _operator(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {server.admin_token()}"}
    )


def _audit_about(client: httpx.Client, report_id: str) -> list[dict[str, Any]]:
    """Every audit entry whose target is this report or one of its attachments (all pages)."""
    entries: list[dict[str, Any]] = []
    after = 0
    while page := client.get("/v1/review/audit", params={"after": after, "limit": 1000}).json()[
        "entries"
    ]:
        entries += page
        after = page[-1]["seq"]
    return [e for e in entries if e["target"].split("/")[0] == report_id]


def test_report_over_the_cli_names_the_verified_sender(server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    a, b, rita = unique("alice"), unique("bob"), unique("rita")
    alice, bob = cli("alice"), cli("bob")
    alice.run("account", "create", a, "--server", server.url)
    bob.run("account", "create", b, "--server", server.url)
    alice.run("send", b, "hello bob")
    photo = _photo(tmp_path / "photo.png", 1)
    alice.run("send", b, "look at this", "--attach", str(photo))
    received = [json.loads(x) for x in bob.run("receive", "--json").stdout.splitlines()]
    assert [m["text"] for m in received] == ["hello bob", "look at this"]
    report_id = bob.run(
        "report", received[1]["id"], "--reason", "unwanted image", "--context", "5"
    ).stdout.strip()
    assert report_id.startswith("r_")

    with _operator(server) as op:
        listing = op.get("/v1/review/reports", params={"account": a}).json()["reports"]
        assert [r["report_id"] for r in listing] == [report_id]
        detail = op.get(f"/v1/review/reports/{report_id}").json()
    assert detail["verified_sender"]["account"] == a
    assert detail["reporter"] == b and detail["reason"] == "unwanted image"
    assert [(m["text"], m["reported"]) for m in detail["items"]] == [
        ("hello bob", False),
        ("look at this", True),
    ]
    (attachment,) = detail["items"][1]["attachments"]
    assert attachment["available"] and not attachment["viewed"]
    assert attachment["size"] == photo.stat().st_size

    # A reviewer created over the CLI (password on stdin) acts on it through the API.
    operator = cli("operator")
    operator.env["ACCORD_ADMIN_TOKEN"] = server.admin_token()
    made = operator.run(
        "reviewer", "create", rita, "--server", server.url, input="correct horse battery staple\n"
    )
    assert f"reviewer {rita} (reviewer) created" in made.stdout
    token = httpx.post(
        f"{server.url}/v1/review/login",
        json={"name": rita, "password": "correct horse battery staple"},
    ).json()["token"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as rv:
        file = rv.get(f"/v1/review/reports/{report_id}/attachments/0")
        assert file.status_code == 200 and file.content == photo.read_bytes()
        assert rv.get(f"/v1/review/reports/{report_id}").json()["items"][1]["attachments"][0][
            "viewed"
        ]
        assert (
            rv.post(f"/v1/review/reports/{report_id}/actions", json={"action": "suspend"}).json()[
                "status"
            ]
            == "suspended"
        )
        refused = alice.run("send", b, "still here?", check=False)
        assert refused.returncode == 1 and "suspended" in refused.stderr
        # Lifting a suspension is for admins: the reviewer is refused, the operator may.
        refused = rv.post(f"/v1/review/reports/{report_id}/actions", json={"action": "unsuspend"})
        assert refused.status_code == 403
        with _operator(server) as op:
            op.post(f"/v1/review/reports/{report_id}/actions", json={"action": "unsuspend"})
        alice.run("send", b, "back again")
        rv.post(f"/v1/review/reports/{report_id}/actions", json={"action": "warn"})
        out = alice.run("receive")
        assert "notice from trust and safety" in out.stderr
        assert "notice from trust and safety" not in alice.run("receive").stderr  # shown once
        assert rv.get(f"/v1/review/reports/{report_id}/export").status_code == 409
        rv.post(f"/v1/review/reports/{report_id}/actions", json={"action": "escalate"})
        xml = rv.get(f"/v1/review/reports/{report_id}/export", params={"format": "xml"})
        assert xml.status_code == 200
        with zipfile.ZipFile(io.BytesIO(xml.content)) as package:
            assert package.namelist() == ["report.xml", "fileDetails-1.xml", "case.json"]
            details = package.read("fileDetails-1.xml")
            assert b"<fileViewedByEsp>true</fileViewedByEsp>" in details
            assert hashlib.sha256(photo.read_bytes()).hexdigest().encode() in details
            assert b"<reportedPerson>" in package.read("report.xml") or a.encode() in package.read(
                "report.xml"
            )
        trail = _audit_about(rv, report_id)
    actions = [(e["actor"], e["action"]) for e in trail]
    for expected in [
        (rita, "view_attachment"),
        (rita, "suspend"),
        ("operator", "unsuspend"),
        (rita, "warn"),
        (rita, "escalate"),
        (rita, "export_xml"),
    ]:
        assert expected in actions


# --- any changed byte is refused -------------------------------------------------------------


def _reported(pair, tmp_path) -> tuple[AccordClient, dict[str, Any]]:  # type: ignore[no-untyped-def]
    alice, bob = pair
    alice.send(bob.account_name, "evidence", [_photo(tmp_path / "p.png", 2)])
    (message,) = bob.receive().messages
    assert message.evidence is not None
    return bob, message.evidence.model_dump(mode="json")


def _post(client: AccordClient, path: str, body: dict[str, Any]) -> httpx.Response:
    """A raw request as `client`'s device, answer unchecked."""
    return httpx.post(
        client.api.base_url + path,
        json=body,
        headers={"Authorization": f"Bearer {client._token(False)}"},
        timeout=30,
    )


def _file(client: AccordClient, evidence: dict[str, Any]) -> httpx.Response:
    return _post(client, "/v1/reports", {"message": evidence})


def _flip_b64(value: str, bit: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[(bit // 8) % len(raw)] ^= 1 << (bit % 8)
    return base64.b64encode(bytes(raw)).decode()


FIELDS = [
    "text",
    "franking_key",
    "commitment",
    "tag",
    "sender",
    "sender_device",
    "recipient",
    "time",
    "sent_at",
    "message_id",
    "attachment_key",
    "attachment_digest",
    "key_id",
]


def _mutate(evidence: dict[str, Any], field: str, bit: int) -> dict[str, Any]:
    e = json.loads(json.dumps(evidence))
    content = e["content"]
    if field == "text":
        content["text"] = content["text"] + chr(0x41 + bit % 26)
    elif field == "franking_key":
        content["extensions"]["franking_key"] = _flip_b64(
            content["extensions"]["franking_key"], bit
        )
    elif field == "commitment":
        e["franking"]["commitment"] = _flip_b64(e["franking"]["commitment"], bit)
    elif field == "tag":
        e["franking"]["tag"] = _flip_b64(e["franking"]["tag"], bit)
    elif field == "sender":  # blame someone else, consistently in envelope and content
        e["sender"]["account"] = content["sender"]["account"] = "carol"
    elif field == "sender_device":
        e["sender"]["device_id"] = content["sender"]["device_id"] = "ZZZZ" + str(bit)
    elif field == "recipient":
        e["to"]["account"] = content["to"]["account"] = "dave"
    elif field == "time":
        e["received_at"] += 1 + bit
    elif field == "sent_at":
        content["sent_at"] += 1 + bit
    elif field == "message_id":
        content["message_id"] = content["message_id"][:-1] + (
            "A" if content["message_id"][-1] != "A" else "B"
        )
    elif field == "attachment_key":
        content["attachments"][0]["key"] = _flip_b64(content["attachments"][0]["key"], bit)
    elif field == "attachment_digest":
        content["attachments"][0]["sha256"] = _flip_b64(content["attachments"][0]["sha256"], bit)
    elif field == "key_id":
        e["franking"]["key_id"] = format(int(e["franking"]["key_id"], 16) + 1, "x")
    return e


@ON_SQLITE
def test_any_changed_field_is_refused(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    bob, evidence = _reported(pair, tmp_path)

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(field=st.sampled_from(FIELDS), bit=st.integers(0, 255))
    def check(field: str, bit: int) -> None:
        answer = _file(bob, _mutate(evidence, field, bit))
        assert answer.status_code == 422, (field, answer.text)
        assert answer.json()["code"] in ("report_invalid", "franking_key_expired")

    check()
    for field in FIELDS:  # every field at least once, whatever Hypothesis drew
        answer = _file(bob, _mutate(evidence, field, 0))
        assert answer.status_code == 422 and answer.json()["code"] in (
            "report_invalid",
            "franking_key_expired",
        ), field
    assert _file(bob, evidence).status_code == 201  # the unchanged report is accepted


@ON_SQLITE
def test_only_the_recipient_reports(server, pair, tmp_path, unique):  # type: ignore[no-untyped-def]
    _bob, evidence = _reported(pair, tmp_path)
    carol = AccordClient.create_account(
        tmp_path / "c", server.url, unique("carol"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    answer = _file(carol, evidence)
    assert answer.status_code == 422 and answer.json()["code"] == "report_invalid"
    carol.close()


def test_group_report_proves_which_member_sent(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    clients = {
        n: AccordClient.create_account(
            tmp_path / n, server.url, unique(n), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        for n in ("alice", "bob", "carol")
    }
    club = unique("club")
    clients["alice"].create_group(
        club, [clients["bob"].account_name, clients["carol"].account_name]
    )
    clients["carol"].send_group(club, "from carol")
    clients["alice"].send_group(club, "from alice")
    got = {m.text: m for m in clients["bob"].receive().messages}
    report_id = clients["bob"].report(got["from carol"].id, reason="abuse in club")
    with _operator(server) as op:
        detail = op.get(f"/v1/review/reports/{report_id}").json()
    assert detail["verified_sender"]["account"] == clients["carol"].account_name
    assert detail["conversation"] == f"group:{club}"
    # Claiming alice sent carol's message fails: the tag binds the sending device.
    evidence = got["from carol"].evidence.model_dump(mode="json")
    alice_device = got["from alice"].evidence.sender
    evidence["sender"] = evidence["content"]["sender"] = alice_device.model_dump()
    answer = _file(clients["bob"], evidence)
    assert answer.status_code == 422 and answer.json()["code"] == "report_invalid"
    for c in clients.values():
        c.close()


def test_unreported_messages_never_reach_the_server_in_plaintext(server, pair, tmp_path):  # type: ignore[no-untyped-def]
    alice, bob = pair
    secret_text = "UNREPORTED-" + os.urandom(8).hex()
    reported_text = "REPORTED-" + os.urandom(8).hex()
    secret_file = tmp_path / "secret.bin"
    secret_file.write_bytes(b"UNREPORTED-FILE-" + os.urandom(4096))
    alice.send(bob.account_name, secret_text, [secret_file])
    alice.send(bob.account_name, reported_text)
    messages = {m.text: m for m in bob.receive().messages}
    bob.report(messages[reported_text].id)

    def server_bytes() -> bytes:
        chunks = []
        for root, _dirs, files in os.walk(server.data_dir):
            for name in files:
                chunks.append((Path(root) / name).read_bytes())
        if server.db_url:
            import subprocess

            dump = subprocess.run(
                ["pg_dump", "--data-only", server.db_url], capture_output=True, check=True
            )
            chunks.append(dump.stdout)
        return b"\n".join(chunks)

    everything = server_bytes()
    assert reported_text.encode() in everything  # the search does find what was reported
    assert secret_text.encode() not in everything
    assert secret_file.read_bytes()[:64] not in everything
    assert b"UNREPORTED-FILE-" not in everything


@ON_SQLITE
def test_a_message_that_cannot_be_reported_is_not_shown(server, pair, monkeypatch):  # type: ignore[no-untyped-def]
    """A sender who commits to something other than what it sends is caught on receipt."""
    alice, bob = pair
    import accord.client.client as client_module

    def lying_commit(key: FrankingKey, message):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return commit_message(key, replace(message, text="something innocent"))

    monkeypatch.setattr(client_module, "commit_message", lying_commit)
    alice.send(bob.account_name, "something abusive")
    monkeypatch.undo()
    result = bob.receive()
    assert result.messages == []
    assert any("franking commitment does not open" in r for r in result.rejected)


@ON_SQLITE
def test_the_server_refuses_messages_without_a_commitment(server, pair):  # type: ignore[no-untyped-def]
    alice, bob = pair
    answer = _post(
        alice,
        "/v1/messages",
        {
            "message_id": "A" * 22,
            "to": {"account": bob.account_name},
            "recipients": [],
            "copies": [],
        },
    )
    assert answer.status_code == 400 and answer.json()["code"] == "franking_required"


def test_suspension_stops_everything_but_reading(server, pair, tmp_path, unique):  # type: ignore[no-untyped-def]
    """A suspended account could still upload blobs (never collected), file reports and create
    groups; now it can only read (fetch, acknowledge, download, see its notices), appeal, keep
    its devices safe (revoke one, top up its one-time keys) and do a warrant's duties."""
    alice, bob = pair
    bob_report_of_alice = _file(*_reported(pair, tmp_path)).json()["report_id"]
    bob.send(alice.account_name, "queued for alice before the suspension")
    with _operator(server) as op:
        done = op.post(
            f"/v1/review/reports/{bob_report_of_alice}/actions", json={"action": "suspend"}
        )
        assert done.status_code == 200, done.text
    server.clock.advance(60)  # past any cached authentication of alice's token

    def refused(answer: httpx.Response) -> bool:
        return answer.status_code == 403 and answer.json()["code"] == "account_suspended"

    blob = b"\x00" * 64
    upload = httpx.put(
        alice.api.base_url + "/v1/blobs",
        content=blob,
        headers={
            "Authorization": f"Bearer {alice._token(False)}",
            "X-Accord-Blob-Sha256": base64.b64encode(hashlib.sha256(blob).digest()).decode(),
        },
        timeout=30,
    )
    assert refused(upload)
    assert refused(_post(alice, "/v1/reports", {"message": {}}))
    assert refused(_post(alice, "/v1/keys/claim", {"v": 1, "devices": []}))
    auth = {"Authorization": f"Bearer {alice._token(False)}"}
    link = httpx.get(alice.api.base_url + "/v1/link-requests/" + "A" * 16, headers=auth)
    assert refused(link)  # reading a link request serves only to approve it
    topped_up = _post(alice, "/v1/keys", {"v": 1, "one_time_keys": []})
    assert topped_up.status_code == 200 and topped_up.json()["fallback_key"] is True
    with pytest.raises(AuthorizationError) as group:
        alice.create_group(unique("g"), [bob.account_name])
    assert group.value.code == "account_suspended"
    with pytest.raises(AuthorizationError):
        alice.send(bob.account_name, "still here?")
    # Reading still works: the queued message arrives, and the notice says why.
    assert [m.text for m in alice.receive().messages] == ["queued for alice before the suspension"]
    notices = httpx.get(
        alice.api.base_url + "/v1/notices",
        headers={"Authorization": f"Bearer {alice._token(False)}"},
        timeout=30,
    )
    assert notices.status_code == 200
