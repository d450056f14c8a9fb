"""The `accord` command line. The only place that prints or exits.

Each command lives in a module that imports what it needs (the client, SQLAlchemy, numpy...).
Those modules are imported only when their command runs or its own help is asked for, so that
`accord --help` and shell completion of command names start quickly; the one-line summaries
shown there are declared below (tests/unit/cli checks they match the commands' own help), with
the extra a command needs: without it, the command says which one to install (exit status 2).
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from dataclasses import dataclass
from typing import Any

import click
from click.shell_completion import CompletionItem

from accord.cli.common import run_cli
from accord.cli.extras import require_extra


@dataclass(frozen=True)
class LazyCommand:
    """Where a top-level command is defined (`module:attribute`), its one-line help, and the
    extra of the install it needs (None: the base install) with the modules that extra brings."""

    target: str
    help: str
    extra: str | None = None
    modules: tuple[str, ...] = ()


#: What the operator's side of the install brings (`accord[server]`).
SERVER_MODULES = ("fastapi", "uvicorn", "sqlalchemy", "alembic", "jinja2", "cv2")
#: Banks and matching are kept in SQL and verified with local features.
BANK_MODULES = ("sqlalchemy", "alembic", "cv2")


COMMANDS: dict[str, LazyCommand] = {
    "account": LazyCommand("accord.cli.messaging:account", "Create and inspect your account."),
    "agent": LazyCommand(
        "accord.cli.agent:agent",
        "Keep this home's store key unlocked for a while (opt-in, like ssh-agent).",
    ),
    "agency": LazyCommand(
        "accord.cli.access:agency_group",
        "Agencies: their HPKE keys, registration, and fetching intercepted records.",
    ),
    "appeal": LazyCommand(
        "accord.cli.review:appeal",
        "Appeal this account's suspension (the decision arrives as a notice).",
    ),
    "approver": LazyCommand(
        "accord.cli.access:approver_group",
        "Approvers of lawful-access warrants (k of n must sign each).",
    ),
    "approver-set": LazyCommand(
        "accord.cli.access:approver_set_group",
        "Create and publish the set of approvers and its threshold.",
    ),
    "bank": LazyCommand(
        "accord.cli.detection:bank_group",
        "Manage hash banks (named hash lists).",
        "server",
        BANK_MODULES,
    ),
    "chat": LazyCommand(
        "accord.cli.chat:chat",
        "Chat: conversations, live messages, groups, attachments, devices and safety notices.",
    ),
    "contact": LazyCommand(
        "accord.cli.messaging:contact",
        "Contacts' keys: the safety code to compare in person, and verification.",
    ),
    "demo": LazyCommand(
        "accord.cli.demo:demo",
        "The whole story on embedded SQLite in a temporary directory.",
        "server",
        SERVER_MODULES,
    ),
    "device": LazyCommand("accord.cli.messaging:device", "Link a new device to an account."),
    "eval": LazyCommand(
        "accord.cli.detection:eval_group",
        "Measure how well things work.",
        "eval",
        ("matplotlib", *BANK_MODULES),
    ),
    "group": LazyCommand("accord.cli.messaging:group", "Create groups and change their members."),
    "hash": LazyCommand(
        "accord.cli.detection:hash_command",
        "Hash files: PDQ and quality for images, vPDQ for videos, MD5 and SHA-256 for all.",
    ),
    "history": LazyCommand(
        "accord.cli.messaging:history",
        "Print the stored conversation with NAME, or in --group (every message if neither).",
    ),
    "log": LazyCommand(
        "accord.cli.log:log_group", "Inspect and audit the server's transparency log."
    ),
    "manifest": LazyCommand(
        "accord.cli.manifest:manifest_group",
        "Deployment manifests: the signed trust anchors clients are set up with.",
    ),
    "match": LazyCommand(
        "accord.cli.detection:match_command",
        "Match files against banks (hashing here; with --server, matching on the server).",
        "server",
        BANK_MODULES,
    ),
    "matching": LazyCommand(
        "accord.cli.matching:matching_group",
        "Private threshold matching: blinded tables and review events.",
    ),
    "receive": LazyCommand(
        "accord.cli.messaging:receive", "Fetch, verify, decrypt, store and print new messages."
    ),
    "report": LazyCommand(
        "accord.cli.review:report",
        "Report a received message (its id as `receive --json` printed it).",
    ),
    "reviewer": LazyCommand(
        "accord.cli.review:reviewer",
        "Reviewer accounts of the trust-and-safety console (operator commands).",
    ),
    "send": LazyCommand(
        "accord.cli.messaging:send",
        "send NAME TEXT, or send --group GROUP TEXT. Prints the message id.",
    ),
    "server": LazyCommand(
        "accord.cli.server:server", "Run the Accord server.", "server", SERVER_MODULES
    ),
    "warrant": LazyCommand(
        "accord.cli.access:warrant_group",
        "Draft, sign, submit and list lawful-access warrants.",
    ),
    "witness": LazyCommand(
        "accord.cli.witness:witness",
        "Run a transparency log witness (c2sp.org/tlog-witness).",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported the first time one of them is needed.

    Listing them (`--help`, completing their names) uses the declared one-line help instead.
    """

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in self.lazy:
            command = self._load(cmd_name)
        return command

    def _load(self, name: str) -> click.Command:
        declared = self.lazy[name]
        if declared.extra is not None:
            require_extra(declared.extra, *declared.modules)
        module_name, _, attribute = declared.target.partition(":")
        _skip_httpx_command_line()
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[name].target} is not a click command")
        self.add_command(command, name)
        return command

    def summary(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command if it is loaded, otherwise a stand-in carrying its declared help."""
        command = super().get_command(ctx, name)
        if command is None and name in self.lazy:
            command = click.Command(name, help=self.lazy[name].help)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands = []
        for name in self.list_commands(ctx):
            command = self.summary(ctx, name)
            if command is not None and not command.hidden:
                commands.append((name, command))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            rows = [(name, command.get_short_help_str(limit)) for name, command in commands]
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        results = []
        for name in self.list_commands(ctx):
            command = self.summary(ctx, name) if name.startswith(incomplete) else None
            if command is not None and not command.hidden:
                results.append(CompletionItem(name, help=command.get_short_help_str()))
        # The group's own options, as click.Group would add them.
        results.extend(click.Command.shell_complete(self, ctx, incomplete))
        return results


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="ACCORD_HOME",
    default=None,
    help="Client state directory (default ~/.accord).",
)
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="accord", prog_name="accord", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: bool) -> None:
    """Accord: end-to-end encrypted messaging with public safety enforced by cryptography."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    ctx.obj["verbose"] = verbose


def _skip_httpx_command_line() -> None:
    """httpx's package imports its own command-line tool (`httpx._main`, which loads rich and
    pygments: about a tenth of `accord send`'s start-up) though requests never need it.
    Commands have no use for it, so before one is loaded an inert module takes its place, unless
    httpx is loaded already."""
    if "httpx" in sys.modules:
        return
    stand_in = types.ModuleType("httpx._main")

    def unavailable() -> None:
        raise SystemExit("httpx's command line is not available inside accord")

    stand_in.main = unavailable  # type: ignore[attr-defined]
    sys.modules.setdefault("httpx._main", stand_in)


def main() -> None:
    # The models carry message text, keys and hashes: no installed pydantic plugin gets to see
    # them (an operator who wants one sets the variable to ""). It also spares every command
    # pydantic's scan of all installed packages' entry points.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    sys.exit(run_cli(cli))
