"""The client's local state: one SQLite file under the home directory.

Private keys and session pickles are encrypted by vodozemac under a key derived from the user's
passphrase (Argon2id); other secret records (tokens, messages) are sealed with AES-256-GCM under
a sibling key. The trust anchors (the pinned deployment manifest, the last accepted log
checkpoint, each pinned device) are not secret but must not change behind the user's back: each
carries an HMAC-SHA256 tag under a third sibling key, and a record whose tag does not match
stops the command (`anchors_tampered`; docs/protocol/transparency.md, "Deployment manifest").
A process holds an exclusive lock on the home directory while it runs, because two processes
advancing the same ratchets would corrupt them.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from accord.errors import (
    ConfigurationError,
    DecryptionError,
    InvalidInput,
    NotFound,
    VerificationError,
)
from accord.primitives.encoding import b64decode, b64encode, canonical_json
from accord.primitives.storage_crypto import (
    DEFAULT_KDF_COST,
    KdfCost,
    KdfParams,
    LocalVault,
    StoreKey,
    derive_store_key,
)
from accord.protocols.manifest import Manifest, verify_manifest
from accord.protocols.translog.note import Checkpoint

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, sealed BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS olm_sessions (
    session_id TEXT PRIMARY KEY, peer_curve25519 TEXT NOT NULL, pickle TEXT NOT NULL,
    last_used INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ix_olm_peer ON olm_sessions (peer_curve25519, last_used);
CREATE TABLE IF NOT EXISTS devices (
    account TEXT NOT NULL, device_id TEXT NOT NULL, ed25519 TEXT NOT NULL,
    curve25519 TEXT NOT NULL, active INTEGER NOT NULL, first_seen INTEGER NOT NULL,
    PRIMARY KEY (account, device_id));
CREATE TABLE IF NOT EXISTS outbound_groups (
    grp TEXT PRIMARY KEY, pickle TEXT NOT NULL, shared_with TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inbound_groups (
    session_id TEXT PRIMARY KEY, grp TEXT NOT NULL, sender_account TEXT NOT NULL,
    sender_device TEXT NOT NULL, pickle TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS megolm_seen (
    session_id TEXT NOT NULL, message_index INTEGER NOT NULL,
    PRIMARY KEY (session_id, message_index));
CREATE TABLE IF NOT EXISTS group_states (grp TEXT PRIMARY KEY, version INTEGER NOT NULL,
    state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL, message_id TEXT NOT NULL,
    sealed BLOB NOT NULL, shown INTEGER NOT NULL DEFAULT 0, UNIQUE (sender, message_id));
CREATE TABLE IF NOT EXISTS processed (envelope_id INTEGER PRIMARY KEY);
"""

# Names of sealed records (not secrets themselves).
_OLM_ACCOUNT = "olm_account"
_AUTH_TOKEN = "token"  # noqa: S105
_MATCHING_SECRET = "matching_secret"  # noqa: S105
_ACCESS_STATE = "access_state"


DeviceKey = tuple[str, str]  # (account, device_id)


@dataclass(frozen=True, slots=True)
class PinnedDevice:
    account: str
    device_id: str
    ed25519: str
    curve25519: str


@dataclass(frozen=True, slots=True)
class HomeDevice:
    """Which server, account and device a home directory belongs to."""

    server: str
    account: str
    device_id: str


