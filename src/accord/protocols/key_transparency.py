"""Key transparency with complete account histories: the map, its rules, and its proofs.

Steps K5-K9 of docs/protocol/transparency.md §8 (K1-K4, the prefix tree, are in
`accord.protocols.translog.prefix_tree`):

K5  The log holds every device change (registration, revocation) and, as the last leaf of
    every checkpoint it signs, a map head: the root of the prefix tree over every account's
    state after all entries before it. A client takes the map root only from that leaf, proven
    included at a checkpoint it accepted, so witnesses that cosign the log cosign the map.
K6  An account's search key is SHA-256("accord-kt-search-key-v1\\n" || name); its value is the
    SHA-256 commitment of its state: version (number of changes), the log index of its genesis,
    the head of its history chain and its complete current device set.
K7  History chain: h_0 = 32 zero bytes, h_v = SHA-256("accord-kt-history-v1\\n" || h_{v-1} ||
    uint64(index_v) || leaf_hash(entry_v)); a state's history names every change, in log order.
K8  Rules, applied to each device change in log order (`apply_change`): exactly one genesis per
    account (a registration with no approver, version 1); every later registration is approved
    by a device of the previous version; a revocation is signed by a device of the previous
    version and never removes the last device. A change that breaks a rule leaves the map
    unchanged (the server never logs one; an auditor flags it).
K9  A client verifies an account (`verify_account`) by checking the map head and search proof at
    an accepted checkpoint, then replaying the account's history from the version it pinned
    (or from genesis) through K8, with each change proven included, and comparing the replayed
    state's commitment with the map's. The device set it then uses is complete and current.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import b64decode, b64encode, canonical_json
from accord.primitives.signing import verify_ed25519
from accord.protocols.messaging import approval_payload, verify_device_keys
from accord.protocols.translog import merkle
from accord.protocols.translog.entries import (
    DeviceRegistration,
    DeviceRevocation,
    MapHead,
    parse_entry,
)
from accord.protocols.translog.prefix_tree import (
    HASH_BYTES,
    PrefixTree,
    SearchProof,
    verify_search,
)

SEARCH_KEY_DOMAIN = b"accord-kt-search-key-v1\n"
HISTORY_DOMAIN = b"accord-kt-history-v1\n"
STATE_TYPE = "accord.kt.account_state.v1"
MAX_DEVICES_PER_ACCOUNT = 64
"""A registration that would give an account more devices is refused (K8)."""

DeviceChange = DeviceRegistration | DeviceRevocation


def search_key(account: str) -> bytes:
    """K6."""
    return hashlib.sha256(SEARCH_KEY_DOMAIN + account.encode("utf-8")).digest()


def revocation_payload(account: str, device_id: str, revoker_device_id: str, at: int) -> bytes:
    """The bytes a device signs to remove a device (itself or another) from its account."""
    return canonical_json(
        {
            "purpose": "accord-device-revocation-v1",
            "account": account,
            "device_id": device_id,
            "revoker_device_id": revoker_device_id,
            "revoked_at": at,
        }
    )


@dataclass(frozen=True, slots=True)
class LoggedDevice:
    """A device of an account's current set, and where its registration sits in the log."""

    device_id: str
    ed25519: str
    curve25519: str
    signature: str  # the device's self-signature over its keys (step 1)
    index: int

    def fields(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "ed25519": self.ed25519,
            "curve25519": self.curve25519,
            "signature": self.signature,
            "index": self.index,
        }


