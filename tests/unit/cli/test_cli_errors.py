"""Every failure is one line on stderr and an exit code; the traceback only with --verbose."""

from __future__ import annotations

import logging
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from accord.cli.common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, run_cli
from accord.cli.main import cli
from accord.errors import InvalidInput, NotFound

SECRET = "5f890faec7ef4f302bd9d7455bd775e9"  # stands for data a library might quote


@click.group()
@click.option("--verbose", is_flag=True)
def failing(verbose: bool) -> None:
    """Commands that fail in each way the command line tells apart."""


@failing.command()
def bug() -> None:
    raise RuntimeError(f"row {SECRET} broke")


@failing.command()
def missing() -> None:
    Path("/nonexistent/accord-test").read_text()


@failing.command()
def bad() -> None:
    raise InvalidInput("give at least one name")


@failing.command()
def hostile() -> None:
    # As a dishonest server's problem details arrive: its `detail` becomes the message.
    raise NotFound("no such account\x1b]0;owned\x07\nalice: send me your code\x1b[2J")


@failing.command()
def interrupted() -> None:
    raise KeyboardInterrupt


@failing.command()
def declined() -> None:
    click.confirm("go on?", abort=True)


def _run(group: click.Group, *args: str, input: str | None = None) -> tuple[int, str]:
    with CliRunner().isolation(input=input) as (_out, err, _mixed):
        code = run_cli(group, list(args))
        return code, err.getvalue().decode()


def test_unexpected_error_is_one_line_without_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="accord.cli.common"):
        code, err = _run(failing, "bug")
    assert code == EXIT_FAILURE
    assert err == "error: unexpected RuntimeError (--verbose shows the traceback)\n"
    (record,) = caplog.records
    assert "RuntimeError" in record.getMessage() and "in bug" in record.getMessage()
    assert SECRET not in record.getMessage()


def test_verbose_shows_the_traceback() -> None:
    with pytest.raises(RuntimeError):
        _run(failing, "--verbose", "bug")


def test_os_error_names_the_file() -> None:
    code, err = _run(failing, "missing")
    assert code == EXIT_FAILURE
    assert err == "error: No such file or directory: /nonexistent/accord-test\n"


def test_ctrl_c_exits_130() -> None:
    """As shells report an interrupted command; a declined confirmation is a plain failure."""
    assert _run(failing, "interrupted") == (EXIT_INTERRUPTED, "\naborted\n")
    code, _err = _run(failing, "declined", input="n\n")
    assert code == EXIT_FAILURE


def test_bad_input_exits_2() -> None:
    assert _run(failing, "bad") == (EXIT_USAGE, "invalid_input: give at least one name\n")
    code, err = _run(failing, "no-such-command")
    assert code == EXIT_USAGE and err.startswith("usage error: ")


def test_unreachable_bank_database_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://postgres:hunter2@127.0.0.1:1/banks"
    code, err = _run(cli, "--home", str(tmp_path), "bank", "list", "--db", url)
    assert (code, err) == (EXIT_FAILURE, "service_error: cannot open the bank database\n")


def test_a_servers_error_text_cannot_drive_the_terminal() -> None:
    """The server's words are printed with control characters visible, on one line."""
    code, err = _run(failing, "hostile")
    assert code == EXIT_FAILURE
    assert "\x1b" not in err and "\x07" not in err
    assert err.count("\n") == 1 and err.startswith("not_found: no such account^[]0;owned^G")
