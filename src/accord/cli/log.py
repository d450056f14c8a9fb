"""`accord log`: the transparency log as anyone can see it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from accord.cli.access import report_json, report_lines
from accord.cli.common import home_dir, server_option
from accord.cli.manifest import read_manifest
from accord.cli.terminal import printable
from accord.client.audit import audit_log, fetch_checkpoint
from accord.protocols.manifest import verify_manifest


@click.group("log")
def log_group() -> None:
    """Inspect and audit the server's transparency log."""


@log_group.command("checkpoint")
@server_option
def log_checkpoint(server: str) -> None:
    """Print the log's current checkpoint (a signed note)."""
    click.echo(fetch_checkpoint(server), nl=False)


@log_group.command("audit")
@server_option
@click.option(
    "--manifest",
    "manifest_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also check the checkpoint's witness cosignatures and age against this manifest.",
)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def log_audit(ctx: click.Context, server: str, manifest_path: Path | None, as_json: bool) -> None:
    """Fetch every entry, recompute the tree, check it extends what was seen, count by type,
    and check the daily review counts.

    Exits 1 if anything was found invalid (against the manifest too, with --manifest).
    """
    manifest = None if manifest_path is None else verify_manifest(read_manifest(manifest_path))
    result = audit_log(server, home_dir(ctx), manifest=manifest)
    if as_json:
        out = result.to_json()
        if result.access is not None:
            out["lawful_access"] = report_json(result.access)
        click.echo(json.dumps(out))
        if result.findings:
            ctx.exit(1)
        return
    click.echo(f"log {result.origin}: {result.size} entries, root {result.root}")
    if result.previous_size is not None:
        click.echo(f"consistent with the checkpoint seen before (size {result.previous_size})")
    for kind, count in result.counts.items():
        click.echo(f"  {kind}: {count}")
    if result.invalid:
        click.echo(f"  entries failing their checks: {result.invalid}")
    kt = result.key_transparency
    if kt is not None:
        click.echo(
            f"key transparency: {kt.accounts} accounts, {kt.changes} device changes, "
            f"{kt.map_heads} map heads replayed"
        )
    review = result.review
    if review is not None and review.days:
        click.echo(
            f"review counts: {review.days} days ({review.first_day} to {review.last_day}); "
            f"{review.threshold_events_first_reviewed} threshold events first reviewed, "
            f"{review.threshold_crossings} crossings logged"
        )
        for kind, totals in (("reports", review.reports), ("threshold events", review.events)):
            actions = ", ".join(f"{action} {n}" for action, n in totals.items())
            click.echo(f"  {kind}: {actions}")
    if result.access is not None and (result.access.warrants or result.access.approver_sets):
        click.echo("lawful access (recomputed from the log):")
        for line in report_lines(result.access):
            click.echo(f"  {line}")
    if result.findings:
        click.echo(f"INVALID: {len(result.findings)} finding(s):")
        for line in result.findings:
            click.echo(f"  {printable(line)}")
        ctx.exit(1)
