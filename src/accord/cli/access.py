"""`accord approver`, `approver-set`, `agency`, `warrant`: the lawful-access commands.

TIME is ISO 8601 with a zone, or relative (now, +90s, +2h, +30d); DURATION is like 180d or 0s.
Options shown with ``...`` in the help are given once per value.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from accord.cli.common import admin_token as resolve_admin_token
from accord.cli.common import admin_token_option, home_dir, server_option
from accord.cli.manifest import MANIFEST_ENV, manifest_path_option, read_manifest
from accord.cli.terminal import json_line, printable
from accord.cli.timeparse import parse_time
from accord.client import authority
from accord.clock import clock_from_env, now_s
from accord.errors import InvalidInput, ProtocolError
from accord.protocols.access.approvers import ApproverRole
from accord.protocols.access.audit import AuditReport
from accord.protocols.access.timeparse import format_duration, format_time, parse_duration
from accord.protocols.manifest import verify_manifest
from accord.protocols.translog.note import parse_vkey
from accord.protocols.translog.verify import LogTrustPolicy

ROLES = click.Choice([r.value for r in ApproverRole])
FILE = click.Path(dir_okay=False)


def _split_scope(value: str) -> list[str]:
    items = [s.strip() for s in value.split(",") if s.strip()]
    if not items:
        raise InvalidInput("--scope is content, metadata or content,metadata")
    return items


# --- approvers --------------------------------------------------------------------------------


@click.group("approver")
def approver_group() -> None:
    """Approvers of lawful-access warrants (k of n must sign each)."""


@approver_group.command("keygen")
@click.argument("name")
@click.option("--role", type=ROLES, required=True)
@click.option("--out", type=FILE, required=True, help="Private key file (FILE.pub: public).")
def approver_keygen(name: str, role: str, out: str) -> None:
    """Make an approver's Ed25519 key: FILE holds the private key, FILE.pub the public one."""
    approver = authority.generate_approver_key(name, role, Path(out))
    click.echo(f"approver {approver.approver_id} ({approver.role.value}): {out}.pub")


@click.group("approver-set")
def approver_set_group() -> None:
    """Create and publish the set of approvers and its threshold."""


@approver_set_group.command("create")
@click.option("--threshold", type=int, required=True, help="k: approvals each warrant needs.")
@click.option("--approver", "approvers", type=FILE, multiple=True, required=True)
@click.option("--replaces", type=FILE, default=None, help="The current set's file (a change).")
@click.option("--out", type=FILE, required=True)
def approver_set_create(
    threshold: int, approvers: tuple[str, ...], replaces: str | None, out: str
) -> None:
    """Write an approver set of the given public key files (not yet signed)."""
    previous = authority.read_approver_set(Path(replaces)) if replaces else None
    members = [authority.load_approver_public(Path(p)) for p in approvers]
    signed = authority.create_approver_set(threshold, members, replaces=previous)
    authority.write_approver_set(Path(out), signed)
    aset = signed.approver_set
    click.echo(
        f"approver set version {aset.version}: {aset.threshold} of {len(aset.approvers)}, "
        f"hash {aset.set_hash.hex()}"
    )


@approver_set_group.command("publish")
@click.argument("file", type=FILE)
@server_option
@click.option("--approver-key", "keys", type=FILE, multiple=True)
@admin_token_option
def approver_set_publish(
    file: str, server: str, keys: tuple[str, ...], admin_token: str | None
) -> None:
    """Operator: publish the set in the log. k approvers sign it (of the current set, for a
    change; of the new set itself, for the first)."""
    signed = authority.sign_approver_set_with(
        authority.read_approver_set(Path(file)),
        [authority.load_approver_key(Path(k)) for k in keys],
    )
    published = authority.publish_approver_set(server, resolve_admin_token(admin_token), signed)
    authority.write_approver_set(Path(file), signed)
    click.echo(
        f"approver set version {published.version} published at log index {published.index}; "
        f"hash {published.set_hash}"
    )


# --- agencies ---------------------------------------------------------------------------------


@click.group("agency")
def agency_group() -> None:
    """Agencies: their HPKE keys, registration, and fetching intercepted records."""


@agency_group.command("keygen")
@click.argument("name")
@click.option("--out", type=FILE, required=True, help="Private key file (FILE.pub: public).")
def agency_keygen(name: str, out: str) -> None:
    """Make an agency's HPKE key pair (X25519): FILE private, FILE.pub public."""
    authority.generate_agency_key(name, Path(out))
    click.echo(f"agency {name}: {out}.pub")


