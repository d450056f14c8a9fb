"""`accord hash`, `accord bank ...`, `accord match`, `accord eval detection`.

Banks live in a SQLite file in the CLI's home directory, in the database named by `--db` (any
SQLAlchemy URL, e.g. the server's PostgreSQL), or with `--server` in a server's database through
its operator API: each is a `BankStore`, opened once per command. Hashes the user asked for are
printed; errors never contain them. Hashing, indexes and stores are imported when a command
runs, so that help and completion stay quick.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

import click

from accord.cli.common import admin_token, home_dir
from accord.cli.extras import require_extra
from accord.errors import AccordError, InvalidInput, ServiceError
from accord.protocols.detection.banks import BankEntry, BankInfo
from accord.protocols.detection.importers import EXPORT_FORMATS, IMPORT_FORMATS, ImportFormat
from accord.protocols.detection.signals import PDQ_MATCH_THRESHOLD_BITS, PDQ_MIN_QUALITY

if TYPE_CHECKING:
    from accord.protocols.detection.hashers import FileHashes
    from accord.protocols.detection.matching import BankMatch
    from accord.storage.banks import BankStore, SqlBankStore

BANKS_DB_FILE = "banks.db"
INDEX_CACHE_DIR = "bank-index"


def _db_option(f: Any) -> Any:
    return click.option(
        "--db",
        "db_url",
        default=None,
        envvar="ACCORD_BANKS_DB",
        help="Database URL holding the banks (default: SQLite in the home directory).",
    )(f)


def _remote_options(f: Any) -> Any:
    """--server/--admin-token: work on the banks in a server's database instead."""
    f = click.option(
        "--admin-token", default=None, help="Operator token (else ACCORD_ADMIN_TOKEN)."
    )(f)
    return click.option(
        "--server", default=None, help="Server base URL: use the banks in its database."
    )(f)


def _open_store(
    ctx: click.Context,
    db_url: str | None,
    server: str | None = None,
    token: str | None = None,
) -> tuple[BankStore, str]:
    """The banks a command works on, and how its messages say where they are."""
    require_extra("server", "sqlalchemy", "alembic")
    if server:
        from accord.client.banks import RemoteBankStore
        from accord.client.operator import OperatorApi

        return RemoteBankStore(OperatorApi(server, admin_token(token))), f" on {server}"
    return _open_local_store(ctx, db_url), ""


def _open_local_store(ctx: click.Context, db_url: str | None) -> SqlBankStore:
    from sqlalchemy.exc import OperationalError

    from accord.errors import ConfigurationError
    from accord.storage.banks import SqlBankStore
    from accord.storage.db import make_engine

    try:
        if db_url:
            try:
                engine = make_engine(db_url)
            except ConfigurationError as exc:
                raise InvalidInput(exc.message) from None
            return SqlBankStore.open_migrated(engine)
        home = home_dir(ctx)
        return SqlBankStore.open_sqlite(
            home / BANKS_DB_FILE, index_cache_dir=home / INDEX_CACHE_DIR
        )
    except OperationalError:  # unreachable server, unwritable file: its message may quote the URL
        raise ServiceError("cannot open the bank database") from None


def _expand(paths: tuple[str, ...]) -> tuple[list[Path], bool]:
    """Files named, folders walked (sorted); True if any folder was given."""
    out: list[Path] = []
    folder = False
    for p in map(Path, paths):
        if p.is_dir():
            folder = True
            out.extend(sorted(q for q in p.rglob("*") if q.is_file()))
        elif p.is_file():
            out.append(p)
        else:
            raise InvalidInput(f"no such file: {p.name}")
    return out, folder


def _progress(files: list[Path], show: bool, what: str) -> Iterator[Path]:
    if not show or len(files) < 2:
        yield from files
        return
    from rich.progress import Progress

    with Progress(transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(what, total=len(files))
        for f in files:
            yield f
            progress.advance(task)


@contextmanager
def _read_progress(raw: BinaryIO, size: int, what: str) -> Iterator[BinaryIO]:
    """`raw`, with a progress bar of the bytes read from it on stderr."""
    from rich.progress import Progress

    with Progress(transient=True, console=_stderr_console()) as progress:
        yield progress.wrap_file(raw, total=size, description=what)


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _hash_record(path: Path, hashes: FileHashes) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "path": str(path),
        "pdq": hashes.pdq.hash.hex() if hashes.pdq else None,
        "quality": hashes.pdq.quality if hashes.pdq else None,
        "md5": hashes.md5.hex(),
        "sha256": hashes.sha256.hex(),
    }
    if hashes.kind == "video":
        rec["vpdq"] = json.loads(hashes.vpdq.hex()) if hashes.vpdq else None
    return rec


