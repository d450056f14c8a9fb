"""`accord report` (users) and `accord reviewer` (operators)."""

from __future__ import annotations

import sys

import click

from accord.cli.common import admin_token, server_option
from accord.cli.messaging import open_client
from accord.client.operator import OperatorApi
from accord.errors import InvalidInput


@click.command()
@click.argument("message_id")
@click.option("--reason", default="", help="Why you report it (shown to reviewers).")
@click.option(
    "--context",
    type=click.IntRange(0, 50),
    default=0,
    show_default=True,
    help="Also reveal up to N earlier messages of the conversation.",
)
@click.pass_context
def report(ctx: click.Context, message_id: str, reason: str, context: int) -> None:
    """Report a received message (its id as `receive --json` printed it). Prints the report
    id. (An id that starts with "-", from older clients, goes after "--".)"""
    with open_client(ctx) as client:
        report_id = client.report(message_id, reason=reason, context=context)
    click.echo(report_id)


@click.command()
@click.argument("text")
@click.pass_context
def appeal(ctx: click.Context, text: str) -> None:
    """Appeal this account's suspension (the decision arrives as a notice).

    TEXT goes to trust and safety (at most 2000 characters); the decision arrives as a notice
    on `receive`."""
    with open_client(ctx) as client:
        appeal_id = client.appeal(text)
    click.echo(f"appeal {appeal_id} filed; the decision will arrive as a notice")


@click.group()
def reviewer() -> None:
    """Reviewer accounts of the trust-and-safety console (operator commands)."""


def _read_password() -> str:
    if sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise InvalidInput("no password given")
    return str(password)


@reviewer.command("create")
@click.argument("name")
@server_option
@click.option("--role", type=click.Choice(["reviewer", "admin"]), default="reviewer")
@click.option(
    "--admin-token",
    "token",
    default=None,
    help="Operator token (else ACCORD_ADMIN_TOKEN).",
)
def create_reviewer(name: str, server: str, role: str, token: str | None) -> None:
    """Create a reviewer; the password is prompted, or read from stdin when it is not a
    terminal."""
    password = _read_password()
    op = OperatorApi(server, admin_token(token))
    try:
        op.api.request(
            "POST", "/v1/reviewers", json={"name": name, "password": password, "role": role}
        )
    finally:
        op.close()
    click.echo(f"reviewer {name} ({role}) created; the console is at {server.rstrip('/')}/console")
