"""The authorities' side of lawful access: approvers, the operator, agencies.

Key and object files (docs/lawful-access.md §3-5), each one JSON object with a ``type``:

- ``accord.approver-key.v1`` (private, mode 0600): an approver's id, name, role and Ed25519 seed;
  ``FILE.pub`` is ``accord.approver.v1``, the public `Approver`.
- ``accord.approver-set.v1``: a `SignedApproverSet` (signatures added on publication).
- ``accord.agency-key.v1`` (private, mode 0600): an agency's id, name and HPKE private key;
  ``FILE.pub`` is ``accord.agency-public-key.v1``.
- ``accord.agency-registration.v1``: the `SignedAgencyKey` as logged, kept under the home
  directory (``agencies/NAME.json``) so that warrants can name the key.
- ``accord.warrant.v1``: a `SignedWarrant` (approvals added by ``warrant sign``).

Files are read with a size limit and strict readers; private key files are written with mode
0600 and never printed. Requests to the server go through `ServerApi`; a refusal arrives as the
server's code and message (e.g. ``threshold_not_met``).
"""

from __future__ import annotations

import hmac
import json
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from accord.client.access import configured_bounds
from accord.client.api import M, ServerApi
from accord.client.log_scan import LogPosition, read_new_entries
from accord.clock import Clock, clock_from_env, now_s
from accord.errors import (
    AccordError,
    AuthorizationError,
    DecryptionError,
    InvalidInput,
    NotFound,
    ProtocolError,
    VerificationError,
)
from accord.primitives.encoding import b64decode, b64encode, b64url, canonical_json
from accord.primitives.hpke import (
    HpkePrivateKey,
    HpkePublicKey,
    HpkeSealed,
    generate_hpke_key_pair,
    hpke_open,
)
from accord.protocols.access import _codec as c
from accord.protocols.access.agency import AgencyKey, SignedAgencyKey, sign_agency_key
from accord.protocols.access.approvers import (
    Approver,
    ApproverRole,
    ApproverSet,
    ApproverSigner,
    SignedApproverSet,
    advance_approver_set,
    pin_approver_set,
    sign_approver_set,
)
from accord.protocols.access.audit import AuditReport, audit_access_entries
from accord.protocols.access.log_entries import (
    AgencyKeyEntry,
    ApproverSetEntry,
    DisclosureExtensionEntry,
    extension_message,
    parse_access_entry,
)
from accord.protocols.access.records import (
    OpenedRecord,
    RecordOpener,
    SealedRecord,
)
from accord.protocols.access.timeparse import format_time
from accord.protocols.access.warrant import (
    WARRANT_MAX_DURATION_S,
    Approval,
    SignedWarrant,
    Warrant,
    WarrantCommitment,
    approval_message,
    check_warrant_duration,
    normalise_scope,
)
from accord.protocols.translog.entries import DeviceRegistration, parse_entry
from accord.protocols.translog.note import parse_vkey
from accord.protocols.translog.verify import LogTrustPolicy, verify_checkpoint_note
from accord.wire.access import (
    AccessEntries,
    AgencyChallenge,
    AgencyKeyRegistered,
    AgencyWarrant,
    ApproverSetPublished,
    ApproverSets,
    DeliveryMetadata,
    DisclosureExtended,
    MetadataPage,
    RecordPage,
    WarrantSubmitted,
    agency_challenge_info,
)

MAX_FILE_BYTES = 1 << 20
FETCH_PAGE = 32
"""Records per fetch: 32 of the largest (about 350 KB each) stay within a response's limit."""
AGENCIES_DIR = "agencies"
DEFAULT_LEGAL_TYPE = "interception-warrant"

TYPE_APPROVER_KEY = "accord.approver-key.v1"
TYPE_APPROVER = "accord.approver.v1"
TYPE_APPROVER_SET = "accord.approver-set.v1"
TYPE_AGENCY_KEY = "accord.agency-key.v1"
TYPE_AGENCY_PUBLIC = "accord.agency-public-key.v1"
TYPE_AGENCY_REGISTRATION = "accord.agency-registration.v1"
TYPE_WARRANT = "accord.warrant.v1"


# --- files ------------------------------------------------------------------------------------


