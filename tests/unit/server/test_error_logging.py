"""An unexpected error is a 500 that says nothing, logged with its traceback but without its
message: a message may quote what the request held (a token, a key, a ciphertext)."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from accord.errors import InvalidInput
from accord.server.observability import JsonFormatter, Metrics, TextFormatter
from accord.server.problems import install_error_handlers

SECRET = "Bearer tok-3f9a0c-should-never-be-logged"


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, Metrics())

    @app.get("/v1/things/{thing_id}")
    async def fail_deep_inside(thing_id: str) -> None:
        try:
            raise KeyError(SECRET)
        except KeyError as exc:
            raise ValueError(f"could not use {SECRET} for {thing_id}") from exc

    @app.get("/v1/bad")
    async def bad_input() -> None:
        raise InvalidInput("x: not a number")

    return app


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_an_unexpected_error_is_logged_with_its_traceback_and_without_its_message(
    formatter: logging.Formatter, caplog: pytest.LogCaptureFixture
) -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="accord.server"):
        answer = client.get(f"/v1/things/{SECRET[-20:]}")
    assert answer.status_code == 500
    body = answer.json()
    assert (body["code"], body["detail"], body["status"]) == ("internal", "internal error", 500)
    assert set(body) == {"type", "title", "status", "detail", "code", "message"}
    (record,) = [r for r in caplog.records if r.name == "accord.server"]
    logged = formatter.format(record)
    assert SECRET not in logged and SECRET[-20:] not in logged
    if isinstance(formatter, JsonFormatter):
        fields = json.loads(logged)
        assert fields["error"] == "ValueError"
        logged = fields["traceback"]
    assert "GET /v1/things/{thing_id}" in record.getMessage()  # the template, not the path
    assert "in fail_deep_inside" in logged  # where it happened
    assert "builtins.KeyError (message withheld)" in logged  # the chain, by type
    assert "builtins.ValueError (message withheld)" in logged


def test_bad_input_stays_a_4xx_with_its_code(caplog: pytest.LogCaptureFixture) -> None:
    client = TestClient(_app(), raise_server_exceptions=False)
    with caplog.at_level(logging.WARNING, logger="accord.server"):
        answer = client.get("/v1/bad")
    assert answer.status_code == 400
    assert answer.json()["code"] == "invalid_input"
    assert not [r for r in caplog.records if r.name == "accord.server"]


def test_method_not_allowed_names_the_allowed_methods(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """RFC 9110: a 405 says which methods the resource has (it used to drop the Allow header)."""
    from starlette.testclient import TestClient

    from accord.server.app import create_app
    from accord.server.config import ServerConfig

    with TestClient(create_app(ServerConfig(data_dir=tmp_path))) as client:
        answer = client.delete("/v1/health")
    assert answer.status_code == 405 and answer.json()["code"] == "method_not_allowed"
    assert answer.headers["allow"] == "GET"
