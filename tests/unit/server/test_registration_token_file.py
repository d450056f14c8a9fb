"""The registration token file (`accord server --registration-token-file`): any content is a
token of 16 to 256 characters on one line, or one ConfigurationError; never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import ConfigurationError
from accord.server.config import (
    MAX_REGISTRATION_TOKEN_BYTES,
    MIN_REGISTRATION_TOKEN_CHARS,
    ServerConfig,
)


def _read(content: bytes) -> str | None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "token"
        path.write_bytes(content)
        return ServerConfig(data_dir=Path(tmp), registration_token_file=path).registration_token()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2 * MAX_REGISTRATION_TOKEN_BYTES))
def test_any_file_is_a_token_or_one_configuration_error(content: bytes) -> None:
    try:
        token = _read(content)
    except ConfigurationError:
        return
    assert token is not None
    assert MIN_REGISTRATION_TOKEN_CHARS <= len(token) <= MAX_REGISTRATION_TOKEN_BYTES
    assert token == token.strip()


def test_a_good_file_a_short_one_and_a_missing_one(tmp_path: Path) -> None:
    assert _read(b"s3cret-registration-token\n") == "s3cret-registration-token"
    with pytest.raises(ConfigurationError):
        _read(b"short\n")
    with pytest.raises(ConfigurationError):
        ServerConfig(
            data_dir=tmp_path, registration_token_file=tmp_path / "absent"
        ).registration_token()
    assert ServerConfig(data_dir=tmp_path).registration_token() is None