def read_object(path: Path, expected_type: str) -> dict[str, Any]:
    """One typed JSON object from a file, at most 1 MiB, without its ``type`` key."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        raise InvalidInput(f"cannot read {path.name}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InvalidInput(f"{path.name} is larger than {MAX_FILE_BYTES} bytes")
    return parse_object(data, expected_type, what=path.name)


def parse_object(data: bytes, expected_type: str, *, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidInput(f"{what} is not a JSON object") from None
    if not isinstance(obj, dict) or obj.get("type") != expected_type:
        raise InvalidInput(f"{what} is not a {expected_type} file")
    rest = dict(obj)
    rest.pop("type")
    return rest


def _no_float(_text: str) -> Any:
    raise ValueError("numbers must be integers")


def write_object(path: Path, obj_type: str, fields: dict[str, Any], *, private: bool) -> None:
    """Write atomically; a private file is created with mode 0600 and never overwritten."""
    path = Path(path)
    data = json.dumps({"type": obj_type, **fields}, indent=2, sort_keys=True) + "\n"
    if private:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise InvalidInput(f"{path.name} exists; not overwriting a key") from None
        with os.fdopen(fd, "w") as f:
            f.write(data)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(data)
    tmp.replace(path)


def public_path(path: Path) -> Path:
    return Path(str(path) + ".pub")


# --- approvers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApproverKey:
    signer: ApproverSigner
    name: str
    role: ApproverRole

    @property
    def approver(self) -> Approver:
        return self.signer.approver(name=self.name, role=self.role)


def generate_approver_key(name: str, role: str, out: Path) -> Approver:
    """`accord approver keygen`: the private key to ``out``, the public `Approver` beside it."""
    c.check_ident(name, "approver name")
    try:
        approver_role = ApproverRole(role)
    except ValueError:
        raise InvalidInput("unknown approver role") from None
    signer = ApproverSigner.generate(name)
    approver = signer.approver(name=name, role=approver_role)
    write_object(
        out,
        TYPE_APPROVER_KEY,
        {
            "approver_id": name,
            "name": name,
            "role": approver_role.value,
            "seed": b64encode(signer.seed()),
        },
        private=True,
    )
    write_object(public_path(out), TYPE_APPROVER, {"approver": approver.to_obj()}, private=False)
    return approver


def load_approver_key(path: Path) -> ApproverKey:
    return approver_key_from(read_object(path, TYPE_APPROVER_KEY))


def approver_key_from(obj: dict[str, Any]) -> ApproverKey:
    o = c.require_keys(obj, {"approver_id", "name", "role", "seed"}, what="approver key")
    role = c.get_str(o, "role", max_len=64)
    if role not in ApproverRole.__members__.values():
        raise InvalidInput("unknown approver role")
    seed = c.get_b64(o, "seed", max_bytes=32, size=32)
    signer = ApproverSigner.from_seed(c.get_str(o, "approver_id", max_len=64), seed)
    return ApproverKey(signer, c.get_str(o, "name", max_len=200), ApproverRole(role))


def load_approver_public(path: Path) -> Approver:
    return approver_from(read_object(path, TYPE_APPROVER))


def approver_from(obj: dict[str, Any]) -> Approver:
    return Approver.from_obj(c.require_keys(obj, {"approver"}, what="approver file")["approver"])


def create_approver_set(
    threshold: int, approvers: Sequence[Approver], *, replaces: SignedApproverSet | None = None
) -> SignedApproverSet:
    """`accord approver-set create`: version 1, or the version after ``replaces``."""
    ordered = tuple(sorted(approvers, key=lambda a: a.approver_id))
    if replaces is None:
        new = ApproverSet(1, threshold, ordered)
    else:
        previous = replaces.approver_set
        new = ApproverSet(previous.version + 1, threshold, ordered, previous.set_hash)
    return SignedApproverSet(new)


def read_approver_set(path: Path) -> SignedApproverSet:
    return approver_set_from(read_object(path, TYPE_APPROVER_SET))


def approver_set_from(obj: dict[str, Any]) -> SignedApproverSet:
    o = c.require_keys(obj, {"signed_approver_set"}, what="approver set file")
    return SignedApproverSet.from_obj(o["signed_approver_set"])


def write_approver_set(path: Path, signed: SignedApproverSet) -> None:
    write_object(path, TYPE_APPROVER_SET, {"signed_approver_set": signed.to_obj()}, private=False)


def sign_approver_set_with(
    signed: SignedApproverSet, keys: Sequence[ApproverKey]
) -> SignedApproverSet:
    for key in keys:
        signed = sign_approver_set(signed, key.signer)
    return signed


# --- talking to the server --------------------------------------------------------------------


def _api(server: str, transport: httpx.BaseTransport | None, token: str | None = None) -> ServerApi:
    return ServerApi(server, token=(lambda _refresh: token) if token else None, transport=transport)


def publish_approver_set(
    server: str,
    admin_token: str,
    signed: SignedApproverSet,
    *,
    transport: httpx.BaseTransport | None = None,
) -> ApproverSetPublished:
    """`accord approver-set publish` (operator): the server checks the k signatures."""
    api = _api(server, transport, admin_token)
    try:
        return api.call(
            ApproverSetPublished,
            "POST",
            "/v1/access/approver-sets",
            json={"v": 1, "signed_approver_set": signed.to_obj()},
        )
    finally:
        api.close()


def fetch_current_approver_set(
    server: str, *, transport: httpx.BaseTransport | None = None
) -> ApproverSet:
    """The newest approver set the server has logged (its signatures checked along the chain)."""
    api = _api(server, transport)
    try:
        answer = api.call(ApproverSets, "GET", "/v1/access/approver-sets", auth=False)
    finally:
        api.close()
    if not answer.sets:
        raise NotFound("no approver set is published on this server")
    entries = []
    for proven in answer.sets:
        entry = parse_access_entry(b64decode(proven.entry, max_bytes=64 * 1024))
        if not isinstance(entry, ApproverSetEntry):
            raise ProtocolError("the server sent another entry as an approver set")
        entries.append(entry.signed)
    return advance_approver_set(pin_approver_set(entries[0]), entries[1:])


# --- agencies ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgencyPrivateKey:
    agency_id: str
    name: str
    private_key: HpkePrivateKey

    def __repr__(self) -> str:
        return f"AgencyPrivateKey({self.agency_id!r})"


def generate_agency_key(name: str, out: Path) -> HpkePublicKey:
    """`accord agency keygen`: the HPKE private key to ``out``, the public key beside it."""
    c.check_ident(name, "agency name")
    private = generate_hpke_key_pair()
    write_object(
        out,
        TYPE_AGENCY_KEY,
        {"agency_id": name, "name": name, "private_key": b64encode(private.to_bytes())},
        private=True,
    )
    public = private.public_key()
    write_object(
        public_path(out),
        TYPE_AGENCY_PUBLIC,
        {"agency_id": name, "name": name, "public_key": b64encode(public.to_bytes())},
        private=False,
    )
    return public


def load_agency_key(path: Path) -> AgencyPrivateKey:
    return agency_key_from(read_object(path, TYPE_AGENCY_KEY))


def agency_key_from(obj: dict[str, Any]) -> AgencyPrivateKey:
    o = c.require_keys(obj, {"agency_id", "name", "private_key"}, what="agency key")
    raw = c.get_b64(o, "private_key", max_bytes=32, size=32)
    return AgencyPrivateKey(
        c.check_ident(o["agency_id"], "agency id"),
        c.get_str(o, "name", max_len=200),
        HpkePrivateKey.from_bytes(raw),
    )


def load_agency_public(path: Path) -> tuple[str, str, HpkePublicKey]:
    return agency_public_from(read_object(path, TYPE_AGENCY_PUBLIC))


def agency_public_from(obj: dict[str, Any]) -> tuple[str, str, HpkePublicKey]:
    o = c.require_keys(obj, {"agency_id", "name", "public_key"}, what="agency public key")
    raw = c.get_b64(o, "public_key", max_bytes=32, size=32)
    return (
        c.check_ident(o["agency_id"], "agency id"),
        c.get_str(o, "name", max_len=200),
        HpkePublicKey.from_bytes(raw),
    )


def registration_path(home: Path, agency: str) -> Path:
    return Path(home) / AGENCIES_DIR / f"{c.check_ident(agency, 'agency name')}.json"


def register_agency(
    server: str,
    public_file: Path,
    keys: Sequence[ApproverKey],
    home: Path,
    *,
    transport: httpx.BaseTransport | None = None,
    clock: Clock | None = None,
) -> tuple[SignedAgencyKey, AgencyKeyRegistered]:
    """`accord agency register`: k approvers of the current set sign the agency's key; the
    server logs it. The registration is kept under ``home`` for `draft_warrant_file`. `clock`
    dates the registration (default `clock_from_env()`)."""
    agency_id, name, public_key = load_agency_public(public_file)
    current = fetch_current_approver_set(server, transport=transport)
    key = AgencyKey(
        agency_id=agency_id,
        name=name,
        public_key=public_key,
        approver_set=current.set_hash,
        registered_at=now_s(clock or clock_from_env()),
    )
    signed = SignedAgencyKey(key)
    for approver in keys:
        signed = sign_agency_key(signed, approver.signer)
    api = _api(server, transport)
    try:
        registered = api.call(
            AgencyKeyRegistered,
            "POST",
            "/v1/access/agency-keys",
            json={"v": 1, "signed_agency_key": signed.to_obj()},
            auth=False,
        )
    finally:
        api.close()
    path = registration_path(home, agency_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_object(
        path,
        TYPE_AGENCY_REGISTRATION,
        {"signed_agency_key": signed.to_obj(), "log_index": registered.index},
        private=False,
    )
    return signed, registered


def load_registration(home: Path, agency: str) -> AgencyKey:
    """An agency's logged key, by name (under the home directory) or by file path."""
    candidate = Path(agency)
    path = candidate if candidate.is_file() else registration_path(home, agency)
    if not path.is_file():
        raise InvalidInput(
            f"agency {agency!r} is not registered from this home; run 'accord agency register'"
        )
    return registration_from(read_object(path, TYPE_AGENCY_REGISTRATION))