@agency_group.command("register")
@click.argument("pubfile", type=FILE)
@server_option
@click.option("--approver-key", "keys", type=FILE, multiple=True, required=True)
@click.pass_context
def agency_register(ctx: click.Context, pubfile: str, server: str, keys: tuple[str, ...]) -> None:
    """k approvers of the current set sign the agency's key; the server logs it."""
    signed, registered = authority.register_agency(
        server,
        Path(pubfile),
        [authority.load_approver_key(Path(k)) for k in keys],
        home_dir(ctx),
    )
    click.echo(
        f"agency {signed.key.agency_id} registered at log index {registered.index}; "
        f"key id {registered.key_id}"
    )


@agency_group.command("fetch")
@click.option("--key", "key_file", type=FILE, required=True, help="The agency's private key.")
@server_option
@click.option("--warrant", "warrant_id", required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@click.option(
    "--delivery-metadata", is_flag=True, help="Also print the server's delivery metadata."
)
@manifest_path_option("The deployment manifest, whose log key and witnesses are checked")
@click.option("--log-key", default=None, help="The log's verifier key, instead of a manifest.")
@click.option("--witness", "witnesses", multiple=True, help="With --log-key: a witness's key.")
@click.option("--witness-quorum", type=int, default=None, help="Default: every witness.")
@click.option(
    "--insecure-dev",
    is_flag=True,
    help="Neither a manifest nor --log-key: take the log's key from the server (development only).",
)
@click.pass_context
def agency_fetch(
    ctx: click.Context,
    key_file: str,
    server: str,
    warrant_id: str,
    as_json: bool,
    delivery_metadata: bool,
    manifest_path: Path | None,
    log_key: str | None,
    witnesses: tuple[str, ...],
    witness_quorum: int | None,
    insecure_dev: bool,
) -> None:
    """Fetch the warrant's records in order, decrypt them and check each is signed by the
    target's device key as the log holds it. The log is the deployment manifest's (or the
    --log-key and --witness given). Gaps and any forged, altered or reordered record are
    reported on standard error, and the exit status is then 1."""
    key = authority.load_agency_key(Path(key_file))
    if ctx.get_parameter_source("manifest_path") is click.core.ParameterSource.ENVIRONMENT and (
        log_key is not None or insecure_dev
    ):
        manifest_path = None  # the command line's choice overrides ACCORD_MANIFEST
    policy = _agency_log_policy(manifest_path, log_key, witnesses, witness_quorum, insecure_dev)
    result = authority.fetch_records(
        server, key, warrant_id, with_metadata=delivery_metadata, log_policy=policy
    )
    for record in result.records:
        row = authority.record_json(record)
        if as_json:
            click.echo(json_line(row))
        else:
            parties = f"{row['from']} -> {', '.join(row['to'])}" if row["from"] else ""
            text = row["text"] if row["text"] is not None else "(metadata only)"
            click.echo(
                printable(
                    f"{record.device_id} #{row['seq']} [{row['sent_at']}] {row['direction']} "
                    f"{parties}: {text}"
                )
            )
    for item in result.metadata:
        line = {
            "direction": item.direction,
            "counterpart": item.counterpart,
            "at": format_time(item.at // 1000),
            "size": item.size,
        }
        click.echo(json.dumps({"delivery": line}) if as_json else f"delivery {line}")
    for device, gaps in result.gaps.items():
        for first, end in gaps:
            click.echo(f"gap: device {device} records {first}..{end - 1} missing", err=True)
    for problem in result.problems:
        click.echo(f"refused: {printable(str(problem))}", err=True)
    if result.problems or result.gaps:
        raise ProtocolError(
            f"{len(result.problems)} records refused, {sum(len(g) for g in result.gaps.values())}"
            " gaps",
            code="records_incomplete",
        )


UNPINNED_LOG_WARNING = (
    "INSECURE DEVELOPMENT MODE: the log's key is the one the server names; a provider could "
    "show a log of its own, with a device key it holds"
)


def _agency_log_policy(
    manifest_path: Path | None,
    log_key: str | None,
    witnesses: tuple[str, ...],
    witness_quorum: int | None,
    insecure_dev: bool,
) -> LogTrustPolicy | None:
    """The log the device keys are read from: the manifest's, else the `--log-key` and
    `--witness` given; None (the server's own key, with a warning) only with --insecure-dev.
    Without any, refused like a client without a manifest (`manifest_required`)."""
    given = {"--manifest": manifest_path is not None, "--log-key": log_key is not None}
    chosen = [name for name, on in {**given, "--insecure-dev": insecure_dev}.items() if on]
    if len(chosen) > 1:
        both = " and ".join(chosen)
        raise InvalidInput(f"give one of --manifest, --log-key and --insecure-dev, not {both}")
    if (witnesses or witness_quorum is not None) and log_key is None:
        raise InvalidInput("--witness and --witness-quorum go with --log-key")
    if manifest_path is not None:
        return verify_manifest(read_manifest(manifest_path)).log_policy()
    if log_key is not None:
        verifier = parse_vkey(log_key)
        return LogTrustPolicy(
            origin=verifier.name,
            log_verifiers=(verifier,),
            witness_verifiers=tuple(parse_vkey(w) for w in witnesses),
            witness_quorum=len(witnesses) if witness_quorum is None else witness_quorum,
        )
    if not insecure_dev:
        raise InvalidInput(
            f"a deployment manifest is required (--manifest FILE or {MANIFEST_ENV}), or "
            "--log-key; --insecure-dev trusts the server's log key instead, for development only",
            code="manifest_required",
        )
    click.echo(UNPINNED_LOG_WARNING, err=True)
    return None


# --- warrants ---------------------------------------------------------------------------------


@click.group("warrant")
def warrant_group() -> None:
    """Draft, sign, submit and list lawful-access warrants."""


@warrant_group.command("draft")
@click.option("--target", required=True, help="The one account the warrant names.")
@click.option("--agency", required=True, help="A registered agency (name or registration file).")
@click.option("--scope", required=True, help="content, metadata or content,metadata")
@click.option("--start", required=True, help="TIME")
@click.option("--end", required=True, help="TIME")
@click.option("--case", "case_reference", required=True)
@click.option("--disclose-after", required=True, help="DURATION after the end, e.g. 180d")
@click.option("--reference", default=None, help="Authorisation reference (default: the case).")
@click.option("--legal-type", default=authority.DEFAULT_LEGAL_TYPE)
@click.option("--out", type=FILE, required=True)
@click.pass_context
def warrant_draft(
    ctx: click.Context,
    target: str,
    agency: str,
    scope: str,
    start: str,
    end: str,
    case_reference: str,
    disclose_after: str,
    reference: str | None,
    legal_type: str,
    out: str,
) -> None:
    """Write an unsigned warrant; prints its id."""
    now = now_s(clock_from_env())
    signed = authority.draft_warrant(
        target=target,
        agency=authority.load_registration(home_dir(ctx), agency),
        scope=_split_scope(scope),
        start_time=parse_time(start, now=now),
        end_time=parse_time(end, now=now),
        case_reference=case_reference,
        disclose_after_s=parse_duration(disclose_after),
        authorisation_reference=reference,
        legal_type=legal_type,
    )
    authority.write_warrant(Path(out), signed)
    click.echo(signed.warrant_id.hex())


@warrant_group.command("sign")
@click.argument("file", type=FILE)
@click.option("--key", "key_file", type=FILE, required=True, help="An approver's private key.")
def warrant_sign(file: str, key_file: str) -> None:
    """Add your approval to the warrant in FILE."""
    signed = authority.read_warrant(Path(file))
    key = authority.load_approver_key(Path(key_file))
    w = signed.warrant
    click.echo(
        f"approving warrant {signed.warrant_id.hex()[:16]} against {w.target_identifier}, "
        f"{format_time(w.start_time)} to {format_time(w.end_time)}, "
        f"scope {','.join(s.value for s in w.scope)}, case {w.case_reference}",
        err=True,
    )
    signed = authority.sign_warrant(signed, key, now=now_s(clock_from_env()))
    authority.write_warrant(Path(file), signed)
    click.echo(f"{key.signer.approver_id} signed; {len(signed.approvals)} approvals")


@warrant_group.command("submit")
@click.argument("file", type=FILE)
@server_option
def warrant_submit(file: str, server: str) -> None:
    """Submit the signed warrant; prints the warrant id once it is in the log."""
    submitted = authority.submit_warrant(server, authority.read_warrant(Path(file)))
    click.echo(submitted.warrant_id)


@warrant_group.command("extend")
@click.argument("commitment")
@click.option("--until", required=True, help="TIME: the new disclosure date")
@server_option
@click.option(
    "--approver-key", "key_files", type=FILE, multiple=True, required=True,
    help="An approver's private key (k of the current set; repeat).",
)  # fmt: skip
def warrant_extend(commitment: str, until: str, server: str, key_files: tuple[str, ...]) -> None:
    """Postpone the disclosure of the warrant whose commitment is COMMITMENT (k approvers; the
    extension is logged; each may move the date by at most the bound, and only before it)."""
    now = now_s(clock_from_env())
    keys = [authority.load_approver_key(Path(k)) for k in key_files]
    done = authority.extend_disclosure(
        server, commitment, parse_time(until, now=now), keys, now=now
    )
    click.echo(f"disclosure due {format_time(done.disclosure_time)}; logged at index {done.index}")


@warrant_group.command("list")
@server_option
@click.option("--json", "as_json", is_flag=True)
def warrant_list(server: str, as_json: bool) -> None:
    """The public view: every warrant's window, scope, approvers, records and disclosure."""
    report = authority.public_report(server)
    if as_json:
        click.echo(json.dumps(report_json(report)))
        return
    for line in report_lines(report):
        click.echo(line)


def report_json(report: AuditReport) -> dict[str, object]:
    """The lawful-access report as JSON (`warrant list --json`, `log audit --json`)."""
    return {
        "active": report.active,
        "upcoming": report.upcoming,
        "past": report.past,
        "total_records": report.total_records,
        "overdue_disclosures": [c.hex() for c in report.overdue_disclosures],
        "approvals_by_approver": report.approvals_by_approver,
        "invalid_entries": [list(i) for i in report.invalid_entries],
        "second_genesis": list(report.second_genesis),
        "approver_sets": [
            {
                "log_index": a.log_index,
                "version": a.version,
                "hash": a.set_hash,
                "threshold": a.threshold,
                "members": [{"id": i, "name": n, "role": r.value} for i, n, r in a.members],
                "status": a.status,
            }
            for a in report.approver_sets
        ],
        "agencies": [
            {
                "log_index": g.log_index,
                "agency": g.agency_id,
                "name": g.name,
                "key_id": g.key_id,
                "approver_set": g.approver_set,
                "valid": g.valid,
            }
            for g in report.agencies
        ],
        "warrants": [
            {
                "commitment": w.commitment.hex(),
                "log_index": w.log_index,
                "status": w.status,
                "start": format_time(w.start_time),
                "end": format_time(w.end_time),
                "duration_s": w.duration_s,
                "disclosure": format_time(w.disclosure_time),
                "disclosure_due": format_time(w.disclosure_due),
                "extensions": w.extensions,
                "approver_set": w.approver_set,
                "approver_set_version": w.approver_set_version,
                "scope": [s.value for s in w.scope],
                "approvers": list(w.approver_ids),
                "records": w.record_count,
                "disclosed": w.disclosed,
                "disclosure_overdue": w.disclosure_overdue,
            }
            for w in report.warrants
        ],
    }


def report_lines(report: AuditReport) -> list[str]:
    lines = []
    for a in report.approver_sets:
        members = ", ".join(f"{i} ({n}, {r.value.replace('_', ' ')})" for i, n, r in a.members)
        status = a.status if a.in_chain else a.status.upper()
        lines.append(
            f"approver set v{a.version} {a.set_hash[:16]} at log index {a.log_index}: "
            f"{a.threshold} of {members}; {status}"
        )
    for index in report.second_genesis:
        lines.append(f"  SECOND GENESIS approver set at log index {index}: not the deployment's")
    for g in report.agencies:
        lines.append(
            f"agency {g.agency_id} ({g.name}) key {g.key_id[:16]} under set "
            f"{g.approver_set[:16]}: {'registered' if g.valid else 'INVALID'}"
        )
    lines.append(
        f"warrants: {report.active} active, {report.upcoming} upcoming, {report.past} past; "
        f"{report.total_records} intercepted records"
    )
    for w in report.warrants:
        due = format_time(w.disclosure_due)
        extended = f" (extended {w.extensions}x)" if w.extensions else ""
        disclosure = (
            "disclosed"
            if w.disclosed
            else f"DISCLOSURE OVERDUE since {due}{extended}"
            if w.disclosure_overdue
            else f"disclosure due {due}{extended}"
        )
        approver_set = (
            f"set v{w.approver_set_version} {w.approver_set[:16]}"
            if w.approver_set_version is not None
            else f"set {w.approver_set[:16]} NOT IN THE CHAIN"
        )
        lines.append(
            f"  {w.commitment.hex()[:16]} {w.status}: {format_time(w.start_time)} to "
            f"{format_time(w.end_time)} ({format_duration(w.duration_s)}), "
            f"scope {','.join(s.value for s in w.scope)}, approved by "
            f"{', '.join(w.approver_ids)} under {approver_set}; {w.record_count} records; "
            f"{disclosure}"
        )
    if report.approvals_by_approver:
        lines.append(
            "  approvals: " + ", ".join(f"{a} {n}" for a, n in report.approvals_by_approver.items())
        )
    if report.overdue_disclosures:
        lines.append(f"  overdue disclosures: {len(report.overdue_disclosures)}")
    for index, reason in report.invalid_entries:
        lines.append(f"  entry {index} failed its checks: {reason}")
    return lines
