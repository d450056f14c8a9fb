"""Auditing the transparency log from outside: anyone can run this, nothing secret is needed.

Steps (docs/protocol/transparency.md): pin the log's key on first sight; verify the checkpoint's
signature (V1); check it extends the checkpoint this auditor saw before (V3); fetch every entry,
recompute the Merkle root and compare; count entries by type and check what can be checked of
each (device registrations carry the device's own signature); replay the key-transparency map
(K12: one genesis per account, every approval, every map head); recompute the lawful-access
report (warrants, approvers, record counts, disclosures) from the lawful-access entries; check
the daily review counts (R1-R4 of docs/console.md) against the threshold crossings the log holds.

With a deployment manifest (`manifest`), the log must be the one it names and the checkpoint's
witness cosignatures are checked against its witnesses, quorum (V2) and maximum age (V5): what
fails is listed in `AuditResult.problems` (and so among the findings), so auditors notice being
shown a view the witnesses did not cosign.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from accord.client.access import configured_bounds
from accord.client.api import ServerApi
from accord.client.log_trust import fetch_consistency_proof
from accord.clock import Clock, clock_from_env, now_s
from accord.errors import AccordError, ProtocolError, VerificationError
from accord.primitives.encoding import b64decode, b64encode
from accord.protocols.access.audit import AuditReport, audit_access_entries
from accord.protocols.key_transparency import KtAudit, audit_key_transparency
from accord.protocols.manifest import LawfulAccessBounds, Manifest
from accord.protocols.messaging import verify_device_keys
from accord.protocols.private_matching.log_entries import (
    TAG_THRESHOLD_CROSSING,
    ThresholdCrossing,
    parse_matching_entry,
)
from accord.protocols.review_counts import (
    REVIEW_TAG_MARK,
    ReviewCountsAudit,
    audit_review_counts,
)
from accord.protocols.translog import merkle
from accord.protocols.translog.entries import (
    DeviceRegistration,
    MapHead,
    entry_type,
    parse_entry,
)
from accord.protocols.translog.note import Checkpoint, parse_vkey
from accord.protocols.translog.verify import (
    LogTrustPolicy,
    verify_checkpoint_extends,
    verify_checkpoint_fresh,
    verify_checkpoint_note,
)
from accord.wire.messaging import DeviceKeys

PAGE = 1000
ACCESS_TYPE_MARK = b'"type":"accord.access.'
KT_TYPE_MARK = b'"type":"accord.kt.'
DEVICE_TYPE_MARK = b'"type":"accord.device.'
CROSSING_TYPE_MARK = b'"type":"' + TAG_THRESHOLD_CROSSING.encode() + b'"'
STATE_FILE = "log-audit.json"


@dataclass
class AuditResult:
    origin: str
    size: int
    root: str
    counts: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    previous_size: int | None = None
    access: AuditReport | None = None  # lawful access, recomputed from the log
    problems: list[str] = field(default_factory=list)  # checks against the manifest that failed
    key_transparency: KtAudit | None = None  # the map, replayed from the log (K12)
    review: ReviewCountsAudit | None = None  # daily review counts, checked (R1-R4)

    @property
    def findings(self) -> list[str]:
        """Everything found invalid, one line each: the manifest's checks, entries failing their
        own checks, the map's findings, the review counts', then lawful access (entries that
        fail the chain or their bounds, and disclosures past their due time)."""
        found = [f.line() for f in self.key_transparency.findings] if self.key_transparency else []
        review = self.review.findings if self.review else []
        failing = [f"{self.invalid} entries failing their checks"] if self.invalid else []
        access: list[str] = []
        if self.access is not None:
            access = [f"entry {i}: lawful access: {why}" for i, why in self.access.invalid_entries]
            access += [
                f"warrant {c.hex()[:16]}: lawful-access disclosure overdue"
                for c in self.access.overdue_disclosures
            ]
        return [*self.problems, *failing, *found, *review, *access]

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "previous_size": self.previous_size,
            "counts": self.counts,
            "invalid_entries": self.invalid,
            "key_transparency": {
                "accounts": self.key_transparency.accounts,
                "changes": self.key_transparency.changes,
                "map_heads": self.key_transparency.map_heads,
            }
            if self.key_transparency
            else None,
            "review_counts": self.review.to_json() if self.review else None,
            "findings": self.findings,
        }


def fetch_checkpoint(server: str, *, transport: httpx.BaseTransport | None = None) -> str:
    api = ServerApi(server, transport=transport)
    try:
        return api.request_raw("GET", "/v1/log/checkpoint").text
    finally:
        api.close()


def audit_log(
    server: str,
    state_dir: Path,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
    manifest: Manifest | None = None,
) -> AuditResult:
    """Audit the log at `server`, extending the audit kept under `state_dir`. `clock` dates the
    lawful-access report (which disclosures are overdue) and the freshness check; default
    `clock_from_env()`. With `manifest`, the checkpoint is checked against its anchors."""
    api = ServerApi(server, transport=transport)
    try:
        bounds = manifest.lawful_access if manifest is not None else configured_bounds()
        result = _audit(api, server.rstrip("/"), state_dir, clock or clock_from_env(), bounds)
        if manifest is not None:
            result.problems = manifest_problems(api, manifest, clock or clock_from_env())
        return result
    finally:
        api.close()


def manifest_problems(api: ServerApi, manifest: Manifest, clock: Clock) -> list[str]:
    """What the log's current checkpoint fails of the manifest's anchors: its log (origin and
    key, V1), a quorum of valid cosignatures by its witnesses (V2), recent enough (V5)."""
    note = api.request_raw("GET", "/v1/log/checkpoint").text
    policy = LogTrustPolicy(
        origin=manifest.log_origin,
        log_verifiers=(parse_vkey(manifest.log_vkey),),
        witness_verifiers=manifest.witness_verifiers(),
    )
    try:
        verified = verify_checkpoint_note(note, policy)  # every cosignature present must verify
    except AccordError as exc:
        return [f"the checkpoint fails the manifest's log and witness keys: {exc.message}"]
    if len(verified.witness_signatures) < manifest.witness_quorum:
        return [
            f"the checkpoint has {len(verified.witness_signatures)} cosignatures by the "
            f"manifest's witnesses; {manifest.witness_quorum} needed"
        ]
    try:
        verify_checkpoint_fresh(
            verified,
            quorum=manifest.witness_quorum,
            now_s=now_s(clock),
            max_age_s=manifest.max_checkpoint_age_s,
        )
    except VerificationError as exc:
        return [exc.diagnostics()]
    return []


def _audit(
    api: ServerApi,
    server: str,
    state_dir: Path,
    clock: Clock,
    bounds: LawfulAccessBounds | None,
) -> AuditResult:
    state_path = state_dir / STATE_FILE
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    info = api.request("GET", "/v1/log/info", auth=False)
    seen = state.get(server)
    if seen is not None and (seen["origin"], seen["vkey"]) != (info["origin"], info["vkey"]):
        raise VerificationError("the log's key or origin changed since the last audit")
    policy = LogTrustPolicy(origin=info["origin"], log_verifiers=(parse_vkey(info["vkey"]),))
    note = api.request_raw("GET", "/v1/log/checkpoint").text
    checkpoint = verify_checkpoint_note(note, policy).checkpoint  # V1
    previous = None
    if seen is not None:
        previous = Checkpoint(
            info["origin"], int(seen["size"]), b64decode(seen["root"], max_bytes=32)
        )
        proof = fetch_consistency_proof(api, previous, checkpoint)
        verify_checkpoint_extends(previous, checkpoint, proof)  # V3
    leaves: list[bytes] = []
    kt_entries: list[tuple[int, bytes]] = []
    access_entries: list[tuple[int, bytes]] = []
    review_entries: list[tuple[int, bytes]] = []
    crossing_hours: list[tuple[int, int]] = []
    newest_map_head_ms: int | None = None
    counts: Counter[str] = Counter()
    invalid = 0
    start = 0
    while start < checkpoint.size:
        page = api.request(
            "GET",
            "/v1/log/entries",
            params={"start": start, "end": min(checkpoint.size, start + PAGE)},
            auth=False,
        )
        entries = [b64decode(e, max_bytes=64 * 1024) for e in page["entries"]]
        if not entries:
            raise ProtocolError("the server returned no entries below its checkpoint size")
        for data in entries:
            if ACCESS_TYPE_MARK in data:  # cheap filter; the audit parses each one strictly
                access_entries.append((len(leaves), data))
            elif KT_TYPE_MARK in data or DEVICE_TYPE_MARK in data:
                kt_entries.append((len(leaves), data))
            leaves.append(merkle.leaf_hash(data))
            try:
                counts[entry_type(data)] += 1
                if REVIEW_TAG_MARK in data:
                    review_entries.append((len(leaves) - 1, data))
                elif CROSSING_TYPE_MARK in data:
                    crossing = parse_matching_entry(data)
                    if isinstance(crossing, ThresholdCrossing):
                        crossing_hours.append((len(leaves) - 1, crossing.hour))
                entry = parse_entry(data)
                if isinstance(entry, MapHead):
                    newest_map_head_ms = entry.timestamp
                if isinstance(entry, DeviceRegistration):
                    verify_device_keys(
                        DeviceKeys(
                            account=entry.account,
                            device_id=entry.device_id,
                            ed25519=entry.ed25519,
                            curve25519=entry.curve25519,
                            signature=entry.signature,
                        )
                    )
            except (AccordError, ValueError):
                invalid += 1
        start += len(entries)
    leaves = leaves[: checkpoint.size]
    review_entries = [(i, e) for i, e in review_entries if i < checkpoint.size]
    crossing_hours = [(i, h) for i, h in crossing_hours if i < checkpoint.size]
    if merkle.root_hash(leaves) != checkpoint.root_hash:
        raise VerificationError("the entries do not hash to the checkpoint's root")
    state[server] = {
        "origin": info["origin"],
        "vkey": info["vkey"],
        "size": checkpoint.size,
        "root": b64encode(checkpoint.root_hash),
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_path)
    return AuditResult(
        origin=info["origin"],
        size=checkpoint.size,
        root=b64encode(checkpoint.root_hash),
        counts=dict(sorted(counts.items())),
        invalid=invalid,
        previous_size=previous.size if previous is not None else None,
        key_transparency=audit_key_transparency(
            [(i, e) for i, e in kt_entries if i < checkpoint.size], checkpoint.size
        ),
        review=audit_review_counts(
            review_entries, crossing_hours, newest_map_head_ms=newest_map_head_ms
        ),
        access=audit_access_entries(
            [(i, e) for i, e in access_entries if i < checkpoint.size],
            now=now_s(clock),
            bounds=bounds,
        ),
    )
