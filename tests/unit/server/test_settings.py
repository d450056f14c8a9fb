"""Server settings: flags over ACCORD_* variables over the configuration file over defaults;
bad settings named in one line; the documented table is the model's."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.client.settings import parse_client_settings, read_client_settings
from accord.config_file import MAX_CONFIG_FILE_BYTES, parse_config_text
from accord.errors import InvalidInput
from accord.server.settings import ServerSettings, settings_table

DOCS = Path(__file__).resolve().parents[3] / "docs"


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "accord.toml"
    path.write_text(text)
    return path


def test_flag_beats_environment_beats_file_beats_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _file(
        tmp_path,
        'port = 9001\nlog_origin = "file.example/log"\nmax_queue = 7\ndb = "sqlite:///x"\n'
        'witness = ["http://w1"]\n',
    )
    monkeypatch.setenv("ACCORD_PORT", "9002")
    monkeypatch.setenv("ACCORD_LOG_ORIGIN", "env.example/log")
    monkeypatch.setenv("ACCORD_ADMIN_TOKEN", "not a server setting")  # other variables: ignored
    loaded = ServerSettings.load(
        flags={"port": "9003", "max_queue": None, "witness": ()}, config_file=config
    )
    assert loaded.port == 9003  # flag
    assert loaded.log_origin == "env.example/log"  # environment over file
    assert loaded.max_queue == 7 and loaded.db == "sqlite:///x"  # file
    assert loaded.witness == ["http://w1"]
    assert loaded.send_burst == ServerSettings().send_burst  # default
    config_of = loaded.to_config()
    assert (config_of.db_url, config_of.max_queue, config_of.witnesses) == (
        "sqlite:///x",
        7,
        ["http://w1"],
    )


@pytest.mark.parametrize(
    ("text", "env", "flags", "message"),
    [
        ("port = 70000\n", {}, {}, "bad setting port (--port, ACCORD_PORT):"),
        ("", {"ACCORD_SEND_RATE": "-1"}, {}, "bad setting send_rate (--send-rate,"),
        ("", {}, {"log_format": "xml"}, "bad setting log_format"),
        ("prot = 1\n", {}, {}, "unknown setting 'prot'"),
        ("port = \n", {}, {}, "is not valid TOML"),
        ("", {"ACCORD_REDIS_URL": "redis://r"}, {}, "set ACCORD_REDIS instead"),
    ],
)
def test_bad_settings_are_named_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    env: dict[str, str],
    flags: dict[str, str],
    message: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidInput) as caught:
        ServerSettings.load(flags=flags, config_file=_file(tmp_path, text))
    assert message in caught.value.message and "\n" not in caught.value.message


def test_secret_values_are_not_echoed(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as caught:
        ServerSettings.load(flags={}, config_file=_file(tmp_path, 'port = "hunter2-secret"\n'))
    assert "hunter2" not in caught.value.message


def test_config_file_limits(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        parse_config_text(b"#" * (MAX_CONFIG_FILE_BYTES + 1), name="f")
    with pytest.raises(InvalidInput, match="not UTF-8"):
        parse_config_text(b"a = '\xff'", name="f")
    with pytest.raises(InvalidInput, match="cannot read"):
        ServerSettings.load(flags={}, config_file=tmp_path / "missing.toml")


def test_client_settings(tmp_path: Path) -> None:
    assert read_client_settings(tmp_path).server is None  # no file: nothing set
    (tmp_path / "config.toml").write_text('server = "http://127.0.0.1:8000"\n')
    assert read_client_settings(tmp_path).server == "http://127.0.0.1:8000"
    with pytest.raises(InvalidInput, match="unknown setting 'admin_token'"):
        parse_client_settings({"admin_token": "x"}, name="f")
    with pytest.raises(InvalidInput, match="bad setting server"):
        parse_client_settings({"server": 5}, name="f")


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_config_files(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        table = parse_config_text(data, name="f")
        with contextlib.suppress(InvalidInput):
            parse_client_settings(table, name="f")


def test_documented_table_is_the_models() -> None:
    """docs/deployment.md and the README carry the table printed by `settings_table()`."""
    table = settings_table()
    assert table in (DOCS / "deployment.md").read_text()
    assert table in (DOCS.parent / "README.md").read_text()
