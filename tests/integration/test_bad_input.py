"""Malformed input gets a 4xx with a JSON code, and the CLI one line and a non-zero exit.

The tests share one server for the module, started with a small attachment limit (so its own
fixture, on SQLite, as before); accounts and groups are unique per test, and a test looks only at
the blob files that appeared while it ran.
"""

from __future__ import annotations

import base64
import hashlib
import socket
from pathlib import Path

import httpx
import pytest

from accord.client.client import AccordClient
from accord.server.process import ServerProcess
from accord_testing import TEST_KDF_COST, eventually

PASS = "test passphrase"


@pytest.fixture(scope="module")
def small_server(tmp_path_factory, module_clock):  # type: ignore[no-untyped-def]
    s = ServerProcess(
        tmp_path_factory.mktemp("small-server") / "server",
        extra_args=["--max-attachment-bytes", "1000"],
        env=module_clock.env,
    ).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def alice(small_server, tmp_path, unique):  # type: ignore[no-untyped-def]
    c = AccordClient.create_account(
        tmp_path / "a",
        small_server.url,
        unique("alice"),
        PASS,
        kdf_cost=TEST_KDF_COST,
        insecure_dev=True,
    )
    yield c
    c.close()


def _auth(c: AccordClient) -> dict[str, str]:
    return {"Authorization": f"Bearer {c._token(False)}"}