class DeviceStatus(StrEnum):
    CREATING = "creating"  # the account was asked for; the server's answer is not in yet
    REGISTERED = "registered"  # the server made the account; keys are not published yet
    LINKING = "linking"  # waiting for another device of the account to approve this one
    ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class LogAnchors:
    """The transparency log as this device pinned it: from the deployment manifest (`manifest`,
    its signed note in `manifest_note`), or in insecure development mode the origin and key the
    server named, with no witnesses (quorum 0)."""

    origin: str
    vkey: str
    witnesses: tuple[str, ...] = ()
    quorum: int = 0
    manifest: Manifest | None = None
    manifest_note: str | None = None

    @classmethod
    def from_manifest(cls, note: str) -> LogAnchors:
        """The anchors a manifest names (M1: it must carry a quorum of its signers)."""
        return cls.of_manifest(verify_manifest(note), note)

    @classmethod
    def of_manifest(cls, manifest: Manifest, note: str) -> LogAnchors:
        """The anchors of `manifest`, verified from its signed `note`."""
        return cls(
            origin=manifest.log_origin,
            vkey=manifest.log_vkey,
            witnesses=manifest.witnesses,
            quorum=manifest.witness_quorum,
            manifest=manifest,
            manifest_note=note,
        )

    def record(self) -> str:
        """The stored form: the manifest's note, or the insecure-mode origin and key."""
        if self.manifest_note is not None:
            return json.dumps({"manifest": self.manifest_note})
        return json.dumps({"insecure_dev": {"origin": self.origin, "vkey": self.vkey}})

    @classmethod
    def from_record(cls, raw: str) -> LogAnchors:
        obj = json.loads(raw)
        if "manifest" in obj:
            return cls.from_manifest(str(obj["manifest"]))
        dev = obj["insecure_dev"]
        return cls(origin=str(dev["origin"]), vkey=str(dev["vkey"]))


_ANCHORS = "trust_anchors"
_CHECKPOINT = "log_checkpoint"
_DEVICE_TAG = "pinned_device"


def anchors_tampered(what: str) -> VerificationError:
    return VerificationError(
        f"{what} stored in this home was changed outside accord; nothing it protects can be "
        "trusted (restore the home from a backup or create it again)",
        code="anchors_tampered",
    )


@dataclass(frozen=True, slots=True)
class AuthToken:
    token: str
    expires_at_ms: int


def encode_checkpoint(checkpoint: Checkpoint) -> str:
    """The one stored form of an accepted checkpoint: its size and base64 root hash (the origin
    is the pinned log's)."""
    return f"{checkpoint.size} {b64encode(checkpoint.root_hash)}"


def decode_checkpoint(text: str, origin: str) -> Checkpoint:
    size_text, _, root_text = text.partition(" ")
    if not size_text.isdigit():
        raise InvalidInput("malformed stored checkpoint")
    return Checkpoint(origin, int(size_text), b64decode(root_text, max_bytes=32))


