"""The deployment manifest: a deployment's trust anchors, signed, distributed with the client.

Clients never learn these from the server (docs/protocol/transparency.md, "Deployment
manifest"). A manifest is a C2SP signed note whose text is one line of canonical JSON:

    {"type": "accord.deployment.manifest.v1", "deployment": ..., "serial": ...,
     "log": {"origin": ..., "vkey": ...}, "witnesses": [...], "witness_quorum": k,
     "max_checkpoint_age_s": ..., "lawful_access": {...}, "matching_floors": {...},
     "signers": [...], "signer_quorum": m}

M1  the first manifest a device takes (serial any) must carry `signer_quorum` valid signatures
    by its own `signers`; it is trusted because it came with the client, not from the server;
M2  a later manifest replaces it only with a larger serial, the same deployment name and
    `signer_quorum` valid signatures by the signers of the manifest it replaces;
M3  every field is checked against the limits below; anything else is refused.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import canonical_json
from accord.protocols.translog.note import (
    Signer,
    Verifier,
    parse_unverified_note,
    parse_vkey,
    sign_note,
    verify_note,
)
from accord.protocols.translog.verify import LogTrustPolicy

MANIFEST_TYPE = "accord.deployment.manifest.v1"
MAX_MANIFEST_BYTES = 64 * 1024
MAX_WITNESSES = 32
MAX_SIGNERS = 16
MAX_NAME_CHARS = 128
MAX_CHECKPOINT_AGE_LIMIT_S = 30 * 24 * 3600
"""No deployment may let clients accept checkpoints older than 30 days."""

DEFAULT_MAX_CHECKPOINT_AGE_S = 24 * 3600
DEFAULT_MAX_DISCLOSURE_DELAY_S = 180 * 24 * 3600
DEFAULT_MAX_START_SKEW_S = 3600


@dataclass(frozen=True, slots=True)
class MatchingFloors:
    """The weakest private-matching table a client accepts (docs/protocol/private-matching.md).

    A table below any floor is refused: fewer real matches needed than `min_threshold`, fewer
    synthetic vouchers than `min_synthetic_rate_ppm`, bands narrower than `min_band_bits` (more
    chance collisions), more bands than `max_band_count` (a finer open-count leak), longer key
    epochs than `max_epoch_images` (more images to collide within one), or more slots than
    `max_table_slots` (more elements to collide with).
    """

    min_threshold: int
    min_synthetic_rate_ppm: int
    min_band_bits: int
    max_band_count: int
    max_epoch_images: int
    max_table_slots: int

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class LawfulAccessBounds:
    """What a device requires of a warrant beyond its k-of-n approval (docs/lawful-access.md).

    `approver_genesis_set` is the hash (hex) of the first approver set; later sets must chain
    from it. A window may start at most `max_start_skew_s` before the warrant's commitment was
    cosigned; disclosure may follow a window's end by at most `max_disclosure_delay_s`.
    """

    approver_genesis_set: str
    max_disclosure_delay_s: int
    max_start_skew_s: int

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A deployment's trust anchors (see the module docstring for the encoding)."""

    deployment: str
    serial: int
    log_origin: str
    log_vkey: str
    witnesses: tuple[str, ...]
    witness_quorum: int
    max_checkpoint_age_s: int
    lawful_access: LawfulAccessBounds
    matching_floors: MatchingFloors
    signers: tuple[str, ...]
    signer_quorum: int = 1

    def __post_init__(self) -> None:
        _check(self)

    def fields(self) -> dict[str, Any]:
        return {
            "type": MANIFEST_TYPE,
            "deployment": self.deployment,
            "serial": self.serial,
            "log": {"origin": self.log_origin, "vkey": self.log_vkey},
            "witnesses": list(self.witnesses),
            "witness_quorum": self.witness_quorum,
            "max_checkpoint_age_s": self.max_checkpoint_age_s,
            "lawful_access": self.lawful_access.fields(),
            "matching_floors": self.matching_floors.fields(),
            "signers": list(self.signers),
            "signer_quorum": self.signer_quorum,
        }

    def to_text(self) -> str:
        """The note text that is signed: canonical JSON and one newline."""
        return canonical_json(self.fields()).decode("utf-8") + "\n"

    def signer_verifiers(self) -> tuple[Verifier, ...]:
        return tuple(parse_vkey(v) for v in self.signers)

    def witness_verifiers(self) -> tuple[Verifier, ...]:
        return tuple(parse_vkey(v) for v in self.witnesses)

    def log_policy(self) -> LogTrustPolicy:
        """The log and witness checks (V1, V2) this manifest pins."""
        return LogTrustPolicy(
            origin=self.log_origin,
            log_verifiers=(parse_vkey(self.log_vkey),),
            witness_verifiers=self.witness_verifiers(),
            witness_quorum=self.witness_quorum,
        )