def registration_from(obj: dict[str, Any]) -> AgencyKey:
    o = c.require_keys(obj, {"signed_agency_key", "log_index"}, what="agency registration")
    c.get_int(o, "log_index")
    return SignedAgencyKey.from_obj(o["signed_agency_key"]).key


# --- warrants ---------------------------------------------------------------------------------


def draft_warrant(
    *,
    target: str,
    agency: AgencyKey,
    scope: Sequence[str],
    start_time: int,
    end_time: int,
    case_reference: str,
    disclose_after_s: int,
    authorisation_reference: str | None = None,
    legal_type: str = DEFAULT_LEGAL_TYPE,
    max_duration_s: int = WARRANT_MAX_DURATION_S,
) -> SignedWarrant:
    """`accord warrant draft`: an unsigned warrant to the agency's logged key, under the
    approver set that key was registered with."""
    warrant = Warrant(
        object_identifier=str(uuid.uuid4()),
        authorisation_reference=authorisation_reference or case_reference,
        legal_type=legal_type,
        case_reference=case_reference,
        start_time=start_time,
        end_time=end_time,
        target_identifier=target,
        delivery_key_id=agency.key_id,
        scope=normalise_scope(scope),
        disclosure_time=end_time + disclose_after_s,
        approver_set=agency.approver_set,
    )
    check_warrant_duration(warrant, max_duration_s=max_duration_s)
    return SignedWarrant(warrant)