class HomeLock:
    """An exclusive advisory lock on a home directory for the life of the process."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._fd = os.open(home / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise ConfigurationError(f"{home} is in use by another accord process") from None

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


class LocalStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self._lock = HomeLock(home)
        self._conn = sqlite3.connect(
            home / "accord.db", isolation_level=None, timeout=30, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._add_shown_column()
        self._add_device_tag_column()
        self.vault: LocalVault | None = None
        self.store_key: StoreKey | None = None
        """The key the store was unlocked with (kept for the store-key agent)."""
        self._anchors_parsed: tuple[str, LogAnchors] | None = None  # the record, once verified

    def _add_shown_column(self) -> None:
        """Stores made before messages had a `shown` flag printed every message they hold."""
        columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(messages)")}
        if "shown" not in columns:
            self._conn.execute("ALTER TABLE messages ADD COLUMN shown INTEGER NOT NULL DEFAULT 1")

    def _add_device_tag_column(self) -> None:
        """Stores made before pinned devices were tagged: their rows have no tag, and are
        refused as tampered when read (the account must be set up again)."""
        columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(devices)")}
        if "tag" not in columns:
            self._conn.execute("ALTER TABLE devices ADD COLUMN tag BLOB")

    def close(self) -> None:
        self._conn.close()
        self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing: ratchet state, received messages and 'processed' marks move together."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- meta and unlocking -----------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row["value"])

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def initialised(self) -> bool:
        return self.get_meta("kdf") is not None

    def initialise(self, passphrase: str, cost: KdfCost = DEFAULT_KDF_COST) -> None:
        """Create fresh key-derivation parameters and unlock with them."""
        if self.initialised():
            raise ConfigurationError(f"{self.home} already holds an account")
        params = KdfParams.fresh(cost)
        key = derive_store_key(passphrase, params)
        vault = LocalVault(key.value)
        self.set_meta(
            "kdf",
            json.dumps(
                {
                    "alg": "argon2id",
                    "salt": b64encode(params.salt),
                    "t": params.time_cost,
                    "m": params.memory_kib,
                    "p": params.parallelism,
                    "check": b64encode(vault.check_value),
                }
            ),
        )
        self.vault, self.store_key = vault, key

    def unlock(self, secret: str | StoreKey) -> None:
        """Unlock with the passphrase (Argon2id at the cost the store was made with) or with
        the store key it derives (from the store-key agent); `wrong_passphrase` if neither
        matches the store's check value."""
        raw = self.get_meta("kdf")
        if raw is None:
            raise NotFound(f"no account in {self.home}: run 'accord account create' first")
        meta = json.loads(raw)
        if isinstance(secret, StoreKey):
            key = secret
        else:
            params = KdfParams(
                salt=b64decode(meta["salt"], max_bytes=64),
                time_cost=int(meta["t"]),
                memory_kib=int(meta["m"]),
                parallelism=int(meta["p"]),
            )
            key = derive_store_key(secret, params)
        vault = LocalVault(key.value)
        if not hmac.compare_digest(vault.check_value, b64decode(meta["check"], max_bytes=64)):
            raise InvalidInput("wrong passphrase", code="wrong_passphrase")
        self.vault, self.store_key = vault, key

    def _vault(self) -> LocalVault:
        if self.vault is None:
            raise ConfigurationError("local store is locked")
        return self.vault

    @property
    def pickle_key(self) -> bytes:
        return self._vault().pickle_key

    # --- this home's device -----------------------------------------------------------------

    def home_device(self) -> HomeDevice | None:
        server, account, device_id = (self.get_meta(k) for k in ("server", "account", "device_id"))
        if server is None or account is None or device_id is None:
            return None
        return HomeDevice(server, account, device_id)

    def set_home_device(self, device: HomeDevice) -> None:
        self.set_meta("server", device.server)
        self.set_meta("account", device.account)
        self.set_meta("device_id", device.device_id)

    def device_status(self) -> DeviceStatus | None:
        value = self.get_meta("status")
        return None if value is None else DeviceStatus(value)

    def set_device_status(self, status: DeviceStatus) -> None:
        self.set_meta("status", status.value)

    def olm_account_pickle(self) -> str | None:
        raw = self.get_secret(_OLM_ACCOUNT)
        return None if raw is None else raw.decode()

    def set_olm_account_pickle(self, pickle: str) -> None:
        self.put_secret(_OLM_ACCOUNT, pickle.encode())

    def auth_token(self) -> AuthToken | None:
        raw = self.get_secret(_AUTH_TOKEN)
        if raw is None:
            return None
        token, _, expires = raw.decode().partition(" ")
        return AuthToken(token, int(expires)) if expires.isdigit() else None

    def set_auth_token(self, token: AuthToken) -> None:
        self.put_secret(_AUTH_TOKEN, f"{token.token} {token.expires_at_ms}".encode())

    # --- trust anchors (each tagged under the store key) -------------------------------------

    def _set_tagged(self, key: str, value: str) -> None:
        self.set_meta(key, value)
        self.set_meta(f"{key}_tag", b64encode(self._vault().tag(key, value.encode("utf-8"))))

    def _tagged(self, key: str) -> str | None:
        """The meta value `key`, if its tag matches; None if neither is stored."""
        value, tag = self.get_meta(key), self.get_meta(f"{key}_tag")
        if value is None and tag is None:
            return None
        try:
            matches = (
                value is not None
                and tag is not None
                and self._vault().tag_matches(
                    key, value.encode("utf-8"), b64decode(tag, max_bytes=64)
                )
            )
        except InvalidInput:
            matches = False
        if not matches:
            raise anchors_tampered(key.replace("_", " "))
        return value

    def log_anchors(self) -> LogAnchors | None:
        """The pinned trust anchors (None before they are pinned)."""
        raw = self._tagged(_ANCHORS)
        if raw is None:
            if self.get_meta("log_vkey") is not None:  # a home from before manifests
                raise InvalidInput(
                    f"{self.home} pinned its log before deployment manifests: create the "
                    "account on it again with a manifest",
                    code="manifest_required",
                )
            return None
        if self._anchors_parsed is not None and self._anchors_parsed[0] == raw:
            return self._anchors_parsed[1]  # the tag matched this very record just now
        try:
            anchors = LogAnchors.from_record(raw)
        except (InvalidInput, VerificationError, ValueError, KeyError, TypeError):
            raise anchors_tampered("trust anchors") from None
        self._anchors_parsed = (raw, anchors)
        return anchors

    def set_log_anchors(self, anchors: LogAnchors) -> None:
        self._set_tagged(_ANCHORS, anchors.record())

    def log_checkpoint(self) -> Checkpoint | None:
        """The last log checkpoint this device accepted (None before the first)."""
        raw = self._tagged(_CHECKPOINT)
        if raw is None:
            return None
        anchors = self.log_anchors()
        return decode_checkpoint(raw, anchors.origin if anchors is not None else "")

    def set_log_checkpoint(self, checkpoint: Checkpoint) -> None:
        self._set_tagged(_CHECKPOINT, encode_checkpoint(checkpoint))

    def verify_anchors(self) -> None:
        """Check the tag of every trust anchor this home keeps (the pinned manifest, the last
        checkpoint, every pinned device row), so that a change made on disk stops a command
        before it starts rather than where a caller would take it for a bad server answer."""
        self.log_anchors()
        self.log_checkpoint()
        for row in self._conn.execute("SELECT * FROM devices").fetchall():
            self._checked(row)

    def forget_log_checkpoint(self) -> None:
        """Drop the last accepted checkpoint (the pinned log was replaced by another one)."""
        self._conn.execute(
            "DELETE FROM meta WHERE key IN (?, ?)", (_CHECKPOINT, f"{_CHECKPOINT}_tag")
        )

    def known_devices(self) -> frozenset[str]:
        """This account's device ids that this device added or has told its user about."""
        raw = self.get_meta("known_devices")
        return frozenset(json.loads(raw)) if raw else frozenset()

    def add_known_devices(self, device_ids: Iterable[str]) -> None:
        known = self.known_devices() | set(device_ids)
        self.set_meta("known_devices", json.dumps(sorted(known)))

    # --- counters ---------------------------------------------------------------------------

    def notices_seen(self) -> int:
        """The id of the last trust-and-safety notice shown to the user."""
        return int(self.get_meta("notices_seen") or 0)

    def set_notices_seen(self, notice_id: int) -> None:
        self.set_meta("notices_seen", str(notice_id))

    def matching_images(self) -> int:
        """How many images this device has made safety vouchers for."""
        return int(self.get_meta("matching_images") or 0)

    def set_matching_images(self, count: int) -> None:
        self.set_meta("matching_images", str(count))

    def matching_secret(self) -> bytes | None:
        return self.get_secret(_MATCHING_SECRET)

    def matching_floors_fields(self) -> dict[str, int] | None:
        """Matching floors this device's user set in place of the defaults (JSON object)."""
        raw = self.get_meta("matching_floors")
        return None if raw is None else dict(json.loads(raw))

    def set_matching_floors_fields(self, fields: dict[str, int]) -> None:
        self.set_meta("matching_floors", json.dumps(fields, sort_keys=True))

    def set_matching_secret(self, secret: bytes) -> None:
        self.put_secret(_MATCHING_SECRET, secret)

    def access_state(self) -> bytes | None:
        """The lawful-access state record (client/access.py), sealed."""
        return self.get_secret(_ACCESS_STATE)

    def set_access_state(self, record: bytes) -> None:
        self.put_secret(_ACCESS_STATE, record)

    # --- sealed secrets ---------------------------------------------------------------------

    def put_secret(self, name: str, value: bytes) -> None:
        self._conn.execute(
            "INSERT INTO secrets (name, sealed) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed",
            (name, self._vault().seal(f"secret:{name}", value)),
        )

    def get_secret(self, name: str) -> bytes | None:
        row = self._conn.execute("SELECT sealed FROM secrets WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        return self._vault().open(f"secret:{name}", bytes(row["sealed"]))

    # --- devices ----------------------------------------------------------------------------

    def _checked(self, row: sqlite3.Row) -> PinnedDevice:
        """A pinned device row, if its tag matches (see `_device_tagged`)."""
        dev = _pinned(row)
        tag = row["tag"]
        tagged = _device_tagged(dev, bool(row["active"]), int(row["first_seen"]))
        if tag is None or not self._vault().tag_matches(_DEVICE_TAG, tagged, bytes(tag)):
            raise anchors_tampered(f"the pinned keys of {dev.account}'s devices")
        return dev

    def pinned_devices(self, account: str) -> list[PinnedDevice]:
        rows = self._conn.execute(
            "SELECT * FROM devices WHERE account = ? ORDER BY first_seen, device_id", (account,)
        ).fetchall()
        checked = [self._checked(r) for r in rows]  # every row: a flag flipped on disk too
        return [dev for dev, row in zip(checked, rows, strict=True) if row["active"]]

    def pinned_device(self, account: str, device_id: str) -> PinnedDevice | None:
        row = self._conn.execute(
            "SELECT * FROM devices WHERE account = ? AND device_id = ?", (account, device_id)
        ).fetchone()
        return None if row is None else self._checked(row)

    def replace_devices(self, account: str, devices: list[PinnedDevice], now: int) -> None:
        """Pin a verified device list. A device id whose keys changed is refused outright."""
        rows = self._conn.execute("SELECT * FROM devices WHERE account = ?", (account,)).fetchall()
        pinned = {r["device_id"]: (self._checked(r), int(r["first_seen"])) for r in rows}
        for dev in devices:
            old = pinned.get(dev.device_id)
            if old is not None and (old[0].ed25519, old[0].curve25519) != (
                dev.ed25519,
                dev.curve25519,
            ):
                raise VerificationError(
                    f"the keys of device {dev.device_id} of {account} changed", code="key_changed"
                )
        listed = {dev.device_id for dev in devices}
        rewritten = [
            (old, first_seen, old.device_id in listed) for old, first_seen in pinned.values()
        ]
        rewritten += [(dev, now, True) for dev in devices if dev.device_id not in pinned]
        for dev, first_seen, active in rewritten:
            self._conn.execute(
                "INSERT INTO devices "
                "(account, device_id, ed25519, curve25519, active, first_seen, tag) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (account, device_id) DO UPDATE SET active = excluded.active, "
                "tag = excluded.tag",
                (
                    account,
                    dev.device_id,
                    dev.ed25519,
                    dev.curve25519,
                    int(active),
                    first_seen,
                    self._vault().tag(_DEVICE_TAG, _device_tagged(dev, active, first_seen)),
                ),
            )

    # --- Olm sessions -----------------------------------------------------------------------

    def olm_sessions(self, peer_curve25519: str) -> list[tuple[str, str]]:
        """(session_id, pickle) newest first."""
        rows = self._conn.execute(
            "SELECT session_id, pickle FROM olm_sessions WHERE peer_curve25519 = ? "
            "ORDER BY last_used DESC",
            (peer_curve25519,),
        ).fetchall()
        return [(r["session_id"], r["pickle"]) for r in rows]

    def save_olm_session(self, session_id: str, peer: str, pickle: str, now: int) -> None:
        self._conn.execute(
            "INSERT INTO olm_sessions (session_id, peer_curve25519, pickle, last_used) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE SET pickle = excluded.pickle, "
            "last_used = excluded.last_used",
            (session_id, peer, pickle, now),
        )

    # --- Megolm sessions --------------------------------------------------------------------

    def outbound_group(self, group: str) -> tuple[str, set[DeviceKey]] | None:
        row = self._conn.execute(
            "SELECT pickle, shared_with FROM outbound_groups WHERE grp = ?", (group,)
        ).fetchone()
        if row is None:
            return None
        shared = {(a, d) for a, d in json.loads(row["shared_with"])}
        return row["pickle"], shared

    def save_outbound_group(self, group: str, pickle: str, shared: set[DeviceKey]) -> None:
        self._conn.execute(
            "INSERT INTO outbound_groups (grp, pickle, shared_with) VALUES (?, ?, ?) "
            "ON CONFLICT (grp) DO UPDATE SET pickle = excluded.pickle, "
            "shared_with = excluded.shared_with",
            (group, pickle, json.dumps(sorted(shared))),
        )

    def inbound_group(self, session_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(
            "SELECT * FROM inbound_groups WHERE session_id = ?", (session_id,)
        ).fetchone()
        return row

    def save_inbound_group(
        self, session_id: str, group: str, sender: DeviceKey, pickle: str
    ) -> None:
        self._conn.execute(
            "INSERT INTO inbound_groups (session_id, grp, sender_account, sender_device, pickle) "
            "VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET pickle = excluded.pickle",
            (session_id, group, sender[0], sender[1], pickle),
        )

    def mark_megolm_index(self, session_id: str, index: int) -> bool:
        """Record a (session, index) pair; False if it was seen before (a replay)."""
        cur = self._conn.execute(
            "INSERT OR IGNORE INTO megolm_seen (session_id, message_index) VALUES (?, ?)",
            (session_id, index),
        )
        return cur.rowcount == 1

    # --- group states -----------------------------------------------------------------------

    def group_state(self, group: str) -> str | None:
        row = self._conn.execute(
            "SELECT state FROM group_states WHERE grp = ?", (group,)
        ).fetchone()
        return None if row is None else str(row["state"])

    def save_group_state(self, group: str, version: int, state_json: str) -> None:
        self._conn.execute(
            "INSERT INTO group_states (grp, version, state) VALUES (?, ?, ?) "
            "ON CONFLICT (grp) DO UPDATE SET version = excluded.version, state = excluded.state",
            (group, version, state_json),
        )

    # --- messages ---------------------------------------------------------------------------

    def has_message(self, sender: str, message_id: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM messages WHERE sender = ? AND message_id = ?", (sender, message_id)
        ).fetchone()
        return row is not None

    def save_message(
        self, sender: str, message_id: str, record: dict[str, Any], *, shown: bool
    ) -> None:
        sealed = self._vault().seal(
            f"message:{sender}:{message_id}", json.dumps(record).encode("utf-8")
        )
        self._conn.execute(
            "INSERT INTO messages (sender, message_id, sealed, shown) VALUES (?, ?, ?, ?)",
            (sender, message_id, sealed, int(shown)),
        )

    def messages(self) -> list[dict[str, Any]]:
        return [record for _seq, record in self.stored_messages()]

    def stored_messages(self, *, unshown_only: bool = False) -> list[tuple[int, dict[str, Any]]]:
        """(seq, record) in the order they were stored; with `unshown_only`, those not yet
        shown to the user."""
        where = " WHERE shown = 0" if unshown_only else ""
        rows = self._conn.execute(f"SELECT * FROM messages{where} ORDER BY seq").fetchall()  # noqa: S608
        out = []
        for r in rows:
            try:
                raw = self._vault().open(f"message:{r['sender']}:{r['message_id']}", r["sealed"])
            except DecryptionError:
                continue
            out.append((int(r["seq"]), json.loads(raw)))
        return out

    def mark_shown(self, seq: int) -> None:
        self._conn.execute("UPDATE messages SET shown = 1 WHERE seq = ?", (seq,))

    def is_processed(self, envelope_id: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM processed WHERE envelope_id = ?", (envelope_id,)
        ).fetchone()
        return row is not None

    def mark_processed(self, envelope_id: int) -> None:
        self._conn.execute(
            "INSERT OR IGNORE INTO processed (envelope_id) VALUES (?)", (envelope_id,)
        )


def _device_tagged(dev: PinnedDevice, active: bool, first_seen: int) -> bytes:
    """What a pinned device row's tag covers: every column of the row."""
    return canonical_json(
        [dev.account, dev.device_id, dev.ed25519, dev.curve25519, int(active), first_seen]
    )


def _pinned(row: sqlite3.Row) -> PinnedDevice:
    return PinnedDevice(
        account=row["account"],
        device_id=row["device_id"],
        ed25519=row["ed25519"],
        curve25519=row["curve25519"],
    )
