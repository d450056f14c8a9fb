"""The `accord` command line. The only place that prints or exits."""

from __future__ import annotations

import sys

import click

from accord.cli.access import register as register_access
from accord.cli.common import run_cli
from accord.cli.detection import register as register_detection
from accord.cli.log import register as register_log
from accord.cli.matching import register as register_matching
from accord.cli.messaging import register as register_messaging
from accord.cli.review import register as register_review
from accord.cli.witness import register as register_witness


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    envvar="ACCORD_HOME",
    default=None,
    help="Client state directory (default ~/.accord).",
)
@click.option("--verbose", is_flag=True, help="Show tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, home: str | None, verbose: bool) -> None:
    """Accord: end-to-end encrypted messaging with public safety enforced by cryptography."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home
    ctx.obj["verbose"] = verbose


register_messaging(cli)
register_review(cli)
register_detection(cli)
register_matching(cli)
register_witness(cli)
register_log(cli)
register_access(cli)


def main() -> None:
    sys.exit(run_cli(cli))
