"""Devices act only on their own queue and keys; everything else is 401 or an opaque 404.

One server per module and database kind; every test has its own accounts and groups.
"""

from __future__ import annotations

import httpx
import pytest

from accord.client.client import AccordClient
from accord.errors import NotFound
from accord.protocols.messaging import one_time_key_payload
from accord.wire.messaging import OneTimeKey
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"

PROTECTED = [
    ("GET", "/v1/messages"),
    ("GET", "/v1/messages/1"),
    ("DELETE", "/v1/messages/1"),
    ("POST", "/v1/messages/ack"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/keys"),
    ("GET", "/v1/keys/count"),
    ("POST", "/v1/keys/claim"),
    ("GET", "/v1/accounts/alice/devices"),
    ("GET", "/v1/groups/g"),
    ("PUT", "/v1/groups/g"),
    ("PUT", "/v1/blobs"),
    ("GET", "/v1/blobs/AAAAAAAAAAAAAAAAAAAAAAAA"),
    ("GET", "/v1/link-requests/AAAAAAAAAAAAAAAA"),
]


@pytest.fixture
def trio(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    clients = [
        AccordClient.create_account(
            tmp_path / n, server.url, unique(n), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        for n in ("alice", "bob", "mallory")
    ]
    yield clients
    for c in clients:
        c.close()


def _auth(client: AccordClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {client._token(False)}"}


def test_unauthenticated_calls_get_401(server):  # type: ignore[no-untyped-def]
    for method, path in PROTECTED:
        for headers in (
            {},
            {"Authorization": "Bearer not-a-token"},
            {"Authorization": "Basic eA=="},
        ):
            r = httpx.request(method, server.url + path, headers=headers, json={})
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["code"] == "unauthenticated"
    r = httpx.get(server.url + "/v1/health")
    assert r.status_code == 200


def test_queue_of_another_device_looks_missing(server, trio):  # type: ignore[no-untyped-def]
    alice, bob, mallory = trio
    alice.send(bob.account_name, "for bob only")
    bob_queue = httpx.get(server.url + "/v1/messages", headers=_auth(bob)).json()["envelopes"]
    (env,) = bob_queue
    theirs, missing = env["id"], env["id"] + 10_000
    h = _auth(mallory)
    assert httpx.get(server.url + "/v1/messages", headers=h).json()["envelopes"] == []
    answers = []
    for target in (theirs, missing):
        for method, path, body in (
            ("GET", f"/v1/messages/{target}", None),
            ("DELETE", f"/v1/messages/{target}", None),
            ("POST", "/v1/messages/ack", {"ids": [target]}),
        ):
            r = httpx.request(method, server.url + path, headers=h, json=body)
            answers.append((r.status_code, r.json()))
    assert all(
        a[0] == 404 and (a[1]["code"], a[1]["detail"]) == ("not_found", "not found")
        for a in answers
    )
    # bob's message is untouched and still readable by bob.
    assert [m.text for m in bob.receive().messages] == ["for bob only"]


def test_cannot_publish_keys_for_another_account(server, trio):  # type: ignore[no-untyped-def]
    alice, bob, mallory = trio
    # Keys signed by alice's device, uploaded with mallory's token: the signature is checked
    # against the uploading device's own key, so they are refused.
    key = OneTimeKey(key_id="AAAAAAAAAAZ", key=alice.olm.curve25519, signature="-")
    sig = alice.olm.sign(one_time_key_payload(alice.account_name, alice.device_id, key, False))
    body = {"v": 1, "one_time_keys": [{**key.model_dump(), "signature": sig}]}
    r = httpx.post(server.url + "/v1/keys", headers=_auth(mallory), json=body)
    assert r.status_code == 422 and r.json()["code"] == "verification_failed"
    # and mallory cannot approve a device into alice's account
    link_client, code = AccordClient.start_link(
        alice.home.parent / "alice2",
        server.url,
        alice.account_name,
        PASS,
        kdf_cost=TEST_KDF_COST,
        insecure_dev=True,
    )
    link_client.close()
    request_id = code.split("-")[0]
    r = httpx.get(server.url + f"/v1/link-requests/{request_id}", headers=_auth(mallory))
    assert r.status_code == 404


def test_groups_are_visible_to_members_only(server, trio, unique):  # type: ignore[no-untyped-def]
    alice, bob, mallory = trio
    inner = unique("inner")
    alice.create_group(inner, [bob.account_name])
    assert httpx.get(server.url + f"/v1/groups/{inner}", headers=_auth(bob)).status_code == 200
    r = httpx.get(server.url + f"/v1/groups/{inner}", headers=_auth(mallory))
    assert r.status_code == 404
    with pytest.raises(NotFound):
        mallory.send_group(inner, "let me in")


def test_direct_send_must_cover_every_device(server, trio):  # type: ignore[no-untyped-def]
    alice, bob, _ = trio
    body = {
        "v": 1,
        "message_id": "A" * 22,
        "to": {"account": bob.account_name},
        "recipients": [],
        "copies": [],
        "extensions": {"franking": {"v": 1, "commitment": "A" * 43 + "="}},
    }
    r = httpx.post(server.url + "/v1/messages", headers=_auth(alice), json=body)
    assert r.status_code == 409
    data = r.json()
    assert data["code"] == "stale_devices"
    assert data["missing"] == [{"account": bob.account_name, "device_id": bob.device_id}]