def build_manifest(
    *,
    deployment: str,
    log_vkey: str,
    witnesses: Sequence[str],
    approver_genesis_set: str,
    signers: Sequence[str],
    matching_floors: MatchingFloors,
    serial: int = 1,
    witness_quorum: int | None = None,
    signer_quorum: int = 1,
    max_checkpoint_age_s: int = DEFAULT_MAX_CHECKPOINT_AGE_S,
    max_disclosure_delay_s: int = DEFAULT_MAX_DISCLOSURE_DELAY_S,
    max_start_skew_s: int = DEFAULT_MAX_START_SKEW_S,
) -> Manifest:
    """A manifest with the log's origin taken from its key's name, every witness required
    unless `witness_quorum` says otherwise, and the default bounds (M3 checks all). The floors'
    defaults are `accord.protocols.private_matching.floors.DEFAULT_MATCHING_FLOORS`."""
    return Manifest(
        deployment=deployment,
        serial=serial,
        log_origin=parse_vkey(log_vkey).name,
        log_vkey=log_vkey,
        witnesses=tuple(witnesses),
        witness_quorum=len(witnesses) if witness_quorum is None else witness_quorum,
        max_checkpoint_age_s=max_checkpoint_age_s,
        lawful_access=LawfulAccessBounds(
            approver_genesis_set=approver_genesis_set,
            max_disclosure_delay_s=max_disclosure_delay_s,
            max_start_skew_s=max_start_skew_s,
        ),
        matching_floors=matching_floors,
        signers=tuple(signers),
        signer_quorum=signer_quorum,
    )