@click.command("hash")
@click.argument("paths", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--full-decode", is_flag=True, help="Decode large JPEGs at full size (slower).")
def hash_command(paths: tuple[str, ...], as_json: bool, full_decode: bool) -> None:
    """Hash files: PDQ and quality for images, vPDQ for videos, MD5 and SHA-256 for all."""
    from accord.protocols.detection.hashers import hash_file

    files, folder = _expand(paths)
    failed = 0
    for path in _progress(files, folder, "hashing"):
        try:
            rec = _hash_record(path, hash_file(path, draft=not full_decode))
        except AccordError as exc:
            failed += 1
            _report_failure(path, exc, as_json)
            continue
        if as_json:
            click.echo(json.dumps(rec))
        else:
            pdq = f"pdq={rec['pdq']} quality={rec['quality']} " if rec["pdq"] else ""
            click.echo(f"{path}  {pdq}md5={rec['md5']} sha256={rec['sha256']}")
    if failed:
        raise SystemExit(1)


def _report_failure(path: Path, exc: AccordError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"path": str(path), "error": exc.diagnostics()}))
    else:
        click.echo(f"{path}: {exc.diagnostics()}", err=True)


# -- banks -------------------------------------------------------------------------------------


@click.group("bank")
def bank_group() -> None:
    """Manage hash banks (named hash lists)."""


def _info_record(info: BankInfo) -> dict[str, Any]:
    record: dict[str, Any] = {
        "name": info.name,
        "threshold": info.threshold,
        "version": info.version,
        "entries": info.entry_count,
        "enabled": info.enabled_count,
    }
    if info.counts_by_type is not None:  # a server's list does not give them
        record["by_type"] = info.counts_by_type
    return record


@bank_group.command("create")
@click.argument("name")
@click.option(
    "--threshold",
    type=int,
    default=PDQ_MATCH_THRESHOLD_BITS,
    show_default=True,
    help="PDQ match distance (bits) for this bank.",
)
@_db_option
@_remote_options
@click.pass_context
def bank_create(
    ctx: click.Context,
    name: str,
    threshold: int,
    db_url: str | None,
    server: str | None,
    admin_token: str | None,
) -> None:
    """Create an empty bank."""
    store, where = _open_store(ctx, db_url, server, admin_token)
    info = store.create_bank(name, threshold=threshold)
    click.echo(f"created bank {info.name} (threshold {info.threshold}){where}")


@bank_group.command("import")
@click.argument("name")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(IMPORT_FORMATS),
    default=None,
    help="Default: ncmec for .xml files, csv otherwise.",
)
@_db_option
@_remote_options
@click.pass_context
def bank_import(
    ctx: click.Context,
    name: str,
    file: str,
    fmt: str | None,
    db_url: str | None,
    server: str | None,
    admin_token: str | None,
) -> None:
    """Import hashes from CSV (type,hash[,label]), an HMA export or NCMEC XML."""
    path = Path(file)
    chosen = cast(ImportFormat, fmt or ("ncmec" if path.suffix.lower() == ".xml" else "csv"))
    store, where = _open_store(ctx, db_url, server, admin_token)
    with path.open("rb") as raw, _read_progress(raw, path.stat().st_size, "importing") as f:
        result = store.import_stream(name, f, chosen, source=f"{chosen}:{path.name}"[:200])
    version = store.get_bank(name).version
    if result.parsed is None:  # parsed by the server, which says only how many were new
        click.echo(f"imported {result.added} new entries into {name}{where}; version {version}")
        return
    click.echo(
        f"imported {result.added} new of {result.parsed} entries into {name}"
        + (f", skipped {result.skipped} unsupported" if result.skipped else "")
        + (f", disabled {result.disabled} deleted upstream" if result.disabled else "")
        + f"; version {version}"
    )


def _exchange_option(value: str) -> tuple[str, Any]:
    """KEY=VALUE; a VALUE that is JSON (a number, a list...) is read as JSON."""
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise click.BadParameter("expected KEY=VALUE")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


