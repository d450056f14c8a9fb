"""``accord witness``: create a witness key and run a C2SP tlog-witness."""

from __future__ import annotations

from pathlib import Path

import click

from accord.cli.common import home_dir, key_out_option, read_private_key, write_key_pair
from accord.cli.extras import require_extra
from accord.errors import InvalidInput
from accord.protocols.translog.note import CosignatureSigner, generate_cosigner, parse_skey

DEFAULT_PORT = 7380


@click.group("witness")
def witness() -> None:
    """Run a transparency log witness (c2sp.org/tlog-witness)."""


@witness.command("keygen")
@click.argument("name")
@key_out_option
def keygen(name: str, out: Path) -> None:
    """Create a cosigning key for witness NAME (e.g. witness.example.org/w1); print its vkey."""
    skey, vkey = generate_cosigner(name)
    write_key_pair(out, skey, vkey)
    click.echo(vkey)


def load_cosigner(path: Path) -> CosignatureSigner:
    signer = parse_skey(read_private_key(path, "witness key"))
    if not isinstance(signer, CosignatureSigner):
        raise InvalidInput("the witness key must be a cosignature key (from `witness keygen`)")
    return signer


@witness.command("serve")
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The witness private key (from `accord witness keygen`).",
)
@click.option(
    "--log-vkey",
    "log_vkeys",
    required=True,
    multiple=True,
    help="A log's verifier key; its name is the log's origin. Repeat for several logs.",
)
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (default: <home>/witness).",
)
@click.pass_context
def serve(
    ctx: click.Context,
    key_path: Path,
    log_vkeys: tuple[str, ...],
    port: int,
    host: str,
    state_dir: Path | None,
) -> None:
    """Serve POST /add-checkpoint for the given logs."""
    require_extra("server", "fastapi", "uvicorn")
    import uvicorn

    from accord.clock import OffsetFileClock, clock_from_env
    from accord.witness import create_witness_app
    from accord.witness.service import logs_from_vkeys

    cosigner = load_cosigner(key_path)
    logs = logs_from_vkeys(list(log_vkeys))
    clock = clock_from_env()  # cosignature timestamps (V5); tests move it
    if isinstance(clock, OffsetFileClock):
        click.echo(f"TESTING CLOCK: system time plus the offset in {clock.path}", err=True)
    app = create_witness_app(
        cosigner=cosigner,
        logs=logs,
        state_dir=state_dir or home_dir(ctx) / "witness",
        clock=clock.time,
    )
    click.echo(f"witness {cosigner.vkey} on http://{host}:{port}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