def read_warrant(path: Path) -> SignedWarrant:
    return warrant_from(read_object(path, TYPE_WARRANT))


def warrant_from(obj: dict[str, Any]) -> SignedWarrant:
    o = c.require_keys(obj, {"signed_warrant"}, what="warrant file")
    return SignedWarrant.from_obj(o["signed_warrant"])


def write_warrant(path: Path, signed: SignedWarrant) -> None:
    write_object(path, TYPE_WARRANT, {"signed_warrant": signed.to_obj()}, private=False)


def sign_warrant(signed: SignedWarrant, key: ApproverKey, *, now: int) -> SignedWarrant:
    """`accord warrant sign`: add this approver's approval (once per approver), in the role
    their key names. Membership is checked by the server and by the target's device."""
    if any(a.approver_id == key.signer.approver_id for a in signed.approvals):
        raise InvalidInput(f"{key.signer.approver_id} has already signed this warrant")
    message = approval_message(signed.warrant_id, key.signer.approver_id, key.role, now)
    approval = Approval(key.signer.approver_id, key.role, now, key.signer.sign(message).signature)
    return SignedWarrant(signed.warrant, (*signed.approvals, approval))


def submit_warrant(
    server: str, signed: SignedWarrant, *, transport: httpx.BaseTransport | None = None
) -> WarrantSubmitted:
    """`accord warrant submit`: the server checks it, commits to it in the log and delivers it."""
    return _post(
        server, transport, WarrantSubmitted, "/v1/access/warrants", signed_warrant=signed.to_obj()
    )