@bank_group.command("fetch")
@click.argument("name")
@click.option(
    "--exchange",
    required=True,
    help="python-threatexchange's name for it: ncmec, stop_ncii, fb_threatexchange, tat, "
    "local_file, sample.",
)
@click.option(
    "--set",
    "settings",
    multiple=True,
    help="A setting of the exchange's collaboration, KEY=VALUE (e.g. environment=Industry for "
    "ncmec, filename=/path for local_file).",
)
@_db_option
@click.pass_context
def bank_fetch(
    ctx: click.Context, name: str, exchange: str, settings: tuple[str, ...], db_url: str | None
) -> None:
    """Fetch a hash list from an exchange into a bank, from where the last fetch got to."""
    require_extra("exchanges", "threatexchange", "dacite")
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from accord.storage.bank_fetch import fetch_into_bank

    options = dict(_exchange_option(s) for s in settings)
    store = _open_local_store(ctx, db_url)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, transient=True, console=_stderr_console()) as progress:
        task = progress.add_task(f"fetching from {exchange}: 0 updates", total=None)
        seen = 0

        def advance(n: int) -> None:
            nonlocal seen
            seen += n
            progress.update(task, description=f"fetching from {exchange}: {seen} updates")

        result = fetch_into_bank(
            store, name, exchange=exchange, options=options, on_updates=advance
        )
    click.echo(
        f"fetched {result.updates} updates from {exchange} into {name}: {result.added} new"
        + (f", {result.disabled} disabled (deleted upstream)" if result.disabled else "")
        + (f", skipped {result.skipped} unsupported" if result.skipped else "")
        + f"; version {store.get_bank(name).version}"
    )


@bank_group.command("add")
@click.argument("name")
@click.argument("paths", nargs=-1, required=True)
@click.option("--label", default="", help="Label for the new entries.")
@click.option(
    "--plain",
    is_flag=True,
    help="Only the file's own hashes (no derived hashes, no local features).",
)
@_db_option
@_remote_options
@click.pass_context
def bank_add(
    ctx: click.Context,
    name: str,
    paths: tuple[str, ...],
    label: str,
    plain: bool,
    db_url: str | None,
    server: str | None,
    admin_token: str | None,
) -> None:
    """Hash files and add them to a bank (images also get derived hashes and, in a local or
    database store, local features for the verifying stage)."""
    from accord.protocols.detection.features import extract_features, serialize_features
    from accord.protocols.detection.hashers import hash_file
    from accord.protocols.detection.variants import MatchMeasures, bank_hashes
    from accord.storage.banks import BankEntryStore

    store, _ = _open_store(ctx, db_url, server, admin_token)
    keeps_features = isinstance(store, BankEntryStore) and not plain
    features: list[tuple[str, bytes]] = []
    store.get_bank(name)
    files, folder = _expand(paths)
    measures = MatchMeasures.plain() if plain else MatchMeasures()
    entries: list[BankEntry] = []
    low_quality = failed = 0
    for path in _progress(files, folder, "hashing"):
        try:
            hashes = hash_file(path)
        except AccordError as exc:
            failed += 1
            _report_failure(path, exc, False)
            continue
        source = f"file:{path.name}"[:256]
        entries.append(BankEntry(signal_type="md5", hash=hashes.md5, source=source, label=label))
        entries.append(
            BankEntry(signal_type="sha256", hash=hashes.sha256, source=source, label=label)
        )
        if hashes.image is not None:
            derived = bank_hashes(hashes.image.pixels, measures)
            if not derived:
                low_quality += 1
            elif keeps_features:
                local = extract_features(hashes.image.pixels)
                features.append((source, serialize_features(local)))
            for h in derived:
                entries.append(
                    BankEntry(
                        signal_type="pdq",
                        hash=h.result.hash,
                        source=source,
                        label=label,
                        variant=h.via,
                    )
                )
        if hashes.vpdq is not None:
            entries.append(
                BankEntry(signal_type="vpdq", hash=hashes.vpdq, source=source, label=label)
            )
    added = store.add_entries(name, entries)
    if isinstance(store, BankEntryStore):
        for source, data in features:
            store.put_features(name, source, data)
    version = store.get_bank(name).version
    click.echo(
        f"added {added} entries from {len(files) - failed} files to {name}"
        + (
            f" ({low_quality} images below PDQ quality {PDQ_MIN_QUALITY}: MD5/SHA-256 only)"
            if low_quality
            else ""
        )
        + f"; version {version}"
    )
    if failed:
        raise SystemExit(1)


@bank_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@_db_option
@_remote_options
@click.pass_context
def bank_list(
    ctx: click.Context,
    as_json: bool,
    db_url: str | None,
    server: str | None,
    admin_token: str | None,
) -> None:
    """List banks with their threshold, size and version."""
    store, _ = _open_store(ctx, db_url, server, admin_token)
    infos = store.list_banks()
    if as_json:
        click.echo(json.dumps([_info_record(i) for i in infos]))
        return
    for i in infos:
        click.echo(
            f"{i.name}  threshold={i.threshold} entries={i.entry_count} "
            f"enabled={i.enabled_count} version={i.version}"
        )


