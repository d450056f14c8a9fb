"""`accord matching ...`: publish blinded tables, watch processing, list review events.

Operator commands take `--server` and `--admin-token` (or ACCORD_ADMIN_TOKEN). Review events
take a reviewer session token (`--token` or ACCORD_REVIEW_TOKEN) or the operator token.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import click

from accord.cli.common import admin_token, server_option
from accord.client.api import ServerApi
from accord.client.operator import OperatorApi
from accord.errors import InvalidInput
from accord.wire.matching import (
    MatchingStatus,
    PublishJob,
    ReviewEventDetail,
    ReviewEventList,
    TableSummary,
)


def _operator(server: str, token: str | None) -> OperatorApi:
    return OperatorApi(server, admin_token(token))


def _reviewer(server: str, token: str | None) -> ServerApi:
    value = token or os.environ.get("ACCORD_REVIEW_TOKEN") or os.environ.get("ACCORD_ADMIN_TOKEN")
    if not value:
        raise InvalidInput("give --token, ACCORD_REVIEW_TOKEN or ACCORD_ADMIN_TOKEN")
    return ServerApi(server, token=lambda _refresh: value)


_JOB_STEPS = {
    "reading": "reading the banks",
    "building": "blinding the table",
    "logging": "logging the digest",
    "done": "published",
    "failed": "failed",
}


def _table_line(t: TableSummary) -> str:
    state = "current" if t.retired_at is None else "retired"
    delta = f" delta_from={t.delta_from} delta_size={t.delta_size}" if t.delta_from else ""
    return (
        f"table {t.table_version} ({state}) digest={t.digest} banked_hashes={t.banked_hashes} "
        f"size={t.size} log_index={t.log_index} threshold={t.params.threshold}{delta}"
    )


@click.group("matching")
def matching_group() -> None:
    """Private threshold matching: blinded tables and review events."""


@matching_group.command("publish")
@server_option
@click.option("--admin-token", "token", default=None, help="Operator token.")
@click.option("--bank", "banks", multiple=True, help="Bank to include (default: every bank).")
@click.option("--threshold", type=click.IntRange(2, 64), default=None, help="Matches needed (t).")
@click.option("--bands", type=click.IntRange(1, 128), default=None, help="Bands per hash (L).")
@click.option("--band-bits", type=click.IntRange(8, 128), default=None, help="Bits per band.")
@click.option(
    "--synthetic-ppm", type=click.IntRange(0, 200_000), default=None, help="Synthetic rate p."
)
@click.option("--json", "as_json", is_flag=True)
def publish(
    server: str,
    token: str | None,
    banks: tuple[str, ...],
    threshold: int | None,
    bands: int | None,
    band_bits: int | None,
    synthetic_ppm: int | None,
    as_json: bool,
) -> None:
    """Build a blinded table from the banks' enabled PDQ hashes, log its digest, and make it the
    table clients use. The server builds it in the background; this shows its progress."""
    body: dict[str, Any] = {"banks": list(banks)}
    for key, value in (
        ("threshold", threshold),
        ("band_count", bands),
        ("band_bits", band_bits),
        ("synthetic_rate_ppm", synthetic_ppm),
    ):
        if value is not None:
            body[key] = value
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    op = _operator(server, token)
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeRemainingColumn(),
            transient=True,
            console=Console(stderr=True),
        ) as bar:
            task = bar.add_task("reading the banks", total=None)

            def show(job: PublishJob) -> None:
                bar.update(
                    task,
                    description=_JOB_STEPS.get(job.state, job.state),
                    completed=job.slots_done,
                    total=job.slots or None,
                )

            summary = op.publish_table(body, progress=show)
    finally:
        op.close()
    if as_json:
        click.echo(summary.model_dump_json())
        return
    click.echo(f"published {_table_line(summary)}")


@matching_group.command("status")
@server_option
@click.option("--admin-token", "token", default=None, help="Operator token.")
@click.option("--json", "as_json", is_flag=True)
def status(server: str, token: str | None, as_json: bool) -> None:
    """Tables, queued vouchers and counts."""
    op = _operator(server, token)
    try:
        result = MatchingStatus.model_validate(op.api.request("GET", "/v1/matching/status"))
    finally:
        op.close()
    if as_json:
        click.echo(result.model_dump_json())
        return
    for t in result.tables:
        click.echo(_table_line(t))
    click.echo(
        f"queued={result.queued} accounts={result.accounts} "
        f"processed={result.vouchers_processed} rejected={result.vouchers_rejected} "
        f"opened_shares={result.opened_shares} crossings={result.crossings} "
        f"unlogged={result.crossings_unlogged} "
        f"events={result.events}"
    )


@matching_group.command("events")
@server_option
@click.option("--token", default=None, help="Reviewer session token (or the operator token).")
@click.option("--account", default=None, help="Only this account's events.")
@click.option("--json", "as_json", is_flag=True)
def events(server: str, token: str | None, account: str | None, as_json: bool) -> None:
    """Review events (threshold crossings with their confirmed images), newest first."""
    api = _reviewer(server, token)
    try:
        params = {"account": account} if account else None
        listing = ReviewEventList.model_validate(
            api.request("GET", "/v1/review/events", params=params)
        )
    finally:
        api.close()
    if as_json:
        click.echo(listing.model_dump_json())
        return
    for e in listing.events:
        click.echo(
            f"{e.event_id} {e.kind} {e.status} account={e.account} device={e.device_id} "
            f"images={e.images} discarded={e.discarded_band_collisions} log_index={e.log_index}"
        )


@matching_group.command("event")
@click.argument("event_id")
@server_option
@click.option("--token", default=None, help="Reviewer session token (or the operator token).")
@click.option(
    "--save-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Write each image's 64 x 64 derivative here as PNG.",
)
@click.option("--json", "as_json", is_flag=True)
def event(
    event_id: str, server: str, token: str | None, save_dir: str | None, as_json: bool
) -> None:
    """One review event: each confirmed image's bank entry, distance and derivative."""
    api = _reviewer(server, token)
    try:
        detail = ReviewEventDetail.model_validate(
            api.request("GET", f"/v1/review/events/{event_id}")
        )
    finally:
        api.close()
    if save_dir:
        folder = Path(save_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for image in detail.images:
            (folder / f"{event_id}-{image.index}.png").write_bytes(
                base64.b64decode(image.derivative_png)
            )
    if as_json:
        click.echo(json.dumps(detail.model_dump(mode="json")))
        return
    e = detail.event
    click.echo(f"{e.event_id} {e.kind} account={e.account} device={e.device_id} epoch={e.epoch}")
    for image in detail.images:
        click.echo(
            f"  image {image.index}: bank={image.bank} entry={image.entry_id} "
            f"distance={image.distance} label={image.label or '-'}"
        )
