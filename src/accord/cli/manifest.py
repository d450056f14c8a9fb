"""`accord manifest`: make, sign, show and install a deployment's signed trust anchors.

A deployment's operators (or better, independent signers: k of n) make one manifest and ship it
with the client; clients take it at account creation (`--manifest FILE` or ACCORD_MANIFEST) and
never learn these anchors from the server (docs/protocol/transparency.md, "Deployment manifest").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from accord.cli.common import key_out_option, read_private_key, write_key_pair
from accord.cli.terminal import printable
from accord.errors import AccordError, InvalidInput
from accord.protocols.access.timeparse import format_duration, parse_duration
from accord.protocols.manifest import (
    DEFAULT_MAX_CHECKPOINT_AGE_S,
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
    MAX_MANIFEST_BYTES,
    Manifest,
    MatchingFloors,
    build_manifest,
    parse_manifest_text,
    sign_manifest,
    verify_manifest,
)
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.protocols.translog.note import (
    CosignatureSigner,
    Signer,
    add_signatures,
    generate_signer,
    parse_skey,
    parse_unverified_note,
    verify_note,
)

MANIFEST_ENV = "ACCORD_MANIFEST"


def read_manifest(path: Path) -> str:
    """A manifest file's text (a signed note), at most `MAX_MANIFEST_BYTES`; not yet verified."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise InvalidInput(f"cannot read the manifest {path}: {exc.strerror}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidInput(f"{path} is larger than a manifest can be")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not a manifest (not UTF-8)") from None


def manifest_path_option(what: str) -> Callable[[click.decorators.FC], click.decorators.FC]:
    """`--manifest FILE`, else ACCORD_MANIFEST (the parameter `manifest_path`)."""
    return click.option(
        "--manifest",
        "manifest_path",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar=MANIFEST_ENV,
        default=None,
        help=f"{what} (else {MANIFEST_ENV}).",
    )


def manifest_option(f: click.decorators.FC) -> click.decorators.FC:
    """`--manifest FILE` (else ACCORD_MANIFEST) and `--insecure-dev`, for commands that set up
    a new device."""
    f = click.option(
        "--insecure-dev",
        is_flag=True,
        help="No manifest: trust the server for the log's key (development only; every later "
        "command says so).",
    )(f)
    return manifest_path_option("The deployment manifest")(f)


def manifest_setting(manifest_path: Path | None, insecure_dev: bool) -> str | None:
    """The manifest's text for `AccordClient.create_account(manifest=...)`; None in insecure
    development mode (the client refuses neither: `manifest_required`)."""
    if insecure_dev:
        return None
    return None if manifest_path is None else read_manifest(manifest_path)


def _load_signer(path: Path) -> Signer:
    signer = parse_skey(read_private_key(path, "manifest signing key"))
    if isinstance(signer, CosignatureSigner):
        raise InvalidInput(f"{path} is a witness key; manifests are signed with note keys")
    return signer


@click.group("manifest")
def manifest_group() -> None:
    """Deployment manifests: the signed trust anchors clients are set up with."""


@manifest_group.command("keygen")
@click.argument("name")
@key_out_option
def keygen(name: str, out: Path) -> None:
    """Create a manifest signing key for signer NAME (e.g. example.org/manifest-1)."""
    skey, vkey = generate_signer(name)
    write_key_pair(out, skey, vkey)
    click.echo(vkey)


def _log_from_server(server: str) -> str:
    from accord.client.api import ServerApi

    api = ServerApi(server)
    try:
        return str(api.request("GET", "/v1/log/info", auth=False)["vkey"])
    finally:
        api.close()


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_duration(value)
    except AccordError as exc:
        raise click.BadParameter(exc.message) from None