def _post(
    server: str,
    transport: httpx.BaseTransport | None,
    model: type[M],
    path: str,
    **body: object,
) -> M:
    """POST a signed object (the signatures are the authority: no account is needed)."""
    api = _api(server, transport)
    try:
        return api.call(model, "POST", path, json={"v": 1, **body}, auth=False)
    finally:
        api.close()


def extend_disclosure(
    server: str,
    commitment_hex: str,
    disclosure_time: int,
    keys: Sequence[ApproverKey],
    *,
    now: int,
    transport: httpx.BaseTransport | None = None,
) -> DisclosureExtended:
    """`accord warrant extend`: k approvers of the current set postpone a warrant's disclosure
    (named by its public commitment) to ``disclosure_time``; the server checks and logs it.
    Without a logged extension, a disclosure not published by its date shows as overdue."""
    commitment = WarrantCommitment(c.parse_hex(commitment_hex.lower(), "commitment", size=32))
    current = fetch_current_approver_set(server, transport=transport)
    message = extension_message(commitment, disclosure_time, now, current.set_hash)
    extension = DisclosureExtensionEntry(
        commitment=commitment,
        disclosure_time=disclosure_time,
        extended_at=now,
        approver_set=current.set_hash,
        signatures=tuple(k.signer.sign(message) for k in keys),
    )
    return _post(
        server, transport, DisclosureExtended, "/v1/access/extensions", extension=extension.to_obj()
    )


def public_report(
    server: str, *, transport: httpx.BaseTransport | None = None, clock: Clock | None = None
) -> AuditReport:
    """`accord warrant list`: the public view, recomputed from the server's lawful-access
    entries (`accord log audit` recomputes it from the whole log). `clock` says which
    disclosures are overdue (default `clock_from_env()`)."""
    api = _api(server, transport)
    indexed: list[tuple[int, bytes]] = []
    try:
        start = 0
        while True:
            page = api.call(
                AccessEntries, "GET", "/v1/access/entries", params={"start": start}, auth=False
            )
            indexed += [(e.index, b64decode(e.entry, max_bytes=64 * 1024)) for e in page.entries]
            if not page.more or not page.entries:
                break
            start = page.entries[-1].index + 1
    finally:
        api.close()
    return audit_access_entries(
        indexed, now=now_s(clock or clock_from_env()), bounds=configured_bounds()
    )


# --- the agency fetches -----------------------------------------------------------------------


