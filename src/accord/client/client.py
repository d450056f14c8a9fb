"""The Accord client library: accounts, devices, sessions, sending and receiving.

Everything the CLI does goes through `AccordClient`. The server is not trusted with content or
with honesty about keys: every device list, one-time key, group state and message is verified
here before it is used. Step numbers refer to docs/protocol/messaging.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx

from accord.client.access import AccessClient
from accord.client.api import ServerApi, StaleDevicesResponse
from accord.client.log_trust import LogTrust, ProofEncoding, decode_proof
from accord.client.store import AuthToken, DeviceStatus, HomeDevice, LocalStore, PinnedDevice
from accord.client.vouchers import SafetyVouchers
from accord.errors import (
    AccordError,
    ConfigurationError,
    DecryptionError,
    InvalidInput,
    NotFound,
    ProtocolError,
    ServiceError,
    VerificationError,
)
from accord.primitives.attachment import AttachmentSecrets, decrypt_file, encrypt_file
from accord.primitives.encoding import b64decode, b64encode, b64url
from accord.primitives.olm import (
    DeviceAccount,
    MegolmInbound,
    MegolmOutbound,
    OlmCiphertext,
    OlmSession,
)
from accord.protocols.franking import (
    FrankingKey,
    commit_message,
    new_franking_key,
    verify_commitment,
)
from accord.protocols.messaging import (
    approval_payload,
    auth_payload,
    decode_payload,
    device_keys_payload,
    encode_payload,
    group_state_payload,
    one_time_key_payload,
    registration_entry,
    verify_device_keys,
    verify_device_list,
    verify_group_state,
    verify_one_time_key,
)
from accord.wire.common import MAX_OLM_BODY_BYTES
from accord.wire.messaging import (
    AccountCreated,
    AckResult,
    ApproveLinkRequest,
    AttachmentRef,
    Challenge,
    ClaimedKeys,
    Content,
    Conversation,
    DeviceApproval,
    DeviceCopy,
    DeviceKeys,
    DeviceList,
    DeviceRecord,
    DeviceRef,
    Envelope,
    EnvelopeBatch,
    GroupKeyShare,
    GroupState,
    KeyCount,
    LinkCreated,
    OlmBody,
    OneTimeKey,
    PendingLink,
    SendAccepted,
    SendRequest,
    SignedGroupState,
    Token,
)
from accord.wire.reports import (
    FRANKING_EXTENSION,
    FRANKING_KEY_EXTENSION,
    MAX_REPORT_CONTEXT,
    FrankingCommitment,
    NoticeList,
    ReportedMessage,
    ReportFiled,
    ReportRequest,
    commitment_bytes,
    franked_message,
    franking_key_of,
    stamp_of,
)

ONE_TIME_KEY_TARGET = 50
ONE_TIME_KEY_LOW_WATER = 25
MEGOLM_ROTATE_AFTER_MESSAGES = 1000
SEND_ATTEMPTS = 4
DEFAULT_MAX_ATTACHMENT_BYTES = 100 * 1000 * 1000
ACCOUNT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
LINK_CODE_RE = re.compile(r"^([A-Z2-7]{16})-([A-Z2-7]{16})$")

DeviceKey = tuple[str, str]  # (account, device_id)


def now_ms() -> int:
    return int(time.time() * 1000)


def new_message_id() -> str:
    """128 random bits, base64url, never starting with "-": the id is typed as a command argument
    (`accord report ID`), where a leading dash would read as an option."""
    while True:
        message_id = b64url(secrets.token_bytes(16))
        if not message_id.startswith("-"):
            return message_id


def new_device_id() -> str:
    return b64url(secrets.token_bytes(9)).upper().replace("-", "A").replace("_", "B")


def link_fingerprint(device: DeviceKeys) -> str:
    """The part of a link code that binds it to the new device's keys (step 2)."""
    payload = device_keys_payload(
        device.account, device.device_id, device.ed25519, device.curve25519
    )
    return base64.b32encode(hashlib.sha256(payload).digest()[:10]).decode("ascii")


@dataclass(frozen=True)
class ReceivedAttachment:
    name: str
    size: int
    sha256: str
    path: str


@dataclass(frozen=True)
class ReceivedMessage:
    id: str
    sender: str
    sender_device: str
    group: str | None
    to: str | None
    text: str
    sent_at: int
    attachments: tuple[ReceivedAttachment, ...] = ()
    # The message as it can be reported: content with its franking key, and the server's tag.
    evidence: ReportedMessage | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "group": self.group,
            "text": self.text,
            "sent_at": datetime.fromtimestamp(self.sent_at / 1000, UTC).isoformat(
                timespec="milliseconds"
            ),
            "attachments": [
                {"name": a.name, "size": a.size, "sha256": a.sha256, "path": a.path}
                for a in self.attachments
            ],
        }


@dataclass
class ReceiveResult:
    messages: list[ReceivedMessage] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one line each, no content
    notices: list[str] = field(default_factory=list)  # e.g. a device this one did not add