@bank_group.command("export")
@click.argument("name")
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), default="csv", show_default=True
)
@_db_option
@_remote_options
@click.pass_context
def bank_export(
    ctx: click.Context,
    name: str,
    fmt: str,
    db_url: str | None,
    server: str | None,
    admin_token: str | None,
) -> None:
    """Write a bank's enabled entries to standard output."""
    store, _ = _open_store(ctx, db_url, server, admin_token)
    for chunk in store.export_file(name, fmt):
        click.echo(chunk, nl=False)


@bank_group.command("disable")
@click.argument("name")
@click.argument("entry_ids", nargs=-1, type=int, required=True)
@_db_option
@click.pass_context
def bank_disable(
    ctx: click.Context, name: str, entry_ids: tuple[int, ...], db_url: str | None
) -> None:
    """Disable entries (they stay in the bank but no longer match)."""
    n = _open_local_store(ctx, db_url).set_enabled(name, list(entry_ids), False)
    click.echo(f"disabled {n} entries")


@bank_group.command("enable")
@click.argument("name")
@click.argument("entry_ids", nargs=-1, type=int, required=True)
@_db_option
@click.pass_context
def bank_enable(
    ctx: click.Context, name: str, entry_ids: tuple[int, ...], db_url: str | None
) -> None:
    """Enable entries again."""
    n = _open_local_store(ctx, db_url).set_enabled(name, list(entry_ids), True)
    click.echo(f"enabled {n} entries")


# -- matching ----------------------------------------------------------------------------------


@click.command("match")
@click.argument("paths", nargs=-1, required=True)
@click.option("--bank", "banks", multiple=True, help="Bank to match against (default: all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file.")
@click.option("--plain", is_flag=True, help="Plain PDQ only: no query variants, no verifying.")
@click.option(
    "--no-verify",
    is_flag=True,
    help="Skip the verifying stage (local features): each bank's own threshold decides.",
)
@_db_option
@_remote_options
@click.pass_context
def match_command(
    ctx: click.Context,
    paths: tuple[str, ...],
    banks: tuple[str, ...],
    as_json: bool,
    plain: bool,
    no_verify: bool,
    db_url: str | None,
    server: str | None,
    admin_token: str | None,
) -> None:
    """Match files against banks (hashing here; with --server, matching on the server)."""
    from accord.protocols.detection.hashers import hash_file
    from accord.protocols.detection.matching import MatchQuery
    from accord.protocols.detection.variants import QUERY_DECODE_LONG_SIDE_PX, MatchMeasures

    verify = not (plain or no_verify)
    store, _ = _open_store(ctx, db_url, server, admin_token)
    matcher = store.open_matcher(banks)
    # Tiles are candidates only the verifying stage decides: computed only where it can run.
    measures = (
        MatchMeasures.plain()
        if plain
        else MatchMeasures(crops=False, tiles=verify and matcher.verifies)
    )
    files, folder = _expand(paths)
    failed = 0
    for path in _progress(files, folder, "matching"):
        try:
            # The query hashes its own variants: no separate PDQ of the full decode.
            hashes = hash_file(path, pdq=False, draft_long_side_px=QUERY_DECODE_LONG_SIDE_PX)
            query = MatchQuery.from_file_hashes(hashes, measures, verify=verify)
        except AccordError as exc:
            failed += 1
            _report_failure(path, exc, as_json)
            continue
        _print_matches(path, matcher.match(query), as_json)
    if failed:
        raise SystemExit(1)


def _print_matches(path: Path, matches: list[BankMatch], as_json: bool) -> None:
    if as_json:
        records = [_match_record(m) for m in matches]
        click.echo(json.dumps({"path": str(path), "matches": records}))
    elif not matches:
        click.echo(f"{path}: no match")
    else:
        for m in matches:
            click.echo(
                f"{path}: MATCH bank={m.bank} {m.signal_type} distance={m.distance}"
                f" label={m.label or '-'} via={m.via} entry={m.entry_id}"
            )


def _match_record(m: BankMatch) -> dict[str, Any]:
    return {
        "bank": m.bank,
        "hash": m.hash,
        "distance": m.distance,
        "label": m.label,
        "signal_type": m.signal_type,
        "via": m.via,
        "entry_id": m.entry_id,
    }


# -- evaluation --------------------------------------------------------------------------------


@click.group("eval")
def eval_group() -> None:
    """Measure how well things work."""


F = TypeVar("F", bound=Callable[..., Any])


