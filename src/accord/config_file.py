"""Reading a TOML configuration file (the server's `--config`, a client home's `config.toml`).

A configuration file comes from outside: it is read with a size limit, and any fault (missing,
too large, not UTF-8, not TOML) is one `InvalidInput` naming the file, never its contents.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from accord.errors import InvalidInput

MAX_CONFIG_FILE_BYTES = 64 * 1024


def parse_config_text(raw: bytes, *, name: str) -> dict[str, Any]:
    """The table a TOML document holds; `name` says which file in errors."""
    if len(raw) > MAX_CONFIG_FILE_BYTES:
        raise InvalidInput(f"{name} is larger than {MAX_CONFIG_FILE_BYTES} bytes")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidInput(f"{name} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message gives the line and column, not the text found there.
        raise InvalidInput(f"{name} is not valid TOML ({exc})") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The table in the TOML file at `path`."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_CONFIG_FILE_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    return parse_config_text(raw, name=str(path))
