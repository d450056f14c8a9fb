"""Schemathesis against the real ASGI app's OpenAPI document: no input gives a 5xx.

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
            body = response.json()
            assert isinstance(body.get("code"), str) and isinstance(body.get("message"), str)