def _eval_folders(
    images_help: str, fp_help: str, out_default: str, out_help: str
) -> Callable[[F], F]:
    """The folder options every `accord eval` command takes: --images, --fp-images, --out."""

    def decorate(f: F) -> F:
        f = click.option(
            "--out",
            "out_dir",
            default=out_default,
            show_default=True,
            type=click.Path(file_okay=False),
            help=out_help,
        )(f)
        f = click.option(
            "--fp-images",
            "fp_dir",
            default=None,
            type=click.Path(exists=True, file_okay=False),
            help=fp_help,
        )(f)
        return click.option(
            "--images",
            "images_dir",
            required=True,
            type=click.Path(exists=True, file_okay=False),
            help=images_help,
        )(f)

    return decorate


@eval_group.command("detection")
@_eval_folders(
    "Folder of natural photos (half are banked).",
    "Extra folder of unrelated photos, queried for false matches.",
    "detection-eval",
    "Where the JSON, markdown and plots go.",
)
@click.option(
    "--fp-transforms",
    default="identity,jpeg-q50,flip-h,border-white,caption-top",
    show_default=True,
    help="Transformations applied to the --fp-images set ('all').",
)
@click.option("--seed", default=0, show_default=True, type=int)
def eval_detection(
    images_dir: str, fp_dir: str | None, out_dir: str, fp_transforms: str, seed: int
) -> None:
    """Recall and false matches of PDQ, per everyday edit and threshold, with and without the
    matching measures."""
    from accord.protocols.detection.evaluation import (
        EvalConfig,
        render_markdown,
        run_evaluation,
        write_plots,
    )

    config = EvalConfig(
        images_dir=Path(images_dir),
        fp_dir=Path(fp_dir) if fp_dir else None,
        fp_transforms=None if fp_transforms == "all" else tuple(fp_transforms.split(",")),
        seed=seed,
    )
    with _stderr_console().status("evaluating") as status:
        report = run_evaluation(config, progress=lambda msg: status.update(msg))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detection-eval.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "detection-eval.md").write_text(render_markdown(report))
    plots = write_plots(report, out)
    click.echo(render_markdown(report))
    click.echo(
        f"wrote {out / 'detection-eval.json'}, {out / 'detection-eval.md'}, "
        + ", ".join(str(p) for p in plots)
    )


@eval_group.command("compare")
@_eval_folders(
    "Folder of photos: every bankable one is banked and edited.",
    "Folder of unrelated photos, queried for false matches.",
    "detection-compare",
    "Where the JSON, markdown and heatmap go.",
)
@click.option("--edits", default=None, help="Comma-separated edits (default: all).")
@click.option("--max-images", type=click.IntRange(min=2), default=None)
@click.option("--max-fp-images", type=click.IntRange(min=1), default=None)
@click.option("--methods", default=None, help="Comma-separated methods (default: all).")
def eval_compare(
    images_dir: str,
    fp_dir: str | None,
    out_dir: str,
    edits: str | None,
    max_images: int | None,
    max_fp_images: int | None,
    methods: str | None,
) -> None:
    """Side by side: Accord's pipeline, plain PDQ, Thorn's perception (PDQ, SIFT) and
    imagehash's pHash, per everyday edit, on one set in one run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from accord.protocols.detection.comparison import (
        METHODS,
        CompareConfig,
        render_comparison,
        run_comparison,
        write_heatmap,
    )

    config = CompareConfig(
        images_dir=Path(images_dir),
        fp_dir=Path(fp_dir) if fp_dir else None,
        edits=tuple(edits.split(",")) if edits else None,
        max_images=max_images,
        max_fp_images=max_fp_images,
    )
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*Progress.get_default_columns()[:1], *columns, console=_stderr_console()) as bar:
        tasks: dict[str, Any] = {}

        def progress(what: str, done: int, total: int) -> None:
            group = what.split(":")[0]
            if group not in tasks:
                tasks[group] = bar.add_task(group, total=total)
            bar.update(tasks[group], completed=done, description=what)

        chosen = None
        if methods:
            names = methods.split(",")
            if any(n not in METHODS for n in names):
                raise InvalidInput(
                    "unknown method; known: " + ", ".join(METHODS), code="unknown_method"
                )
            chosen = [METHODS[n]() for n in names]
        report = run_comparison(config, chosen, progress=progress)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "detection-compare.json").write_text(json.dumps(report, indent=1) + "\n")
    table = render_comparison(report)
    (out / "detection-compare.md").write_text(table)
    heatmap = write_heatmap(report, out / "detection-compare.png")
    click.echo(table)
    click.echo(f"wrote {out / 'detection-compare.json'}, {out / 'detection-compare.md'}, {heatmap}")