def _check(m: Manifest) -> None:
    """M3."""
    if not m.deployment or len(m.deployment) > MAX_NAME_CHARS or not m.deployment.isprintable():
        raise InvalidInput("manifest: deployment name is malformed")
    if not 1 <= m.serial < 2**53:
        raise InvalidInput("manifest: serial out of range")
    if not m.log_origin or len(m.log_origin) > MAX_NAME_CHARS:
        raise InvalidInput("manifest: log origin is malformed")
    if parse_vkey(m.log_vkey).name != m.log_origin:
        raise InvalidInput("manifest: the log key is not named for the log origin")
    if len(m.witnesses) > MAX_WITNESSES or len(set(m.witnesses)) != len(m.witnesses):
        raise InvalidInput("manifest: too many or repeated witnesses")
    if any(not parse_vkey(w).is_cosigner for w in m.witnesses):
        raise InvalidInput("manifest: witness keys must be cosignature keys")
    if not 1 <= m.witness_quorum <= len(m.witnesses):
        raise InvalidInput("manifest: the witness quorum must be between 1 and the witnesses")
    if not 60 <= m.max_checkpoint_age_s <= MAX_CHECKPOINT_AGE_LIMIT_S:
        raise InvalidInput("manifest: maximum checkpoint age out of range")
    if not m.signers or len(m.signers) > MAX_SIGNERS or len(set(m.signers)) != len(m.signers):
        raise InvalidInput("manifest: needs 1 to 16 distinct signers")
    if any(parse_vkey(s).is_cosigner for s in m.signers):
        raise InvalidInput("manifest: signer keys must be note (Ed25519) keys")
    if not 1 <= m.signer_quorum <= len(m.signers):
        raise InvalidInput("manifest: signer quorum out of range")
    la = m.lawful_access
    try:
        if len(bytes.fromhex(la.approver_genesis_set)) != 32:
            raise ValueError
    except ValueError:
        raise InvalidInput("manifest: approver set hash must be 64 hex digits") from None
    if la.approver_genesis_set != la.approver_genesis_set.lower():
        raise InvalidInput("manifest: approver set hash must be lower-case hex")
    for name, value in (
        ("max_disclosure_delay_s", la.max_disclosure_delay_s),
        ("max_start_skew_s", la.max_start_skew_s),
        *m.matching_floors.fields().items(),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**40:
            raise InvalidInput(f"manifest: {name} out of range")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidInput(f"manifest: {what} must be an object")
    return value


def _int(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"manifest: {key} must be an integer")
    return value


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise InvalidInput(f"manifest: {key} must be a string")
    return value


def _strs(obj: dict[str, Any], key: str) -> tuple[str, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"manifest: {key} must be a list of strings")
    return tuple(value)


def parse_manifest_text(text: str) -> Manifest:
    """M3: the manifest a note's text encodes; only its canonical encoding is accepted."""
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not text a file could hold
        raise InvalidInput("manifest is not valid UTF-8") from None
    if size > MAX_MANIFEST_BYTES:
        raise InvalidInput("manifest too large")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise InvalidInput("manifest is not JSON") from None
    obj = _obj(obj, "the manifest")
    if obj.get("type") != MANIFEST_TYPE:
        raise InvalidInput("not an Accord deployment manifest (or a newer version)")
    log = _obj(obj.get("log"), "log")
    la = _obj(obj.get("lawful_access"), "lawful_access")
    fl = _obj(obj.get("matching_floors"), "matching_floors")
    manifest = Manifest(
        deployment=_str(obj, "deployment"),
        serial=_int(obj, "serial"),
        log_origin=_str(log, "origin"),
        log_vkey=_str(log, "vkey"),
        witnesses=_strs(obj, "witnesses"),
        witness_quorum=_int(obj, "witness_quorum"),
        max_checkpoint_age_s=_int(obj, "max_checkpoint_age_s"),
        lawful_access=LawfulAccessBounds(
            approver_genesis_set=_str(la, "approver_genesis_set"),
            max_disclosure_delay_s=_int(la, "max_disclosure_delay_s"),
            max_start_skew_s=_int(la, "max_start_skew_s"),
        ),
        matching_floors=MatchingFloors(
            **{f.name: _int(fl, f.name) for f in dataclasses.fields(MatchingFloors)}
        ),
        signers=_strs(obj, "signers"),
        signer_quorum=_int(obj, "signer_quorum"),
    )
    if manifest.to_text() != text:
        raise InvalidInput("manifest is not in canonical form")
    return manifest


def sign_manifest(manifest: Manifest, signers: Sequence[Signer]) -> str:
    """The manifest as a signed note (more signatures can be added with `note.add_signatures`)."""
    return sign_note(manifest.to_text(), list(signers))


def _quorum_signed(note: str, verifiers: Sequence[Verifier], quorum: int) -> str:
    verified = verify_note(note, verifiers)
    if len(verified.verified) < quorum:
        raise VerificationError(
            f"the manifest has {len(verified.verified)} of the {quorum} signatures it needs",
            code="manifest_unsigned",
        )
    return verified.text


def verify_manifest(note: str | bytes) -> Manifest:
    """M1: a manifest signed by a quorum of its own signers (for the first one a device takes)."""
    if len(note) > MAX_MANIFEST_BYTES:
        raise InvalidInput("manifest too large")
    manifest = parse_manifest_text(parse_unverified_note(note).text)
    _quorum_signed(
        note if isinstance(note, str) else note.decode("utf-8"),
        manifest.signer_verifiers(),
        manifest.signer_quorum,
    )
    return manifest


def verify_manifest_update(current: Manifest, note: str | bytes) -> Manifest:
    """M2: a manifest that may replace `current`."""
    new = verify_manifest(note)
    text = note if isinstance(note, str) else note.decode("utf-8")
    try:
        _quorum_signed(text, current.signer_verifiers(), current.signer_quorum)
    except VerificationError:
        raise VerificationError(
            "the new manifest is not signed by the current manifest's signers",
            code="manifest_not_chained",
        ) from None
    if new.deployment != current.deployment:
        raise VerificationError(
            "the new manifest is for another deployment", code="manifest_not_chained"
        )
    if new.serial <= current.serial:
        raise VerificationError(
            "the new manifest's serial is not larger than the current one",
            code="manifest_rollback",
        )
    return new
