"""Shared CLI plumbing: error reporting, exit codes, admin tokens."""

from __future__ import annotations

import logging
import os
import stat
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from accord.errors import AccordError, InvalidInput

if TYPE_CHECKING:
    from accord.primitives.storage_crypto import KdfCost

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
USAGE_CODES = frozenset({"anchors_tampered"})
"""Errors that are not input errors but stop a command as one (exit 2): the home's stored
trust anchors were changed on disk, and no command may run on it."""

logger = logging.getLogger(__name__)
# An unexpected error's stack goes to whatever logging the embedding program set up (nowhere by
# default): the terminal gets one line, and the traceback itself only with --verbose.
logger.addHandler(logging.NullHandler())


def _say_error(exc: AccordError) -> None:
    """One line on stderr. A server's problem details reach here too: its words, like a
    sender's, are shown with control characters visible and drive nothing."""
    from accord.client.terminal_text import printable

    click.echo(printable(exc.diagnostics()), err=True)


def run_cli(
    group: click.Group,
    args: Sequence[str] | None = None,
    *,
    obj: dict[str, Any] | None = None,
) -> int:
    """Run the click group; turn every expected error into one line and an exit code.

    `args` defaults to the process's own arguments; `obj` seeds the context object (in-process
    callers such as the tests pass settings there that no command-line option exposes).
    """
    argv = list(sys.argv[1:] if args is None else args)
    verbose = "--verbose" in argv
    try:
        # Without standalone mode, click returns the code a command exits with (`ctx.exit(N)`).
        code = group.main(args=argv, standalone_mode=False, obj=obj)
        return code if isinstance(code, int) and not isinstance(code, bool) else 0
    except click.exceptions.Abort as exc:
        click.echo("aborted", err=True)
        interrupted = isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt)
        return EXIT_INTERRUPTED if interrupted else EXIT_FAILURE
    except click.UsageError as exc:
        click.echo(f"usage error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return EXIT_USAGE
    except InvalidInput as exc:
        if verbose:
            raise
        _say_error(exc)
        return EXIT_USAGE
    except AccordError as exc:
        if verbose:
            raise
        _say_error(exc)
        return EXIT_USAGE if exc.code in USAGE_CODES else EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file or socket the command used: say which, and why
        if verbose:
            raise
        click.echo(f"error: {describe_os_error(exc)}", err=True)
        return EXIT_FAILURE
    except Exception as exc:  # a bug, or a library error not converted where it entered our code
        if verbose:
            raise
        # The stack, not the message: a library's message may quote data (SQL parameters...).
        stack = "".join(traceback.format_tb(exc.__traceback__))
        logger.error("command failed with %s\n%s", type(exc).__name__, stack)
        click.echo(
            f"error: unexpected {type(exc).__name__} (--verbose shows the traceback)", err=True
        )
        return EXIT_FAILURE


def describe_os_error(exc: OSError) -> str:
    """`No such file or directory: /path`, or the reason alone where there is no path."""
    reason = exc.strerror or type(exc).__name__
    return f"{reason}: {exc.filename}" if exc.filename else reason


def home_dir(ctx: click.Context) -> Path:
    home = ctx.find_root().obj.get("home") if ctx.find_root().obj else None
    return Path(home) if home else Path.home() / ".accord"


def kdf_cost(ctx: click.Context) -> KdfCost:
    """The Argon2id cost for a new local store: RFC 9106's, unless an in-process caller (the
    tests) put a lower one in the context object; no option or variable exposes it."""
    from accord.primitives.storage_crypto import DEFAULT_KDF_COST, KdfCost

    obj = ctx.find_root().obj or {}
    cost = obj.get("kdf_cost")
    return cost if isinstance(cost, KdfCost) else DEFAULT_KDF_COST


def admin_token(value: str | None) -> str:
    token = value or os.environ.get("ACCORD_ADMIN_TOKEN")
    if not token:
        raise InvalidInput("an operator command needs --admin-token or ACCORD_ADMIN_TOKEN")
    return token


def admin_token_option(f: Any) -> Any:
    return click.option(
        "--admin-token", default=None, help="Operator token (else ACCORD_ADMIN_TOKEN)."
    )(f)


def write_key_pair(out: Path, skey: str, vkey: str) -> None:
    """Write a private key to `out` (mode 0600, never over an existing file) and its verifier
    key to `out`.pub."""
    pub = out.with_name(out.name + ".pub")
    for path in (out, pub):
        if path.exists():
            raise InvalidInput(f"{path} exists; refusing to overwrite a key")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot create {out}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(skey + "\n")
    pub.write_text(vkey + "\n", encoding="utf-8")


def read_private_key(path: Path, what: str) -> str:
    """A private key file's text, refused if other users can read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise InvalidInput(f"cannot read the {what} {path}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(f"{path} is accessible by other users; chmod 600 it")
    return text


def key_out_option(f: Any) -> Any:
    """`--out FILE` for a command that makes a key pair (`write_key_pair`)."""
    return click.option(
        "--out",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write the private key here (mode 0600) and the public key to FILE.pub.",
    )(f)


def _server_or_configured(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    """`--server`, else ACCORD_SERVER (click read both), else the home's config.toml."""
    if value:
        return value
    from accord.client.settings import read_client_settings

    configured = read_client_settings(home_dir(ctx)).server
    if not configured:
        raise click.MissingParameter(ctx=ctx, param=param)
    return configured


server_option = click.option(
    "--server",
    envvar="ACCORD_SERVER",
    default=None,
    callback=_server_or_configured,
    help="Server base URL, e.g. http://127.0.0.1:8000 (else ACCORD_SERVER, else `server` in "
    "HOME/config.toml).",
)
"""`--server`: the flag, else ACCORD_SERVER, else the home's config.toml (every command that
talks to one)."""
