"""`accord log`: the transparency log as anyone can see it."""

from __future__ import annotations

import json

import click

from accord.cli.access import report_json, report_lines
from accord.cli.common import home_dir
from accord.client.audit import audit_log, fetch_checkpoint


@click.group("log")
def log_group() -> None:
    """Inspect and audit the server's transparency log."""


@log_group.command("checkpoint")
@click.option("--server", required=True)
def log_checkpoint(server: str) -> None:
    """Print the log's current checkpoint (a signed note)."""
    click.echo(fetch_checkpoint(server), nl=False)


@log_group.command("audit")
@click.option("--server", required=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def log_audit(ctx: click.Context, server: str, as_json: bool) -> None:
    """Fetch every entry, recompute the tree, check it extends what was seen, count by type."""
    result = audit_log(server, home_dir(ctx))
    if as_json:
        out = result.to_json()
        if result.access is not None:
            out["lawful_access"] = report_json(result.access)
        click.echo(json.dumps(out))
        return
    click.echo(f"log {result.origin}: {result.size} entries, root {result.root}")
    if result.previous_size is not None:
        click.echo(f"consistent with the checkpoint seen before (size {result.previous_size})")
    for kind, count in result.counts.items():
        click.echo(f"  {kind}: {count}")
    if result.invalid:
        click.echo(f"  entries failing their checks: {result.invalid}")
    if result.access is not None and (result.access.warrants or result.access.approver_sets):
        click.echo("lawful access (recomputed from the log):")
        for line in report_lines(result.access):
            click.echo(f"  {line}")