@manifest_group.command("create")
@click.option("--deployment", required=True, help="The deployment's name, e.g. example.org.")
@click.option("--serial", type=click.IntRange(1, 2**53 - 1), default=1, show_default=True)
@click.option("--log-vkey", default=None, help="The transparency log's verifier key.")
@click.option(
    "--server",
    default=None,
    help="Read the log's key from this server's /v1/log/info instead (at deployment time).",
)
@click.option("--witness", "witnesses", multiple=True, required=True, help="A witness vkey.")
@click.option(
    "--quorum", type=click.IntRange(1), default=None, help="Witnesses needed (default: all)."
)
@click.option("--approver-set", required=True, help="The approvers' genesis set hash (hex).")
@click.option(
    "--max-checkpoint-age",
    callback=_duration,
    default=format_duration(DEFAULT_MAX_CHECKPOINT_AGE_S),
    show_default=True,
)
@click.option(
    "--max-disclosure-delay",
    callback=_duration,
    default=format_duration(DEFAULT_MAX_DISCLOSURE_DELAY_S),
    show_default=True,
)
@click.option(
    "--max-start-skew",
    callback=_duration,
    default=format_duration(DEFAULT_MAX_START_SKEW_S),
    show_default=True,
)
@click.option(
    "--floor-min-threshold", type=int, default=DEFAULT_MATCHING_FLOORS.min_threshold,
    show_default=True,
)  # fmt: skip
@click.option(
    "--floor-min-synthetic-ppm", type=int, default=DEFAULT_MATCHING_FLOORS.min_synthetic_rate_ppm,
    show_default=True,
)  # fmt: skip
@click.option(
    "--floor-min-band-bits", type=int, default=DEFAULT_MATCHING_FLOORS.min_band_bits,
    show_default=True,
)  # fmt: skip
@click.option(
    "--floor-max-band-count", type=int, default=DEFAULT_MATCHING_FLOORS.max_band_count,
    show_default=True,
)  # fmt: skip
@click.option(
    "--floor-max-epoch-images", type=int, default=DEFAULT_MATCHING_FLOORS.max_epoch_images,
    show_default=True,
)  # fmt: skip
@click.option(
    "--floor-max-table-slots", type=int, default=DEFAULT_MATCHING_FLOORS.max_table_slots,
    show_default=True,
)  # fmt: skip
@click.option(
    "--signer-key",
    "signer_keys",
    multiple=True,
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A signer's private key (from `manifest keygen`); each one given signs now.",
)
@click.option(
    "--signer", "more_signers", multiple=True, help="Another signer's vkey (signs later)."
)
@click.option("--signer-quorum", type=click.IntRange(1), default=1, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
def create(
    deployment: str,
    serial: int,
    log_vkey: str | None,
    server: str | None,
    witnesses: tuple[str, ...],
    quorum: int | None,
    approver_set: str,
    max_checkpoint_age: int,
    max_disclosure_delay: int,
    max_start_skew: int,
    floor_min_threshold: int,
    floor_min_synthetic_ppm: int,
    floor_min_band_bits: int,
    floor_max_band_count: int,
    floor_max_epoch_images: int,
    floor_max_table_slots: int,
    signer_keys: tuple[Path, ...],
    more_signers: tuple[str, ...],
    signer_quorum: int,
    out: Path,
) -> None:
    """Write a new manifest to --out, signed by each --signer-key."""
    if (log_vkey is None) == (server is None):
        raise InvalidInput("give --log-vkey or --server (one of them)")
    vkey = log_vkey if log_vkey is not None else _log_from_server(str(server))
    signers = [_load_signer(p) for p in signer_keys]
    manifest = build_manifest(
        deployment=deployment,
        serial=serial,
        log_vkey=vkey,
        witnesses=witnesses,
        witness_quorum=quorum,
        approver_genesis_set=approver_set.lower(),
        max_checkpoint_age_s=max_checkpoint_age,
        max_disclosure_delay_s=max_disclosure_delay,
        max_start_skew_s=max_start_skew,
        matching_floors=MatchingFloors(
            min_threshold=floor_min_threshold,
            min_synthetic_rate_ppm=floor_min_synthetic_ppm,
            min_band_bits=floor_min_band_bits,
            max_band_count=floor_max_band_count,
            max_epoch_images=floor_max_epoch_images,
            max_table_slots=floor_max_table_slots,
        ),
        signers=[*(s.vkey for s in signers), *more_signers],
        signer_quorum=signer_quorum,
    )
    if out.exists():
        raise InvalidInput(f"{out} exists; refusing to overwrite it")
    out.write_text(sign_manifest(manifest, signers), encoding="utf-8")
    click.echo(
        f"manifest {manifest.deployment} serial {manifest.serial} written to {out}: "
        f"{len(signers)} of {manifest.signer_quorum} signatures needed"
    )


@manifest_group.command("sign")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path))
def sign(file: Path, key_path: Path) -> None:
    """Add a signature by one of the manifest's signers (k of n sign each manifest)."""
    note = read_manifest(file)
    manifest = parse_manifest_text(parse_unverified_note(note).text)
    signer = _load_signer(key_path)
    if signer.vkey not in manifest.signers:
        raise InvalidInput("this key is not one of the manifest's signers")
    signed = add_signatures(note, [signer.sign(manifest.to_text())])
    tmp = file.with_name(file.name + ".tmp")
    tmp.write_text(signed, encoding="utf-8")
    tmp.replace(file)
    count = _signature_count(signed, manifest)
    click.echo(f"signed: {count} of the {manifest.signer_quorum} signatures needed")