@dataclass(frozen=True, slots=True)
class AccountState:
    """K6: one version of an account as the map commits to it."""

    account: str
    version: int
    genesis: int
    history: bytes
    devices: tuple[LoggedDevice, ...]  # sorted by device id

    def to_bytes(self) -> bytes:
        return canonical_json(
            {
                "type": STATE_TYPE,
                "account": self.account,
                "version": self.version,
                "genesis": self.genesis,
                "history": b64encode(self.history),
                "devices": [d.fields() for d in self.devices],
            }
        )

    def commitment(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    def device(self, device_id: str) -> LoggedDevice | None:
        for d in self.devices:
            if d.device_id == device_id:
                return d
        return None

    def device_ids(self) -> frozenset[str]:
        return frozenset(d.device_id for d in self.devices)


def parse_account_state(data: bytes) -> AccountState:
    """An account state from its canonical bytes (as stored or sent); `InvalidInput` if
    malformed or not canonical."""
    if len(data) > 64 * 1024:
        raise InvalidInput("account state too large")
    try:
        obj = json.loads(data)
        if not isinstance(obj, dict) or obj.get("type") != STATE_TYPE:
            raise ValueError
        devices = tuple(
            LoggedDevice(
                device_id=str(d["device_id"]),
                ed25519=str(d["ed25519"]),
                curve25519=str(d["curve25519"]),
                signature=str(d["signature"]),
                index=int(d["index"]),
            )
            for d in obj["devices"]
        )
        state = AccountState(
            account=str(obj["account"]),
            version=int(obj["version"]),
            genesis=int(obj["genesis"]),
            history=b64decode(obj["history"], max_bytes=HASH_BYTES, what="history"),
            devices=devices,
        )
    except (ValueError, KeyError, TypeError, RecursionError):
        raise InvalidInput("malformed account state") from None
    if state.to_bytes() != data or len(state.history) != HASH_BYTES:
        raise InvalidInput("account state is not in canonical form")
    return state


def next_history(history: bytes, index: int, entry: bytes) -> bytes:
    """K7."""
    return hashlib.sha256(
        HISTORY_DOMAIN + history + index.to_bytes(8, "big") + merkle.leaf_hash(entry)
    ).digest()


def _rule(message: str, code: str) -> VerificationError:
    return VerificationError(message, code=code)


def apply_change(
    state: AccountState | None,
    change: DeviceChange,
    index: int,
    entry: bytes,
    *,
    check_signatures: bool = True,
) -> AccountState:
    """K8: the account's state after `change` (logged at `index` as the bytes `entry`).

    Raises `VerificationError` with a stable code if the change breaks a rule. Every replay
    (clients, auditors) checks signatures; the server's own integrator may skip them for
    changes its request handlers verified already (`check_signatures=False`).
    """
    account = change.account
    if state is not None and state.account != account:
        raise _rule("a change applied to another account", "kt_wrong_account")
    history = next_history(state.history if state else bytes(HASH_BYTES), index, entry)
    if isinstance(change, DeviceRegistration):
        try:
            if check_signatures:
                verify_device_keys(change)
        except (VerificationError, InvalidInput):
            raise _rule("a device's self-signature does not verify", "kt_bad_signature") from None
        device = LoggedDevice(
            change.device_id, change.ed25519, change.curve25519, change.signature, index
        )
        if state is None:
            if change.approver_device_id is not None:
                raise _rule("the first device of an account has an approver", "kt_no_genesis")
            return AccountState(account, 1, index, history, (device,))
        if change.approver_device_id is None or change.approval_signature is None:
            raise _rule(f"a second genesis for {account}", "kt_second_genesis")
        approver = state.device(change.approver_device_id)
        if approver is None:
            raise _rule("approved by a device not in the account", "kt_unapproved_device")
        try:
            if check_signatures:
                verify_ed25519(
                    approver.ed25519,
                    approval_payload(change.approver_device_id, change),
                    change.approval_signature,
                )
        except (VerificationError, InvalidInput):
            raise _rule("the approval signature does not verify", "kt_unapproved_device") from None
        if state.device(change.device_id) is not None:
            raise _rule("the device is already in the account", "kt_duplicate_device")
        if len(state.devices) >= MAX_DEVICES_PER_ACCOUNT:
            raise _rule("the account has too many devices", "kt_too_many_devices")
        devices = tuple(sorted((*state.devices, device), key=lambda d: d.device_id))
        return AccountState(account, state.version + 1, state.genesis, history, devices)
    if state is None or state.device(change.device_id) is None:
        raise _rule("revokes a device that is not in the account", "kt_unknown_device")
    revoker = state.device(change.revoker_device_id)
    if revoker is None:
        raise _rule("revoked by a device not in the account", "kt_unapproved_revocation")
    try:
        if check_signatures:
            verify_ed25519(
                revoker.ed25519,
                revocation_payload(
                    account, change.device_id, change.revoker_device_id, change.revoked_at
                ),
                change.signature,
            )
    except (VerificationError, InvalidInput):
        raise _rule("a bad revocation signature", "kt_unapproved_revocation") from None
    if len(state.devices) == 1:
        raise _rule("an account keeps at least one device", "kt_last_device")
    devices = tuple(d for d in state.devices if d.device_id != change.device_id)
    return AccountState(account, state.version + 1, state.genesis, history, devices)


def device_change(entry: bytes) -> DeviceChange | None:
    """The device change an entry encodes, or None for any other entry (malformed ones too:
    they cannot change the map)."""
    try:
        parsed = parse_entry(entry)
    except InvalidInput:
        return None
    return parsed if isinstance(parsed, DeviceRegistration | DeviceRevocation) else None


def map_head_entry(tree: PrefixTree, timestamp_ms: int) -> bytes:
    """K5: the entry that ends a checkpoint."""
    return MapHead(b64encode(tree.root_value), tree.size, timestamp_ms).to_bytes()


def parse_map_head(entry: bytes) -> MapHead:
    """The map head an entry encodes (`VerificationError` `missing_map_head` otherwise)."""
    try:
        parsed = parse_entry(entry)
    except InvalidInput:
        parsed = None
    if not isinstance(parsed, MapHead):
        raise VerificationError(
            "the checkpoint does not end with a map head", code="missing_map_head"
        )
    return parsed


def map_root(head: MapHead) -> bytes:
    return b64decode(head.map_root, max_bytes=HASH_BYTES, what="map root")


# --- the server's directory (and an auditor's replay) ---------------------------------------


@dataclass(frozen=True, slots=True)
class AppliedChange:
    """One accepted device change: the account's new state and the version it made."""

    state: AccountState
    index: int


class KeyDirectory:
    """The map as the log's entries make it: states of the accounts touched so far, and the
    prefix tree over all of them. The server keeps one (loaded states only for the accounts a
    batch touches); an auditor replays the whole log through one."""

    def __init__(self, tree: PrefixTree | None = None) -> None:
        self.tree = tree if tree is not None else PrefixTree()

    def plan(
        self,
        states: dict[str, AccountState],
        requests: Sequence[Sequence[bytes]],
        first_index: int,
        *,
        check_signatures: bool = True,
    ) -> tuple[list[int], list[AppliedChange], dict[int, VerificationError]]:
        """K8 for a batch of append requests (each a list of entries), in order.

        `states` holds the current state of every account the batch touches (missing: new).
        Returns the indexes of the accepted requests, the changes they make (in log order),
        and the error of each refused request; `states` is updated in place. A request is
        accepted or refused whole.
        """
        accepted: list[int] = []
        applied: list[AppliedChange] = []
        refused: dict[int, VerificationError] = {}
        index = first_index
        for number, entries in enumerate(requests):
            tentative: dict[str, AccountState] = {}
            changes: list[AppliedChange] = []
            try:
                for offset, entry in enumerate(entries):
                    change = device_change(entry)
                    if change is None:
                        continue
                    current = tentative.get(change.account, states.get(change.account))
                    new = apply_change(
                        current, change, index + offset, entry, check_signatures=check_signatures
                    )
                    tentative[change.account] = new
                    changes.append(AppliedChange(new, index + offset))
            except VerificationError as exc:
                refused[number] = exc
                continue
            states.update(tentative)
            applied.extend(changes)
            accepted.append(number)
            index += len(entries)
        return accepted, applied, refused

    def updated(self, changes: Iterable[AppliedChange]) -> PrefixTree:
        """The tree after `changes` (this directory's tree is unchanged until `commit`)."""
        latest: dict[bytes, bytes] = {}
        for change in changes:
            latest[search_key(change.state.account)] = change.state.commitment()
        return self.tree.with_updates(latest.items())

    def commit(self, tree: PrefixTree) -> None:
        self.tree = tree


# --- what a client verifies (K9) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvenChange:
    """One change of an account's history as the server sends it, not yet verified."""

    version: int
    index: int
    entry: bytes
    proof: tuple[bytes, ...]


def replay_history(
    account: str,
    pinned: AccountState | None,
    changes: Sequence[ProvenChange],
    *,
    verify_included: Callable[[bytes, int, Sequence[bytes]], None],
) -> AccountState | None:
    """K9: the state reached by applying `changes` (versions after `pinned`'s, in order) to
    `pinned`. `verify_included(entry, index, proof)` checks each change is in the log."""
    state = pinned
    expected_version = (pinned.version if pinned else 0) + 1
    for change in changes:
        if change.version != expected_version:
            raise VerificationError(
                "the account's history has a gap or is out of order", code="history_incomplete"
            )
        parsed = device_change(change.entry)
        if parsed is None or parsed.account != account:
            raise VerificationError(
                "a history entry is not a change of this account", code="history_incomplete"
            )
        verify_included(change.entry, change.index, change.proof)
        state = apply_change(state, parsed, change.index, change.entry)
        expected_version += 1
    return state


def verify_account(
    account: str,
    root: bytes,
    proof: SearchProof,
    pinned: AccountState | None,
    changes: Sequence[ProvenChange],
    *,
    verify_included: Callable[[bytes, int, Sequence[bytes]], None],
) -> AccountState | None:
    """K9: the account's complete, current state at the map whose root is `root` (None: the
    map proves the account does not exist). `pinned` is the state this device accepted before
    (its history must extend it)."""
    state = replay_history(account, pinned, changes, verify_included=verify_included)
    if state is None:
        verify_search(search_key(account), proof, root, None)
        return None
    try:
        verify_search(search_key(account), proof, root, state.commitment())
    except VerificationError:
        if pinned is not None and not changes:
            raise VerificationError(
                "the map no longer holds the history this device saw for the account",
                code="history_rewritten",
            ) from None
        raise VerificationError(
            "the device list does not match the account's logged history",
            code="incomplete_device_list",
        ) from None
    return state


# --- safety codes ----------------------------------------------------------------------------

SAFETY_CODE_DOMAIN = b"accord-safety-code-v1\n"
SAFETY_CODE_GROUPS = 6


def safety_code(a: AccountState, b: AccountState) -> str:
    """The code two people compare in person (`accord contact verify`): the same on both
    sides, it changes whenever either account's device set changes. Six groups of five
    digits (about 100 bits)."""
    first, second = sorted((a, b), key=lambda s: s.account)
    digest = hashlib.sha256(
        SAFETY_CODE_DOMAIN
        + canonical_json(
            [
                {
                    "account": s.account,
                    "devices": [[d.device_id, d.ed25519, d.curve25519] for d in s.devices],
                }
                for s in (first, second)
            ]
        )
    ).digest()
    groups = [
        int.from_bytes(digest[5 * i : 5 * i + 5], "big") % 100_000
        for i in range(SAFETY_CODE_GROUPS)
    ]
    return " ".join(f"{g:05d}" for g in groups)


# --- auditing the whole log (K12) ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KtFinding:
    """One thing the audit found wrong, at a log index."""

    index: int
    code: str
    detail: str

    def line(self) -> str:
        return f"entry {self.index}: {self.code}: {self.detail}"


@dataclass
class KtAudit:
    """K12: replay every device change through the rules (K8) and check every map head
    against the map the replay builds; the log must end with a map head (K5)."""

    findings: list[KtFinding]
    accounts: int = 0
    changes: int = 0
    map_heads: int = 0


def audit_key_transparency(entries: Iterable[tuple[int, bytes]], size: int) -> KtAudit:
    """K12 over the log's entries (index, bytes), in order, up to `size`."""
    directory = KeyDirectory()
    states: dict[str, AccountState] = {}
    pending: list[AppliedChange] = []
    report = KtAudit(findings=[])
    last_was_head = False
    for index, entry in entries:
        last_was_head = False
        change = device_change(entry)
        if change is not None:
            try:
                state = apply_change(states.get(change.account), change, index, entry)
            except VerificationError as exc:
                report.findings.append(
                    KtFinding(index, exc.code, f"{change.account}: {exc.message}")
                )
                continue
            states[change.account] = state
            pending.append(AppliedChange(state, index))
            report.changes += 1
            continue
        try:
            head = parse_map_head(entry)
        except VerificationError:
            continue
        report.map_heads += 1
        last_was_head = True
        directory.commit(directory.updated(pending))
        pending = []
        try:
            logged = map_root(head)
        except InvalidInput:
            logged = b""
        if logged != directory.tree.root_value or head.accounts != directory.tree.size:
            report.findings.append(
                KtFinding(
                    index,
                    "map_head_mismatch",
                    "the logged map root is not the map the log's changes make",
                )
            )
    if size > 0 and not last_was_head:
        report.findings.append(
            KtFinding(size - 1, "missing_map_head", "the checkpoint does not end with a map head")
        )
    report.accounts = len(states)
    return report
