"""`accord --help` and completing command names import no command module and nothing heavy.

A structural check (which modules are loaded), not a timing one; docs/benchmarks.md has times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click
import pytest

from accord.cli.main import COMMANDS, LazyGroup, cli

HEAVY = ("sqlalchemy", "numpy", "httpx", "fastapi", "PIL", "accord.client", "accord.server")

# Runs the real entry point, then prints every module it loaded (at exit, after click's own).
PROBE = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "sys.argv[0] = 'accord'\n"
    "from accord.cli.main import main\n"
    "main()\n"
)


def _modules_loaded(args: list[str], env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, set(json.loads(result.stderr.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_help_imports_nothing_heavy() -> None:
    out, modules = _modules_loaded(["--help"])
    assert "Commands:" in out and "warrant" in out
    assert _heavy(modules) == []
    assert not [m for m in modules if m.startswith("accord.cli.") and m in _command_modules()]


def test_completing_command_names_imports_nothing_heavy() -> None:
    env = {"_ACCORD_COMPLETE": "bash_complete", "COMP_WORDS": "accord ", "COMP_CWORD": "1"}
    out, modules = _modules_loaded([], env)
    assert out.splitlines() == [f"plain,{name}" for name in sorted(COMMANDS)]
    assert _heavy(modules) == []


def _command_modules() -> set[str]:
    return {entry.target.partition(":")[0] for entry in COMMANDS.values()}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_declared_help_matches_the_command(name: str) -> None:
    """The summaries shown without importing agree with the commands' own help."""
    group = LazyGroup(lazy=COMMANDS)
    ctx = click.Context(group)
    stand_in = group.summary(ctx, name)
    command = group.get_command(ctx, name)
    assert stand_in is not None and command is not None
    assert command.name == name
    for limit in (20, 45, 60, 80, 200):
        assert stand_in.get_short_help_str(limit) == command.get_short_help_str(limit)


def test_every_command_is_reachable() -> None:
    ctx = click.Context(cli)
    assert cli.list_commands(ctx) == sorted(COMMANDS)
    assert all(cli.get_command(ctx, name) is not None for name in COMMANDS)
    assert cli.get_command(ctx, "no-such-command") is None