def _check(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"]


def test_bad_json_version_and_base64(small_server, alice, unique):  # type: ignore[no-untyped-def]
    url = small_server.url
    group = unique("g")
    _check(
        httpx.post(
            url + "/v1/accounts", content=b"{", headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_json",
    )
    _check(httpx.post(url + "/v1/accounts", json=[1, 2]), 400, "invalid_request")
    _check(
        httpx.post(url + "/v1/accounts", json={"v": 99, "device": {}}), 400, "unsupported_version"
    )
    send = {
        "v": 1,
        "message_id": "A" * 22,
        "to": {"account": alice.account_name},
        "recipients": [],
        "copies": [],
        "megolm": None,
    }
    _check(
        httpx.post(url + "/v1/messages", json={**send, "v": 7}, headers=_auth(alice)),
        400,
        "unsupported_version",
    )
    bad_b64 = {
        **send,
        "to": {"group": group},
        "megolm": "@@@@not base64",
        "megolm_session_id": "x" * 43,
    }
    r = httpx.post(url + "/v1/messages", json=bad_b64, headers=_auth(alice))
    assert r.status_code in (400, 404), r.text  # no such group, or bad base64: never a 5xx
    alice.create_group(group, [alice.account_name])
    _check(
        httpx.post(url + "/v1/messages", json=bad_b64, headers=_auth(alice)), 400, "invalid_input"
    )


def test_oversized_bodies(small_server, alice):  # type: ignore[no-untyped-def]
    big = b'{"v":1,"device":"' + b"x" * (9 << 20) + b'"}'
    _check(
        httpx.post(
            small_server.url + "/v1/accounts",
            content=big,
            headers={"Content-Type": "application/json"},
        ),
        413,
        "too_large",
    )

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b"x" * (1 << 20)

    r = httpx.post(
        small_server.url + "/v1/accounts",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    _check(r, 413, "too_large")
    blob = b"z" * 2000
    headers = {
        **_auth(alice),
        "X-Accord-Blob-SHA256": base64.b64encode(hashlib.sha256(blob).digest()).decode(),
    }
    _check(
        httpx.put(small_server.url + "/v1/blobs", content=blob, headers=headers), 413, "too_large"
    )


def test_blob_upload_checks(small_server, alice):  # type: ignore[no-untyped-def]
    blob = b"y" * 500
    good = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    h = _auth(alice)
    _check(
        httpx.put(
            small_server.url + "/v1/blobs",
            content=blob,
            headers={**h, "X-Accord-Blob-SHA256": base64.b64encode(b"0" * 32).decode()},
        ),
        400,
        "blob_digest_mismatch",
    )
    _check(
        httpx.put(
            small_server.url + "/v1/blobs",
            content=blob,
            headers={**h, "X-Accord-Blob-SHA256": "nope"},
        ),
        400,
        "invalid_input",
    )
    r = httpx.put(
        small_server.url + "/v1/blobs", content=blob, headers={**h, "X-Accord-Blob-SHA256": good}
    )
    assert r.status_code == 201
    _check(
        httpx.get(small_server.url + "/v1/blobs/..%2F..%2Fadmin-token", headers=h), 404, "not_found"
    )
    _check(httpx.get(small_server.url + "/v1/blobs/" + "A" * 32, headers=h), 404, "not_found")


def _blob_files(server) -> set[Path]:  # type: ignore[no-untyped-def]
    """Every file under the server's blob store, finished or not (tmp/ included)."""
    return {p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()}


def test_truncated_upload_leaves_nothing(small_server, alice):  # type: ignore[no-untyped-def]
    before = _blob_files(small_server)  # what earlier tests stored
    token = alice._token(False)
    digest = base64.b64encode(hashlib.sha256(b"q" * 900).digest()).decode()
    request = (
        "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: 900\r\n"
        f"X-Accord-Blob-SHA256: {digest}\r\n\r\n"
    ).encode() + b"q" * 300
    with socket.create_connection(("127.0.0.1", small_server.port)) as s:
        s.sendall(request)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            reply = s.recv(4096)
        except TimeoutError:
            reply = b""
    assert not reply.startswith(b"HTTP/1.1 5")
    # The server notices the disconnect on its own schedule; give it a moment to clean up.
    eventually(lambda: not (_blob_files(small_server) - before), "the partial upload removed")
    assert httpx.get(small_server.url + "/v1/health").status_code == 200


def test_cli_errors_are_one_line(small_server, cli, tmp_path, unique):  # type: ignore[no-untyped-def]
    name = unique("me")
    me = cli("me")
    proc = me.run("receive", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    me.run("account", "create", name, "--server", small_server.url)
    proc = me.run("send", name, "hi", "--attach", str(tmp_path / "missing.jpg"), check=False)
    assert proc.returncode == 2 and proc.problems.count("\n") == 1
    proc = me.run("send", unique("nobody-here"), "hi", check=False)
    assert proc.returncode == 1 and "not_found" in proc.stderr and proc.problems.count("\n") == 1
    proc = me.run("send", "only-one-arg", check=False)
    assert proc.returncode == 2
    proc = me.run("account", "create", "Bad Name!", "--server", small_server.url, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    bad = cli("other")
    bad.env["ACCORD_PASSPHRASE"] = "wrong"
    bad.home = me.home
    proc = bad.run("receive", check=False)
    assert proc.returncode == 2 and "wrong passphrase" in proc.stderr


def test_failed_registration_can_be_retried(small_server, cli, unique):  # type: ignore[no-untyped-def]
    me = cli("retry")
    me.run("account", "create", unique("taken"), "--server", small_server.url)
    other = cli("retry2")
    proc = other.run(
        "account", "create", unique("taken"), "--server", small_server.url, check=False
    )
    assert proc.returncode == 1 and "account_exists" in proc.stderr
    other.run("account", "create", unique("free"), "--server", small_server.url)
    proc = other.run("account", "create", "BAD NAME", "--server", small_server.url, check=False)
    assert proc.returncode == 2


def test_every_refusal_is_an_rfc_9457_problem_with_a_stable_code(small_server):  # type: ignore[no-untyped-def]
    """Bad JSON, a failed validation, an unknown route, a wrong method, no token, a body too
    large for the door: each is application/problem+json with type, title, status, detail and
    the code (and never the input)."""
    url = small_server.url
    cases = [
        (
            "POST",
            "/v1/accounts",
            {"content": b"{", "headers": {"Content-Type": "application/json"}},
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/accounts",
            {"json": {"v": 1, "device": {"account": "SECRET-INPUT"}}},
            400,
            "invalid_request",
        ),
        ("GET", "/v1/no-such-route", {}, 404, "not_found"),
        ("DELETE", "/v1/health", {}, 405, "method_not_allowed"),
        ("GET", "/v1/messages", {}, 401, "unauthenticated"),
        ("POST", "/v1/accounts", {"content": b"x" * (9 << 20)}, 413, "too_large"),
    ]
    for method, path, kwargs, status, code in cases:
        answer = httpx.request(method, url + path, timeout=30, **kwargs)
        assert answer.status_code == status, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), path
        body = answer.json()
        assert body["status"] == status and body["code"] == code, (path, body)
        assert body["type"] == f"urn:accord:problem:{code}" and body["title"] and body["detail"]
        assert "SECRET-INPUT" not in answer.text