@dataclass
class FetchResult:
    """What the agency got: opened records in order, and every problem it detected."""

    warrant: Warrant
    records: list[OpenedRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    gaps: dict[str, tuple[tuple[int, int], ...]] = field(default_factory=dict)
    metadata: list[DeliveryMetadata] = field(default_factory=list)


def _agency_token(api: ServerApi, key: AgencyPrivateKey, warrant_id: bytes) -> str:
    """Open the server's challenge for this warrant: only the holder of the warrant's agency
    key can, and the token it holds is good for this warrant only."""
    challenge = api.call(
        AgencyChallenge,
        "POST",
        "/v1/access/agency/challenge",
        json={"v": 1, "warrant_id": warrant_id.hex()},
        auth=False,
    )
    sealed = HpkeSealed(
        b64decode(challenge.enc, max_bytes=32, what="enc"),
        b64decode(challenge.ciphertext, max_bytes=256, what="challenge"),
    )
    try:
        token = hpke_open(key.private_key, sealed, info=agency_challenge_info(), aad=warrant_id)
    except DecryptionError:
        raise AuthorizationError(
            "this warrant is delivered to another agency key", code="agency_key_mismatch"
        ) from None
    return b64url(token)


def fetch_records(
    server: str,
    key: AgencyPrivateKey,
    warrant_id_hex: str,
    *,
    with_metadata: bool = False,
    log_policy: LogTrustPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
) -> FetchResult:
    """`accord agency fetch`: prove the agency holds the warrant's key, then fetch the records
    in the order the server stored them and open each (`RecordOpener`: gaps are reported; a
    tampered, replayed or reordered record is a problem, never a result)."""
    try:
        warrant_id = bytes.fromhex(warrant_id_hex)
    except ValueError:
        warrant_id = b""
    if len(warrant_id) != 32:
        raise InvalidInput("a warrant id is 64 hex digits")
    public = _api(server, transport)
    try:
        token = _agency_token(public, key, warrant_id)
    finally:
        public.close()
    api = _api(server, transport, token)
    try:
        return _fetch(api, key, warrant_id, with_metadata, log_policy)
    finally:
        api.close()


def logged_device_keys(
    api: ServerApi, account: str, log_policy: LogTrustPolicy | None = None
) -> dict[str, str]:
    """The Ed25519 identity key of every device the transparency log has registered for
    ``account``, read from the whole log and checked against its signed checkpoint. Records
    are verified against these keys, never against keys the server hands over beside them.

    ``log_policy`` pins the log's key and the witness quorum (`agency fetch --log-key
    --witness`; the deployment manifest, once pinned). Without it the log's key is taken as
    the server names it, as `accord log audit` does on first use: a provider could then show
    the agency a log of its own."""
    policy = log_policy
    if policy is None:
        info = api.request("GET", "/v1/log/info", auth=False)
        policy = LogTrustPolicy(origin=info["origin"], log_verifiers=(parse_vkey(info["vkey"]),))
    note = api.request_raw("GET", "/v1/log/checkpoint").text
    checkpoint = verify_checkpoint_note(note, policy).checkpoint
    entries, _ = read_new_entries(api, LogPosition(), checkpoint)
    keys: dict[str, str] = {}
    for _, data in entries:
        try:
            entry = parse_entry(data)
        except (AccordError, ValueError):
            continue
        if isinstance(entry, DeviceRegistration) and entry.account == account:
            keys.setdefault(entry.device_id, entry.ed25519)
    return keys


def _fetch(
    api: ServerApi,
    key: AgencyPrivateKey,
    warrant_id: bytes,
    with_metadata: bool,
    log_policy: LogTrustPolicy | None,
) -> FetchResult:
    base = f"/v1/access/warrants/{warrant_id.hex()}"
    answer = api.call(AgencyWarrant, "GET", base)
    signed = SignedWarrant.from_obj(answer.signed_warrant)
    if not hmac.compare_digest(signed.warrant_id, warrant_id):
        raise VerificationError("the server sent another warrant", code="wrong_warrant")
    entry = parse_access_entry(b64decode(answer.agency_key.entry, max_bytes=64 * 1024))
    if not isinstance(entry, AgencyKeyEntry):
        raise VerificationError("the server sent no agency key", code="agency_key_unregistered")
    agency_key = entry.signed.key
    if agency_key.public_key != key.private_key.public_key():
        raise AuthorizationError(
            "this warrant is delivered to another agency key", code="agency_key_mismatch"
        )
    device_keys = logged_device_keys(api, signed.warrant.target_identifier, log_policy)
    opener = RecordOpener(signed.warrant, agency_key, key.private_key, device_keys=device_keys)
    result = FetchResult(warrant=signed.warrant)
    after = 0
    while True:
        page = api.call(
            RecordPage, "GET", base + "/records", params={"after": after, "limit": FETCH_PAGE}
        )
        for stored in page.records:
            after = stored.id
            try:
                record = SealedRecord.from_bytes(canonical_json(stored.record))
            except InvalidInput as exc:
                result.problems.append(f"stored record {stored.id}: {exc.diagnostics()}")
                continue
            where = f"record {record.seq} of device {record.device_id}"
            try:
                result.records.append(opener.open(record))
            except DecryptionError:
                result.problems.append(
                    f"{where}: decryption_failed: altered, relabelled or sealed to another key"
                )
            except (ProtocolError, InvalidInput) as exc:
                result.problems.append(f"{where}: {exc.diagnostics()}")
        if not page.more or not page.records:
            break
    result.gaps = opener.gaps
    if with_metadata:
        after = 0
        while True:
            meta = api.call(MetadataPage, "GET", base + "/metadata", params={"after": after})
            result.metadata += meta.items
            if not meta.more or not meta.items:
                break
            after = meta.items[-1].id
    return result


def record_json(record: OpenedRecord) -> dict[str, Any]:
    """One opened record as `accord agency fetch --json` prints it."""
    meta = record.metadata or {}
    return {
        "seq": record.seq,
        "direction": record.direction.value,
        "from": meta.get("sender"),
        "to": meta.get("recipients"),
        "text": None
        if record.plaintext is None
        else record.plaintext.decode("utf-8", errors="replace"),
        "sent_at": format_time(record.occurred_at),
        "attachments": None
        if record.attachments is None
        else [{"key": b64encode(a.key), "digest": b64encode(a.digest)} for a in record.attachments],
    }
