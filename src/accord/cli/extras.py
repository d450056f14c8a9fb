"""Optional parts of the install: a command that needs one says which extra to install."""

from __future__ import annotations

import importlib.util

from accord.errors import InvalidInput


class MissingExtra(InvalidInput):
    """A command needs packages of an extra that is not installed."""

    code = "missing_extra"


def require_extra(extra: str, *modules: str) -> None:
    """Stop with one line if any of these top-level modules is missing."""
    missing = [m for m in modules if not _importable(m)]
    if missing:
        raise MissingExtra(
            f"this command needs the {extra!r} extra (missing {', '.join(missing)}): "
            f"pip install 'accord[{extra}]'"
        )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