class _Rejected(Exception):
    """Internal: this envelope is dropped (and acknowledged) for the reason given."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base).strip(" .")[:120]
    return base or "attachment"


class AccordClient:
    """A device: its keys and sessions under `home`, talking to one server."""

    def __init__(
        self,
        home: Path,
        passphrase: str,
        *,
        transport: httpx.BaseTransport | None = None,
        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
        _new: bool = False,
    ) -> None:
        self.home = Path(home)
        self.store = LocalStore(self.home)
        self.max_attachment_bytes = max_attachment_bytes
        self._transport = transport
        try:
            if _new:
                self.store.initialise(passphrase)
            else:
                self.store.unlock(passphrase)
        except BaseException:
            self.store.close()
            raise
        self._account: DeviceAccount | None = None
        device = self.store.home_device()
        server = device.server if device is not None else "http://invalid"
        self.api = ServerApi(server, token=self._token, transport=transport)
        self.log_trust = LogTrust(self.store, self.api)

    # --- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self.api.close()
        self.store.close()

    def __enter__(self) -> AccordClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def account_name(self) -> str:
        return self._home_device().account

    @property
    def device_id(self) -> str:
        return self._home_device().device_id

    def _home_device(self) -> HomeDevice:
        device = self.store.home_device()
        if device is None:
            raise ConfigurationError(f"no account configured in {self.home}")
        return device

    @property
    def olm(self) -> DeviceAccount:
        if self._account is None:
            pickle = self.store.olm_account_pickle()
            if pickle is None:
                raise ConfigurationError("no device keys in this home")
            self._account = DeviceAccount.from_pickle(pickle, self.store.pickle_key)
        return self._account

    def _save_olm(self) -> None:
        self.store.set_olm_account_pickle(self.olm.pickle(self.store.pickle_key))

    def _device_keys(self) -> DeviceKeys:
        account, device_id = self.account_name, self.device_id
        return _self_signed_keys(self.olm, account, device_id)

    @cached_property
    def access(self) -> AccessClient:
        """Lawful access on this device (docs/lawful-access.md)."""
        return AccessClient(self)

    # --- account creation and device linking (steps 1-2) ------------------------------------

    @classmethod
    def create_account(
        cls,
        home: Path,
        server: str,
        name: str,
        passphrase: str,
        *,
        transport: httpx.BaseTransport | None = None,
        witnesses: Sequence[str] = (),
        witness_quorum: int | None = None,
        approver_set: str | None = None,
    ) -> AccordClient:
        """Step 1: make device keys, register the account, publish one-time keys.

        `witnesses` (cosignature vkeys) and `witness_quorum` (default: all of them) say whose
        cosignatures a log checkpoint needs before this device trusts it; `approver_set` (a
        hash, hex) which lawful-access approver set it trusts (default: the one shown now).
        """
        client = cls._fresh(
            home, server, name, passphrase, transport, witnesses, witness_quorum, approver_set
        )
        try:
            client.api.call(
                AccountCreated,
                "POST",
                "/v1/accounts",
                json={"v": 1, "device": client._device_keys().model_dump()},
                auth=False,
            )
            client.store.set_device_status(DeviceStatus.REGISTERED)
            client._require_active()
        except BaseException:
            client._abandon()
            raise
        return client

    @classmethod
    def _fresh(
        cls,
        home: Path,
        server: str,
        name: str,
        passphrase: str,
        transport: httpx.BaseTransport | None,
        witnesses: Sequence[str] = (),
        witness_quorum: int | None = None,
        approver_set: str | None = None,
    ) -> AccordClient:
        if not ACCOUNT_NAME_RE.match(name):
            raise InvalidInput(
                "account names are 1-64 characters: lower-case letters, digits, '.', '_' or '-'"
            )
        client = cls(home, passphrase, transport=transport, _new=True)
        try:
            client.store.set_home_device(HomeDevice(server.rstrip("/"), name, new_device_id()))
            client.api = ServerApi(server, token=client._token, transport=transport)
            client.log_trust = LogTrust(client.store, client.api)
            client.log_trust.pin(witnesses=witnesses, quorum=witness_quorum)
            client.access.pin_approver_set(approver_set)
            client.store.add_known_devices([client.device_id])
            client._account = DeviceAccount()
            client._save_olm()
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def start_link(
        cls,
        home: Path,
        server: str,
        name: str,
        passphrase: str,
        *,
        transport: httpx.BaseTransport | None = None,
        witnesses: Sequence[str] = (),
        witness_quorum: int | None = None,
        approver_set: str | None = None,
    ) -> tuple[AccordClient, str]:
        """Step 2, new device: ask to join `name`; returns the one-time code to approve."""
        client = cls._fresh(
            home, server, name, passphrase, transport, witnesses, witness_quorum, approver_set
        )
        try:
            keys = client._device_keys()
            created = client.api.call(
                LinkCreated,
                "POST",
                "/v1/link-requests",
                json={"v": 1, "device": keys.model_dump()},
                auth=False,
            )
            code = f"{created.request_id}-{link_fingerprint(keys)}"
            client.store.set_device_status(DeviceStatus.LINKING)
        except BaseException:
            client._abandon()
            raise
        return client, code

    def approve_device(self, code: str) -> DeviceKeys:
        """Step 2, existing device: check the code's fingerprint, then sign the approval."""
        match = LINK_CODE_RE.match(code.strip().upper())
        if match is None:
            raise InvalidInput("not a device link code")
        request_id, fingerprint = match.groups()
        self._require_active()
        pending = self.api.call(PendingLink, "GET", f"/v1/link-requests/{request_id}")
        device = pending.device
        if device.account != self.account_name or not secrets.compare_digest(
            link_fingerprint(device), fingerprint
        ):
            raise VerificationError("the device behind this code is not the one that made it")
        verify_device_keys(device)
        signature = self.olm.sign(approval_payload(self.device_id, device))
        self.api.call(
            DeviceRecord,
            "POST",
            f"/v1/link-requests/{request_id}/approve",
            json=ApproveLinkRequest(
                approval=DeviceApproval(approver_device_id=self.device_id, signature=signature)
            ).model_dump(),
        )
        self.store.add_known_devices([device.device_id])
        with self.store.transaction():
            self._refresh_devices([self.account_name])
        return device

    def _abandon(self) -> None:
        """Close; and if the server never accepted this device, forget it so a retry works."""
        registered = self.store.device_status() is not None
        self.close()
        if not registered:
            for suffix in ("", "-wal", "-shm"):
                (self.home / f"accord.db{suffix}").unlink(missing_ok=True)

    def _require_active(self) -> None:
        """A linking device becomes active once its approval lets it log in."""
        status = self.store.device_status()
        if status is DeviceStatus.ACTIVE:
            return
        if status is DeviceStatus.REGISTERED:
            self._publish_keys(initial=True)
            self.store.set_device_status(DeviceStatus.ACTIVE)
            return
        if status is not DeviceStatus.LINKING:
            raise ConfigurationError(f"no account in {self.home}")
        try:
            self._token(True)
        except AccordError as exc:
            raise ConfigurationError(
                "this device is waiting for approval: run 'accord device approve CODE' on "
                "another device of the account"
            ) from exc
        self._publish_keys(initial=True)
        self.store.set_device_status(DeviceStatus.ACTIVE)
        # The devices the account had when this one joined were added by its user.
        with self.store.transaction():
            self._refresh_devices([self.account_name])
            self.store.add_known_devices(
                d.device_id for d in self.store.pinned_devices(self.account_name)
            )

    # --- authentication (step 4) ------------------------------------------------------------

    def _token(self, refresh: bool) -> str:
        if not refresh:
            cached = self.store.auth_token()
            if cached is not None and cached.expires_at_ms > now_ms() + 60_000:
                return cached.token
        account, device_id = self.account_name, self.device_id
        challenge = self.api.call(
            Challenge,
            "POST",
            "/v1/auth/challenge",
            json={"account": account, "device_id": device_id},
            auth=False,
        )
        signature = self.olm.sign(auth_payload(account, device_id, challenge.challenge))
        issued = self.api.call(
            Token,
            "POST",
            "/v1/auth/token",
            json={
                "account": account,
                "device_id": device_id,
                "challenge": challenge.challenge,
                "signature": signature,
            },
            auth=False,
        )
        self.store.set_auth_token(AuthToken(issued.token, issued.expires_at))
        return issued.token

    # --- one-time keys (step 3) -------------------------------------------------------------

    def _signed_key(self, key_id: str, key: str, fallback: bool) -> OneTimeKey:
        unsigned = OneTimeKey(key_id=key_id, key=key, signature="-")
        sig = self.olm.sign(
            one_time_key_payload(self.account_name, self.device_id, unsigned, fallback)
        )
        return OneTimeKey(key_id=key_id, key=key, signature=sig)

    def _publish_keys(self, *, initial: bool = False) -> KeyCount:
        count = (
            KeyCount(one_time_keys=0, fallback_key=False)
            if initial
            else self.api.call(KeyCount, "GET", "/v1/keys/count")
        )
        want = ONE_TIME_KEY_TARGET - count.one_time_keys
        if count.one_time_keys >= ONE_TIME_KEY_LOW_WATER and count.fallback_key:
            return count
        olm = self.olm
        otks = olm.unpublished_one_time_keys()
        if want > len(otks):
            otks = olm.generate_one_time_keys(want - len(otks))
        fallback = olm.unpublished_fallback_key()
        if not count.fallback_key and not fallback:
            fallback = olm.generate_fallback_key()
        self._save_olm()
        body = {
            "v": 1,
            "one_time_keys": [
                self._signed_key(kid, key, False).model_dump() for kid, key in otks.items()
            ],
            "fallback_key": (
                self._signed_key(*next(iter(fallback.items())), True).model_dump()
                if fallback
                else None
            ),
        }
        result = self.api.call(KeyCount, "POST", "/v1/keys", json=body)
        olm.mark_keys_as_published()
        self._save_olm()
        return result

    # --- device lists (step 6) --------------------------------------------------------------

    def _refresh_devices(self, accounts: Iterable[str]) -> None:
        for account in sorted(set(accounts)):
            listing = self.api.call(DeviceList, "GET", f"/v1/accounts/{account}/devices")
            if listing.account != account:
                raise ProtocolError("server answered for another account")
            verified = verify_device_list(account, listing.devices)
            self._verify_logged(listing)
            if account == self.account_name and not any(
                d.device_id == self.device_id for d in verified
            ):
                raise VerificationError("this device is missing from its own account's list")
            self.store.replace_devices(
                account,
                [PinnedDevice(account, d.device_id, d.ed25519, d.curve25519) for d in verified],
                now_ms(),
            )

    def _verify_logged(self, listing: DeviceList) -> None:
        """Key transparency step V4: every device is in the log, as the server lists it."""
        checkpoint = self.log_trust.accept_checkpoint(listing.checkpoint)
        for record in listing.devices:
            keys = record.keys
            entry = registration_entry(keys, record.approval, record.created_at)
            if record.log_index is None:
                raise VerificationError(f"device {keys.device_id} of {keys.account} is not logged")
            proof = decode_proof(record.inclusion_proof, ProofEncoding.BASE64)
            try:
                self.log_trust.verify_inclusion(
                    entry.to_bytes(), record.log_index, checkpoint, proof
                )
            except VerificationError:
                raise VerificationError(
                    f"device {keys.device_id} of {keys.account} is not in the transparency log",
                    code="unlogged_device",
                ) from None

    def _devices_of(self, accounts: Iterable[str], *, refresh: bool = False) -> list[PinnedDevice]:
        names = sorted(set(accounts))
        stale = [a for a in names if refresh or not self.store.pinned_devices(a)]
        if stale:
            self._refresh_devices(stale)
        me = (self.account_name, self.device_id)
        return [
            d for a in names for d in self.store.pinned_devices(a) if (d.account, d.device_id) != me
        ]

    def devices(self) -> tuple[list[PinnedDevice], list[str]]:
        """This account's devices as the server lists them (verified), and notices about any
        this device has not seen added."""
        self._require_active()
        notices = self._check_own_devices()
        return self.store.pinned_devices(self.account_name), notices

    def _check_own_devices(self) -> list[str]:
        """Monitor this account: every device in its (logged, verified) list that this device
        did not add or see before is reported once to the user."""
        with self.store.transaction():
            self._refresh_devices([self.account_name])
            current = self.store.pinned_devices(self.account_name)
            known = self.store.known_devices()
            notices = [
                f"a new device {d.device_id} was added to your account {self.account_name}; "
                "if you did not add it, someone else may be reading your messages"
                for d in current
                if d.device_id not in known
            ]
            self.store.add_known_devices(d.device_id for d in current)
        return notices

    # --- Olm (steps 5 and 7) ----------------------------------------------------------------

    def _olm_session(self, device: PinnedDevice) -> OlmSession | None:
        sessions = self.store.olm_sessions(device.curve25519)
        if not sessions:
            return None
        return OlmSession.from_pickle(sessions[0][1], self.store.pickle_key)

    def _ensure_sessions(self, targets: Sequence[PinnedDevice]) -> dict[DeviceKey, OlmSession]:
        """Open Olm sessions to every target, claiming one-time keys for those without one."""
        out: dict[DeviceKey, OlmSession] = {}
        missing: list[PinnedDevice] = []
        for dev in targets:
            session = self._olm_session(dev)
            if session is None:
                missing.append(dev)
            else:
                out[(dev.account, dev.device_id)] = session
        if missing:
            claimed = self.api.call(
                ClaimedKeys,
                "POST",
                "/v1/keys/claim",
                json={
                    "devices": [{"account": d.account, "device_id": d.device_id} for d in missing]
                },
            )
            by_ref = {(c.device.keys.account, c.device.keys.device_id): c for c in claimed.keys}
            for dev in missing:
                item = by_ref.get((dev.account, dev.device_id))
                if item is None or item.one_time_key is None:
                    raise ServiceError(f"no one-time key available for a device of {dev.account}")
                keys = item.device.keys
                if (keys.ed25519, keys.curve25519) != (dev.ed25519, dev.curve25519):
                    raise VerificationError("server returned keys that differ from the pinned ones")
                verify_one_time_key(keys, item.one_time_key, item.fallback)
                session = self.olm.create_outbound_session(dev.curve25519, item.one_time_key.key)
                out[(dev.account, dev.device_id)] = session
        return out

    def _save_sessions(
        self, sessions: dict[DeviceKey, OlmSession], devices: Sequence[PinnedDevice]
    ) -> None:
        curve = {(d.account, d.device_id): d.curve25519 for d in devices}
        t = now_ms()
        for key, session in sessions.items():
            self.store.save_olm_session(
                session.session_id, curve[key], session.pickle(self.store.pickle_key), t
            )

    # --- attachments ------------------------------------------------------------------------

    @cached_property
    def vouchers(self) -> SafetyVouchers:
        """Safety vouchers for image attachments (docs/protocol/private-matching.md)."""
        return SafetyVouchers(self)

    def _upload_attachments(self, paths: Sequence[Path]) -> list[AttachmentRef]:
        refs = []
        for path in paths:
            path = Path(path)
            if not path.is_file():
                raise InvalidInput(f"no such file: {path.name}")
            if path.stat().st_size > self.max_attachment_bytes:
                raise InvalidInput(f"{path.name} is larger than {self.max_attachment_bytes} bytes")
            voucher = self.vouchers.prepare(path)  # from the plaintext, before encryption
            with tempfile.TemporaryDirectory(dir=self.home) as tmp:
                blob = Path(tmp) / "blob"
                secrets_ = encrypt_file(path, blob, max_plaintext_bytes=self.max_attachment_bytes)
                created = self.api.upload_blob(blob, secrets_.sha256)
            self.vouchers.hold(str(created["blob_id"]), voucher)
            media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            refs.append(
                AttachmentRef(
                    blob_id=str(created["blob_id"]),
                    name=_safe_name(path.name),
                    media_type=media_type,
                    size=secrets_.size,
                    sha256=b64encode(secrets_.sha256),
                    key=b64encode(secrets_.key),
                )
            )
        return refs

    def _fetch_attachment(self, message_id: str, ref: AttachmentRef) -> ReceivedAttachment:
        try:
            att = AttachmentSecrets(
                key=b64decode(ref.key, max_bytes=32),
                sha256=b64decode(ref.sha256, max_bytes=32),
                size=ref.size,
            )
        except InvalidInput:
            raise _Rejected("malformed attachment reference") from None
        if ref.size > self.max_attachment_bytes:
            raise _Rejected("attachment larger than this device accepts")
        folder = self.home / "attachments" / _safe_name(message_id)
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / _safe_name(ref.name)
        with tempfile.TemporaryDirectory(dir=self.home) as tmp:
            blob = Path(tmp) / "blob"
            try:
                self.api.download_blob(ref.blob_id, blob, ref.size + 64)
            except NotFound:
                raise _Rejected("attachment is missing on the server") from None
            except ProtocolError:
                raise _Rejected("attachment failed verification") from None
            try:
                decrypt_file(blob, dest, att)
            except DecryptionError:
                raise _Rejected("attachment failed verification") from None
        digest = hashlib.sha256()
        with dest.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return ReceivedAttachment(
            name=ref.name, size=ref.size, sha256=digest.hexdigest(), path=str(dest)
        )

    # --- sending (steps 7-8) ----------------------------------------------------------------

    def _compose(
        self, conversation: Conversation, text: str, attachments: Sequence[Path]
    ) -> Content:
        """Step 7: upload the encrypted attachments and write the message as it will be read."""
        self._require_active()
        refs = self._upload_attachments(attachments)
        return Content(
            message_id=new_message_id(),
            sender=DeviceRef(account=self.account_name, device_id=self.device_id),
            to=conversation,
            sent_at=now_ms(),
            text=text,
            attachments=refs,
            extensions={FRANKING_KEY_EXTENSION: b64encode(new_franking_key())},
        )

    def _deliver(self, content: Content, encrypt: Callable[[bytes, int], SendRequest]) -> str:
        """Step 8: encrypt for the devices as this device knows them, send, and on a 409
        refresh the device lists and encrypt again (fresh ratchet steps each time)."""
        payload = encode_payload(content)
        commitment = commit_message(FrankingKey(franking_key_of(content)), franked_message(content))
        extensions = {
            FRANKING_EXTENSION: FrankingCommitment(commitment=b64encode(commitment)).model_dump(),
            **self.vouchers.extension(content),
        }
        for attempt in range(SEND_ATTEMPTS):
            request = encrypt(payload, attempt).model_copy(update={"extensions": extensions})
            try:
                self.api.call(SendAccepted, "POST", "/v1/messages", json=request.model_dump())
            except StaleDevicesResponse:
                continue
            self._remember_sent(content)
            return content.message_id
        raise ServiceError("the conversation's devices kept changing; try again")

    def _olm_copies(self, targets: Sequence[PinnedDevice], payload: bytes) -> list[DeviceCopy]:
        """Olm-encrypt `payload` for each target. Ratchet state is committed (by the caller's
        transaction) before the send leaves, so a message key is never used twice even if the
        request is retried or the process dies."""
        sessions = self._ensure_sessions(targets)
        copies = [
            DeviceCopy(
                account=d.account,
                device_id=d.device_id,
                olm=_olm_body(sessions[(d.account, d.device_id)].encrypt(payload)),
            )
            for d in targets
        ]
        self._save_sessions(sessions, targets)
        return copies

    def send(self, to: str, text: str, attachments: Sequence[Path] = ()) -> str:
        """Send a direct message to every device of `to` and to this account's other devices."""
        conversation = Conversation(account=to)
        content = self._compose(conversation, text, attachments)

        def encrypt(payload: bytes, attempt: int) -> SendRequest:
            with self.store.transaction():
                targets = self._devices_of({to, self.account_name}, refresh=attempt > 0)
                copies = self._olm_copies(targets, payload)
            return SendRequest(
                message_id=content.message_id,
                to=conversation,
                recipients=[DeviceRef(account=d.account, device_id=d.device_id) for d in targets],
                copies=copies,
                extensions={},
            )

        return self._deliver(content, encrypt)

    # --- reports (docs/protocol/franking.md, step 6) -----------------------------------------

    def report(self, message_id: str, *, reason: str = "", context: int = 0) -> str:
        """Reveal a received message, and up to `context` earlier received messages of the same
        conversation, with their franking openings; returns the report id."""
        if not 0 <= context <= MAX_REPORT_CONTEXT:
            raise InvalidInput(f"--context is between 0 and {MAX_REPORT_CONTEXT}")
        if len(reason) > 2000:
            raise InvalidInput("a reason has at most 2000 characters")
        received = [
            ReportedMessage.model_validate(r["evidence"])
            for r in self.store.messages()
            if r.get("direction") == "in" and r.get("evidence")
        ]
        found = [i for i, m in enumerate(received) if m.content.message_id == message_id]
        if not found:
            raise InvalidInput(f"no received message {message_id} on this device")
        reported = received[found[-1]]

        def same_conversation(m: ReportedMessage) -> bool:
            if m.to != reported.to:
                return False
            return reported.to.group is not None or m.sender.account == reported.sender.account

        earlier = [m for m in received[: found[-1]] if same_conversation(m)]
        request = ReportRequest(
            reason=reason,
            message=reported,
            context=earlier[len(earlier) - context :] if context else [],
        )
        filed = self.api.call(ReportFiled, "POST", "/v1/reports", json=request.model_dump())
        return filed.report_id

    def _notices(self) -> list[str]:
        """Notices from the provider's trust and safety (a warning), each shown once."""
        seen = self.store.notices_seen()
        listing = self.api.call(NoticeList, "GET", "/v1/notices", params={"after": seen})
        if listing.notices:
            with self.store.transaction():
                self.store.set_notices_seen(listing.notices[-1].id)
        return [f"notice from trust and safety: {n.text}" for n in listing.notices]

    def _remember_sent(self, content: Content) -> None:
        with self.store.transaction():
            self.store.save_message(
                self.account_name,
                content.message_id,
                {
                    "direction": "out",
                    "content": content.model_dump(mode="json"),
                },
            )
            self.access.on_sent(content)  # in the same transaction
        self.access.flush()

    # --- groups (step 9) --------------------------------------------------------------------

    def create_group(self, group: str, members: Sequence[str]) -> GroupState:
        self._require_active()
        names = [self.account_name] + [m for m in dict.fromkeys(members) if m != self.account_name]
        state = GroupState(group=group, version=1, admins=[self.account_name], members=names)
        return self._publish_group_state(state)

    def change_members(
        self, group: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> GroupState:
        self._require_active()
        current = self._group_state(group, refresh=True)
        members = [m for m in current.members if m not in set(remove)]
        members += [m for m in add if m not in members]
        admins = [a for a in current.admins if a in members] or [self.account_name]
        state = GroupState(group=group, version=current.version + 1, admins=admins, members=members)
        return self._publish_group_state(state)

    def _publish_group_state(self, state: GroupState) -> GroupState:
        signature = self.olm.sign(group_state_payload(state))
        signed = SignedGroupState(
            state=state,
            signer=DeviceRef(account=self.account_name, device_id=self.device_id),
            signature=signature,
        )
        self.api.call(
            SignedGroupState, "PUT", f"/v1/groups/{state.group}", json=signed.model_dump()
        )
        with self.store.transaction():
            self.store.save_group_state(state.group, state.version, state.model_dump_json())
        return state

    def _group_state(self, group: str, *, refresh: bool = False) -> GroupState:
        """The group's membership, verified against the state this device already holds."""
        known_json = self.store.group_state(group)
        known = GroupState.model_validate_json(known_json) if known_json else None
        if known is not None and not refresh:
            return known
        signed = self.api.call(SignedGroupState, "GET", f"/v1/groups/{group}")
        state = signed.state
        if state.group != group:
            raise ProtocolError("server answered for another group")
        if known is not None and state.version == known.version:
            if state != known:
                raise VerificationError("two different group states with one version")
            return known
        if known is not None and state.version < known.version:
            raise VerificationError("the server rolled back the group state")
        signer = self.store.pinned_device(signed.signer.account, signed.signer.device_id)
        if signer is None:
            self._refresh_devices([signed.signer.account])
            signer = self.store.pinned_device(signed.signer.account, signed.signer.device_id)
        if signer is None:
            raise VerificationError("group state signed by an unknown device")
        verify_group_state(
            state,
            signed.signer.account,
            DeviceKeys(
                account=signer.account,
                device_id=signer.device_id,
                ed25519=signer.ed25519,
                curve25519=signer.curve25519,
                signature="-",
            ),
            signed.signature,
            known,
        )
        self.store.save_group_state(group, state.version, state.model_dump_json())
        return state

    def send_group(self, group: str, text: str, attachments: Sequence[Path] = ()) -> str:
        """Encrypt once with this device's Megolm session; share its key over Olm as needed."""
        conversation = Conversation(group=group)
        content = self._compose(conversation, text, attachments)

        def encrypt(payload: bytes, attempt: int) -> SendRequest:
            with self.store.transaction():
                state = self._group_state(group, refresh=attempt > 0)
                targets = self._devices_of(state.members, refresh=attempt > 0)
                current = {(d.account, d.device_id) for d in targets}
                outbound, shared = self._outbound_group(group, current)
                share = GroupKeyShare(
                    group=group,
                    sender=content.sender,
                    session_id=outbound.session_id,
                    session_key=outbound.session_key(),
                )
                need_key = [d for d in targets if (d.account, d.device_id) not in shared]
                copies = self._olm_copies(need_key, encode_payload(share))
                ciphertext = outbound.encrypt(payload)
                self.store.save_outbound_group(
                    group, outbound.pickle(self.store.pickle_key), shared | current
                )
            return SendRequest(
                message_id=content.message_id,
                to=conversation,
                recipients=[DeviceRef(account=a, device_id=d) for a, d in sorted(current)],
                copies=copies,
                megolm=b64encode(ciphertext),
                megolm_session_id=outbound.session_id,
                extensions={},
            )

        return self._deliver(content, encrypt)

    def _outbound_group(
        self, group: str, current: set[DeviceKey]
    ) -> tuple[MegolmOutbound, set[DeviceKey]]:
        """This device's session for the group; a fresh one if any device left (step 9)."""
        saved = self.store.outbound_group(group)
        if saved is not None:
            pickle, shared = saved
            outbound = MegolmOutbound.from_pickle(pickle, self.store.pickle_key)
            if shared <= current and outbound.message_index < MEGOLM_ROTATE_AFTER_MESSAGES:
                return outbound, shared
        return MegolmOutbound(), set()

    # --- receiving (steps 10-12) ------------------------------------------------------------

    def receive(self, *, limit: int = 100) -> ReceiveResult:
        """Fetch, verify, decrypt and store every queued envelope; acknowledge each one."""
        self._require_active()
        try:
            notices = self._check_own_devices()
        except VerificationError as exc:  # tell the user; keep receiving
            notices = [f"this account's device list did not verify: {exc.message}"]
        notices += self._notices()
        notices += self.access.sync_notices()  # lawful access: warrants, disclosures
        result = ReceiveResult(notices=notices)
        after = 0
        while True:
            batch = self.api.call(
                EnvelopeBatch, "GET", "/v1/messages", params={"after": after, "limit": limit}
            )
            done = self.process_envelopes(batch.envelopes, result)
            if done:
                self.ack(done)
            if not batch.envelopes or not batch.more:
                break
            after = batch.envelopes[-1].id
        self._publish_keys()
        return result

    def receive_pushed(self, *, want: int, timeout_s: float = 30.0) -> ReceiveResult:
        """Hold a WebSocket open until `want` messages arrived (or the timeout passed).

        The server pushes envelopes as they are committed; acknowledgements go back on the same
        socket once each envelope is stored.
        """
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        self._require_active()
        result = ReceiveResult()
        url = self.api.base_url.replace("http", "ws", 1) + "/v1/ws"
        deadline = time.monotonic() + timeout_s
        try:
            with connect(
                url,
                additional_headers={"Authorization": f"Bearer {self._token(False)}"},
                max_size=16 << 20,
                open_timeout=10,
            ) as ws:
                while len(result.messages) < want:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        frame = json.loads(ws.recv(timeout=remaining))
                    except TimeoutError:
                        break
                    batch = [Envelope.model_validate(e) for e in frame.get("envelopes", [])]
                    done = self.process_envelopes(batch, result)
                    if done:
                        ws.send(json.dumps({"type": "ack", "ids": done}))
        except (WebSocketException, OSError, ValueError) as exc:
            raise ServiceError(f"push connection failed: {type(exc).__name__}") from None
        self._publish_keys()
        return result

    def ack(self, ids: Sequence[int]) -> None:
        try:
            self.api.call(AckResult, "POST", "/v1/messages/ack", json={"ids": list(ids)})
        except NotFound:
            pass  # already acknowledged by an earlier run

    def process_envelopes(self, envelopes: Sequence[Envelope], result: ReceiveResult) -> list[int]:
        """Process envelopes in order; returns the ids that may now be acknowledged."""
        done: list[int] = []
        for env in envelopes:
            if self.store.is_processed(env.id):
                done.append(env.id)
                continue
            message: ReceivedMessage | None = None
            try:
                with self.store.transaction():
                    # Ratchet state advanced by a successful decryption is kept even when the
                    # message is then rejected: a message key is used once, whatever follows.
                    try:
                        message = self._open_envelope(env)
                        self.store.save_message(
                            message.sender,
                            message.id,
                            {
                                "direction": "in",
                                "message": message.to_json(),
                                "sender_device": message.sender_device,
                                "evidence": message.evidence.model_dump(mode="json")
                                if message.evidence
                                else None,
                            },
                        )
                        self.access.on_received(message)  # in the same transaction
                    except _Rejected as exc:
                        message = None
                        result.rejected.append(
                            f"message {env.message_id} from {env.sender.account} rejected: "
                            f"{exc.reason}"
                        )
                    self.store.mark_processed(env.id)
            except BaseException:
                self._account = None  # drop in-memory changes that were rolled back
                raise
            if message is not None:
                result.messages.append(message)
            done.append(env.id)
        self.access.flush()
        return done

    def _sender_device(self, ref: DeviceRef) -> PinnedDevice:
        pinned = self.store.pinned_device(ref.account, ref.device_id)
        if pinned is None:
            try:
                self._refresh_devices([ref.account])
            except (VerificationError, NotFound) as exc:
                raise _Rejected(f"sender's device list did not verify ({exc.code})") from None
            pinned = self.store.pinned_device(ref.account, ref.device_id)
        if pinned is None:
            raise _Rejected("unknown sender device")
        return pinned

    def _olm_decrypt(self, sender: PinnedDevice, body: OlmBody) -> bytes:
        try:
            raw = b64decode(body.body, max_bytes=MAX_OLM_BODY_BYTES)
            message = OlmCiphertext(message_type=body.type, body=raw)
        except InvalidInput:
            raise _Rejected("malformed ciphertext") from None
        t = now_ms()
        for session_id, pickle in self.store.olm_sessions(sender.curve25519):
            session = OlmSession.from_pickle(pickle, self.store.pickle_key)
            if message.message_type == 0 and not session.matches(message):
                continue
            try:
                plaintext = session.decrypt(message)
            except DecryptionError:
                if message.message_type == 0:
                    raise _Rejected("decryption failed (replayed or corrupted)") from None
                continue
            self.store.save_olm_session(
                session_id, sender.curve25519, session.pickle(self.store.pickle_key), t
            )
            return plaintext
        if message.message_type != 0:
            raise _Rejected("decryption failed (replayed or corrupted)")
        try:
            session, plaintext = self.olm.create_inbound_session(sender.curve25519, message)
        except DecryptionError:
            raise _Rejected("decryption failed (replayed or corrupted)") from None
        self.store.save_olm_session(
            session.session_id, sender.curve25519, session.pickle(self.store.pickle_key), t
        )
        self._save_olm()
        return plaintext

    def _open_envelope(self, env: Envelope) -> ReceivedMessage:
        """Step 11: decrypt, then check every routing fact the server asserted."""
        sender = self._sender_device(env.sender)
        sender_key = (sender.account, sender.device_id)
        content: Content | None = None
        if env.olm is not None:
            try:
                payload = decode_payload(self._olm_decrypt(sender, env.olm))
            except DecryptionError:
                raise _Rejected("malformed payload") from None
            if isinstance(payload, GroupKeyShare):
                if env.to.group is None or payload.group != env.to.group:
                    raise _Rejected("group key for another conversation")
                if (payload.sender.account, payload.sender.device_id) != sender_key:
                    raise _Rejected("group key names another sender")
                self._store_group_key(payload)
            else:
                content = payload
        if env.megolm is not None:
            if content is not None or env.to.group is None or env.megolm_session_id is None:
                raise _Rejected("malformed group envelope")
            content = self._megolm_decrypt(env, sender_key)
        if content is None:
            raise _Rejected("envelope carries no message")
        if content.message_id != env.message_id or content.to != env.to:
            raise _Rejected("envelope does not match its content")
        if (content.sender.account, content.sender.device_id) != sender_key:
            raise _Rejected("content names another sender")
        if env.to.group is not None:
            self._check_group_member(env.to.group, sender.account)
        if self.store.has_message(sender.account, content.message_id):
            raise _Rejected("replayed message ignored")
        evidence = self._check_franking(env, content)
        try:
            attachments = tuple(
                self._fetch_attachment(content.message_id, ref) for ref in content.attachments
            )
        except _Rejected:
            shutil.rmtree(self.home / "attachments" / _safe_name(content.message_id), True)
            raise
        return ReceivedMessage(
            id=content.message_id,
            sender=sender.account,
            sender_device=sender.device_id,
            group=env.to.group,
            to=env.to.account,
            text=content.text,
            sent_at=content.sent_at,
            attachments=attachments,
            evidence=evidence,
        )

    @staticmethod
    def _check_franking(env: Envelope, content: Content) -> ReportedMessage:
        """Franking step 4: a message whose commitment does not open could not be reported, so
        it is dropped."""
        try:
            stamp = stamp_of(env.extensions)
            key = franking_key_of(content)
            verify_commitment(key, franked_message(content), commitment_bytes(stamp.commitment))
        except InvalidInput as exc:
            raise _Rejected(exc.message) from None
        except VerificationError:
            raise _Rejected("franking commitment does not open") from None
        return ReportedMessage(
            content=content,
            sender=env.sender,
            to=env.to,
            received_at=env.received_at,
            franking=stamp,
        )

    def _store_group_key(self, share: GroupKeyShare) -> None:
        try:
            inbound = MegolmInbound.from_session_key(share.session_key)
        except DecryptionError:
            raise _Rejected("malformed group key") from None
        if inbound.session_id != share.session_id:
            raise _Rejected("group key does not match its id")
        existing = self.store.inbound_group(share.session_id)
        if existing is not None:
            if (existing["sender_account"], existing["sender_device"]) != (
                share.sender.account,
                share.sender.device_id,
            ):
                raise _Rejected("group key id reused by another sender")
            return
        self.store.save_inbound_group(
            share.session_id,
            share.group,
            (share.sender.account, share.sender.device_id),
            inbound.pickle(self.store.pickle_key),
        )

    def _megolm_decrypt(self, env: Envelope, sender_key: DeviceKey) -> Content:
        assert env.megolm is not None and env.megolm_session_id is not None
        row = self.store.inbound_group(env.megolm_session_id)
        if row is None:
            raise _Rejected("no group key for this message")
        if (row["sender_account"], row["sender_device"]) != sender_key or row[
            "grp"
        ] != env.to.group:
            raise _Rejected("group session belongs to another sender or group")
        inbound = MegolmInbound.from_pickle(row["pickle"], self.store.pickle_key)
        try:
            result = inbound.decrypt(b64decode(env.megolm, max_bytes=MAX_OLM_BODY_BYTES))
            payload = decode_payload(result.plaintext)
        except (DecryptionError, InvalidInput):
            raise _Rejected("decryption failed (corrupted)") from None
        if not self.store.mark_megolm_index(env.megolm_session_id, result.message_index):
            raise _Rejected("replayed group message ignored")
        if not isinstance(payload, Content):
            raise _Rejected("malformed group payload")
        return payload

    def _check_group_member(self, group: str, account: str) -> None:
        try:
            state = self._group_state(group)
            if account not in state.members:
                state = self._group_state(group, refresh=True)
        except (VerificationError, NotFound, ProtocolError):
            raise _Rejected("group state did not verify") from None
        if account not in state.members:
            raise _Rejected("sender is not a member of the group")


def _olm_body(ct: OlmCiphertext) -> OlmBody:
    return OlmBody(type=ct.message_type, body=b64encode(ct.body))  # type: ignore[arg-type]


def _self_signed_keys(olm: DeviceAccount, account: str, device_id: str) -> DeviceKeys:
    ed, curve = olm.ed25519, olm.curve25519
    sig = olm.sign(device_keys_payload(account, device_id, ed, curve))
    return DeviceKeys(
        account=account, device_id=device_id, ed25519=ed, curve25519=curve, signature=sig
    )
