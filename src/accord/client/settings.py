"""A client home's settings file, HOME/config.toml (e.g. `server = "https://chat.example.org"`).

Only settings that are not secrets belong there; the file is read from outside the store, so it
is checked like any input: known keys only, strings of bounded length.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.config_file import read_config_file
from accord.errors import InvalidInput

CLIENT_SETTINGS_FILE = "config.toml"
MAX_SERVER_URL_CHARS = 2048


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientSettings:
    server: str | None = None


def parse_client_settings(table: dict[str, Any], *, name: str) -> ClientSettings:
    """The settings in a parsed TOML table; `name` says which file in errors."""
    for key in table:
        if key != "server":
            raise InvalidInput(f"unknown setting {key!r} in {name}")
    server = table.get("server")
    if server is not None and (
        not isinstance(server, str) or not 0 < len(server) <= MAX_SERVER_URL_CHARS
    ):
        raise InvalidInput(f"bad setting server in {name}: a URL of at most 2048 characters")
    return ClientSettings(server=server)


def read_client_settings(home: Path) -> ClientSettings:
    """HOME/config.toml's settings; none if the file does not exist."""
    path = home / CLIENT_SETTINGS_FILE
    if not path.exists():
        return ClientSettings()
    return parse_client_settings(read_config_file(path), name=str(path))
