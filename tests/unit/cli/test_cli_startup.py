"""`accord --help` and completing command names import no command module and nothing heavy.

A structural check (which modules are loaded), not a timing one; docs/benchmarks.md has times.
"""

from __future__ import annotations

import click
import pytest

from accord.cli.main import COMMANDS, LazyGroup, cli
from accord_testing import modules_loaded, within

HEAVY = ("sqlalchemy", "numpy", "httpx", "fastapi", "PIL", "accord.client", "accord.server")


def test_help_imports_nothing_heavy() -> None:
    out, modules = modules_loaded(["--help"])
    assert "Commands:" in out and "warrant" in out
    assert within(modules, HEAVY) == []
    assert not [m for m in modules if m.startswith("accord.cli.") and m in _command_modules()]


def test_completing_command_names_imports_nothing_heavy() -> None:
    env = {"_ACCORD_COMPLETE": "bash_complete", "COMP_WORDS": "accord ", "COMP_CWORD": "1"}
    out, modules = modules_loaded([], env)
    assert out.splitlines() == [f"plain,{name}" for name in sorted(COMMANDS)]
    assert within(modules, HEAVY) == []


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
