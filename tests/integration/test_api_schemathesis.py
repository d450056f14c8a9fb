"""Schemathesis against the real ASGI app's OpenAPI document: no input gives a 5xx, every
refusal is a problem document, and every status is one the document declares.

Both valid and deliberately invalid requests are generated (negative mode), with and without a
valid device token, so validation and the authenticated code paths are exercised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from starlette.testclient import TestClient

from accord.client.client import AccordClient
from accord.server.app import create_app
from accord.server.config import ServerConfig
from accord_testing import TEST_KDF_COST

_DIR = Path(tempfile.mkdtemp(prefix="accord-schemathesis-"))
APP = create_app(ServerConfig(data_dir=_DIR / "server"))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])

_TOKEN: list[str] = []


def _token() -> str:
    """A real device token, made once through the real client over the in-process app."""
    if not _TOKEN:
        transport = TestClient(APP)._transport
        client = AccordClient.create_account(
            _DIR / "home",
            "http://testserver",
            "fuzzer",
            "fuzzer passphrase",
            transport=transport,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        _TOKEN.append(client._token(False))
        client.send("fuzzer", "seed message for the queue")
        client.close()
    return _TOKEN[0]


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case):  # type: ignore[no-untyped-def]
    for headers in ({}, {"Authorization": f"Bearer {_token()}"}):
        case.headers = {**(case.headers or {}), **headers}
        response = case.call()
        assert response.status_code < 500, (case.method, case.path, response.text)
        if response.status_code >= 400:
            # Every refusal is an RFC 9457 problem document with its stable code, as declared.
            content_type = response.headers.get("content-type", [""])
            assert "".join(content_type).startswith("application/problem+json")
            body = response.json()
            assert body["status"] == response.status_code and isinstance(body["code"], str)
            assert body["type"] == "urn:accord:problem:" + body["code"] and body["detail"]
        declared = case.operation.definition.raw["responses"]
        assert str(response.status_code) in declared or "default" in declared


def test_the_document_declares_auth_problems_uploads_and_the_websocket() -> None:
    doc = APP.openapi()
    assert set(doc["components"]["securitySchemes"]) == {"device", "operator", "reviewer"}
    operations = [(p, m, o) for p, ops in doc["paths"].items() for m, o in ops.items()]
    assert not [p for p, _m, o in operations if "422" in o["responses"]]  # never promised
    assert doc["paths"]["/v1/messages"]["post"]["security"] == [{"device": []}]
    assert "security" not in doc["paths"]["/v1/accounts"]["post"]  # anyone may register
    assert doc["paths"]["/v1/review/reports"]["get"]["security"] == [{"reviewer": []}]
    assert "application/octet-stream" in doc["paths"]["/v1/blobs"]["put"]["requestBody"]["content"]
    assert "101" in doc["paths"]["/v1/ws"]["get"]["responses"]