def _signature_count(note: str, manifest: Manifest) -> int:
    try:
        return len(verify_note(note, manifest.signer_verifiers()).verified)
    except AccordError:
        return 0


@manifest_group.command("show")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def show(ctx: click.Context, file: Path) -> None:
    """Print a manifest's anchors and whether it verifies (exit 1 if it does not)."""
    note = read_manifest(file)
    manifest = parse_manifest_text(parse_unverified_note(note).text)
    la, floors = manifest.lawful_access, manifest.matching_floors
    lines = [
        f"deployment  {printable(manifest.deployment)} (serial {manifest.serial})",
        f"log         {printable(manifest.log_origin)}",
        f"log key     {printable(manifest.log_vkey)}",
        f"witnesses   {manifest.witness_quorum} of {len(manifest.witnesses)} must cosign",
        *(f"  witness   {printable(w)}" for w in manifest.witnesses),
        f"checkpoints no older than {format_duration(manifest.max_checkpoint_age_s)}",
        f"approvers   genesis set {la.approver_genesis_set}",
        f"warrants    disclosure at most {format_duration(la.max_disclosure_delay_s)} after "
        f"the window, start at most {format_duration(la.max_start_skew_s)} before logging",
        f"matching    threshold >= {floors.min_threshold}, synthetic >= "
        f"{floors.min_synthetic_rate_ppm} ppm, band bits >= {floors.min_band_bits}, "
        f"bands <= {floors.max_band_count}, images per key epoch <= {floors.max_epoch_images}, "
        f"table slots <= {floors.max_table_slots}",
        f"signers     {manifest.signer_quorum} of {len(manifest.signers)} must sign",
        *(f"  signer    {printable(s)}" for s in manifest.signers),
    ]
    for line in lines:
        click.echo(line)
    try:
        verify_manifest(note)
    except AccordError as exc:
        click.echo(f"does NOT verify: {printable(exc.diagnostics())}")
        ctx.exit(1)
    click.echo(
        f"verifies: {_signature_count(note, manifest)} valid signatures by its signers "
        f"({manifest.signer_quorum} needed)"
    )


@manifest_group.command("install")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def install(ctx: click.Context, file: Path) -> None:
    """Replace this home's manifest by FILE: it must be signed by the current manifest's
    signers and carry a larger serial (a home in insecure development mode takes any valid
    manifest for the log it pinned)."""
    from accord.cli.messaging import open_client

    note = read_manifest(file)
    with open_client(ctx) as client:
        manifest = client.install_manifest(note)
    click.echo(f"manifest {printable(manifest.deployment)} serial {manifest.serial} installed")
