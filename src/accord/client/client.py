"""The Accord client library: one device's messaging, as the CLI and any interface see it.

`AccordClient` is the facade: it sets a device up (create an account, link to one), sends and
receives, and files reports, delegating each job to its module (device lists, Olm sessions,
groups, attachments, envelopes, lawful access, safety vouchers). The server is not trusted with
content or with honesty about keys: every device list, one-time key, group state and message is
verified before it is used. Step numbers refer to docs/protocol/messaging.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from accord.client.access_work import has_lawful_access_work
from accord.client.api import ServerApi, StaleDevicesResponse
from accord.client.attachments import DEFAULT_MAX_ATTACHMENT_BYTES, Attachments
from accord.client.auth import DeviceLogin
from accord.client.context import ClientContext
from accord.client.devices import DeviceDirectory
from accord.client.envelopes import EnvelopeOpener
from accord.client.groups import Groups
from accord.client.history import StoredMessage, stored_conversation
from accord.client.identity import DeviceIdentity
from accord.client.log_trust import LogTrust
from accord.client.one_time_keys import publish_one_time_keys
from accord.client.received import EnvelopeRejected, ReceivedMessage, ReceiveResult
from accord.client.sessions import OlmSessions
from accord.client.store import DeviceStatus, HomeDevice, LocalStore, PinnedDevice
from accord.client.user_input import user_input
from accord.client.vouchers import SafetyVouchers
from accord.client.vouchers import matching_floors as vouchers_floors
from accord.clock import Clock, clock_from_env, now_ms
from accord.errors import (
    AccordError,
    ConfigurationError,
    InvalidInput,
    NotFound,
    RateLimited,
    ServiceError,
    VerificationError,
)
from accord.primitives.encoding import b64encode, b64url
from accord.primitives.olm import DeviceAccount
from accord.primitives.storage_crypto import DEFAULT_KDF_COST, KdfCost, StoreKey
from accord.protocols.franking import (
    FrankedMessage,
    FrankingKey,
    commit_message,
    new_franking_key,
)
from accord.protocols.key_transparency import revocation_payload
from accord.protocols.manifest import LawfulAccessBounds, Manifest, MatchingFloors
from accord.protocols.messaging import (
    approval_payload,
    device_keys_payload,
    verify_device_keys,
)
from accord.wire.franking import (
    FRANKING_EXTENSION,
    FRANKING_KEY_EXTENSION,
    FrankingCommitment,
    franked_message,
    franking_key_of,
)
from accord.wire.messaging import (
    MAX_TEXT_CHARS,
    AccountCreated,
    AckResult,
    ApproveLinkRequest,
    Content,
    Conversation,
    CreateAccountRequest,
    DeviceApproval,
    DeviceKeys,
    DeviceRecord,
    DeviceRef,
    Envelope,
    EnvelopeBatch,
    GroupKeyShare,
    GroupState,
    LinkCreated,
    PendingLink,
    RevokeDeviceRequest,
    SendAccepted,
    SendRequest,
    encode_payload,
)

# Lawful access is loaded where it has work (`AccordClient.access`): a send on a device with no
# active warrant and no queued record never needs the warrant and approver modules.
if TYPE_CHECKING:
    from accord.client.access import AccessClient

SEND_ATTEMPTS = 4
PUSH_MAX_FRAME_BYTES = 16 << 20
PUSH_OPEN_TIMEOUT_S = 10
RETRY_BUDGET_S = 10.0
"""How long one request waits in all for a server that answers 429 or 503 with Retry-After."""
FOLLOW_POLL_S = 0.5  # how often a follow loop looks at its stop flag
FOLLOW_BACKOFF_MIN_S = 0.5
FOLLOW_BACKOFF_MAX_S = 30.0
FOLLOW_NOTICES_EVERY_S = 60.0  # own devices, operator notices, lawful access: looked at again
ACCOUNT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
MIN_PASSPHRASE_CHARS = 8
LINK_CODE_RE = re.compile(r"^([A-Z2-7]{16})-([A-Z2-7]{16})$")


# Refusals proving the server holds no account for this device: the name is another device's
# (the server recognises a retry by the same device), or reserved.
_NOT_THIS_DEVICE_CODES = frozenset({"account_exists", "name_reserved"})
# On the first request also: the request itself was refused (a retry would be refused alike).
_REFUSED_REQUEST_CODES = _NOT_THIS_DEVICE_CODES | {
    "invalid_input",
    "unsupported_version",
    "too_large",
    "verification_failed",
    "registration_token_required",
    "registration_token_invalid",
}


def _refuses_creation(exc: BaseException, *, resumed: bool) -> bool:
    """Whether the server's answer to an account creation shows it registered nothing, so the
    keys may go. A lost answer, an interruption or a busy server show nothing of the kind."""
    if not isinstance(exc, AccordError) or isinstance(exc, (ServiceError, RateLimited)):
        return False
    return exc.code in (_NOT_THIS_DEVICE_CODES if resumed else _REFUSED_REQUEST_CODES)


def _check_new_device(name: str, passphrase: str) -> None:
    if not ACCOUNT_NAME_RE.match(name):
        raise InvalidInput(
            "account names are 1-64 characters: lower-case letters, digits, '.', '_' or '-'"
        )
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise InvalidInput(f"a passphrase has at least {MIN_PASSPHRASE_CHARS} characters")


def _forget_home(home: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (home / f"accord.db{suffix}").unlink(missing_ok=True)


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
class _Setup:
    """How a new device is set up: see `AccordClient.create_account`."""

    transport: httpx.BaseTransport | None
    manifest: str | None
    insecure_dev: bool
    approver_set: str | None
    clock: Clock | None
    kdf_cost: KdfCost = DEFAULT_KDF_COST

    def __post_init__(self) -> None:
        if self.manifest is None and not self.insecure_dev:
            raise InvalidInput(
                "a deployment manifest is required (--manifest FILE or ACCORD_MANIFEST); "
                "--insecure-dev trusts the server instead, for development only",
                code="manifest_required",
            )
        if self.manifest is not None and self.insecure_dev:
            raise InvalidInput("give a deployment manifest or insecure development mode, not both")
        if self.manifest is not None and self.approver_set is not None:
            raise InvalidInput("with a deployment manifest the approver set is the manifest's")


class AccordClient:
    """A device: its keys and sessions under `home`, talking to one server.

    `passphrase` unlocks the local store, or the `StoreKey` it derives does (as the store-key
    agent hands it out: docs/key-agent.md). `clock` gives every time this device reads (message
    times, token expiry, warrant windows, deadlines); by default the system clock, moved by
    `ACCORD_CLOCK_OFFSET_FILE` if set.
    """

    def __init__(
        self,
        home: Path,
        passphrase: str | StoreKey,
        *,
        transport: httpx.BaseTransport | None = None,
        max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES,
        clock: Clock | None = None,
        _new_device: HomeDevice | None = None,
        _kdf_cost: KdfCost = DEFAULT_KDF_COST,
    ) -> None:
        self.home = Path(home)
        self.store = LocalStore(self.home)
        try:
            if _new_device is not None:
                if isinstance(passphrase, StoreKey):
                    raise InvalidInput("a new local store is made from a passphrase")
                self.store.initialise(passphrase, _kdf_cost)
                self.store.set_home_device(_new_device)
            else:
                self.store.unlock(passphrase)
                self.store.verify_anchors()  # anchors_tampered: nothing runs on this home
        except BaseException:
            self.store.close()
            raise
        device = self.store.home_device()
        server = device.server if device is not None else "http://invalid"
        self.api = ServerApi(
            server, token=self._token, transport=transport, retry_budget_s=RETRY_BUDGET_S
        )
        self.clock = clock if clock is not None else clock_from_env()
        identity = DeviceIdentity(self.store)
        self._ctx = ctx = ClientContext(
            store=self.store,
            api=self.api,
            identity=identity,
            log_trust=LogTrust(self.store, self.api, self.clock),
            clock=self.clock,
        )
        self._login = DeviceLogin(self.store, identity, self.clock)
        self._devices = DeviceDirectory(ctx)
        self._sessions = OlmSessions(ctx)
        self._groups = Groups(ctx, self._devices)
        self.vouchers = SafetyVouchers(ctx)
        """Safety vouchers for image attachments (docs/protocol/private-matching.md)."""
        self._attachments = Attachments(ctx, self.vouchers, max_bytes=max_attachment_bytes)
        self._envelopes = EnvelopeOpener(
            ctx,
            devices=self._devices,
            sessions=self._sessions,
            groups=self._groups,
            attachments=self._attachments,
            vouchers=self.vouchers,
        )

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
        return self._ctx.identity.account_name

    @property
    def device_id(self) -> str:
        return self._ctx.identity.device_id

    @property
    def olm(self) -> DeviceAccount:
        return self._ctx.identity.olm

    @property
    def max_attachment_bytes(self) -> int:
        return self._attachments.max_bytes

    @cached_property
    def access(self) -> AccessClient:
        """Lawful access on this device (docs/lawful-access.md), loaded on first use."""
        from accord.client.access import AccessClient

        return AccessClient(self._ctx)

    def _access_at_work(self) -> AccessClient | None:
        """The lawful-access client if it may have something to do (it already runs, or the
        stored state holds an active warrant or a queued record); else None, and a send needs
        none of the lawful-access modules. Every message is still looked at: a device with an
        active warrant always gets the client."""
        if "access" in self.__dict__ or has_lawful_access_work(self.store.access_state()):
            return self.access
        return None

    # --- trust anchors (docs/protocol/transparency.md, "Deployment manifest") ------------------

    def manifest(self) -> Manifest | None:
        """The pinned deployment manifest; None in insecure development mode."""
        return self._ctx.log_trust.manifest()

    @property
    def insecure_dev(self) -> bool:
        """Whether this home trusts the server for its anchors (set up with `insecure_dev`)."""
        return self._ctx.log_trust.insecure_dev()

    def lawful_access_bounds(self) -> LawfulAccessBounds:
        """The bounds this device holds every warrant to, the ones its checks apply: the pinned
        manifest's, else (insecure development mode) the configured approver set with the
        default delays; `ConfigurationError` ``approver_set_required`` without a set."""
        from accord.client.access import lawful_access_bounds

        return lawful_access_bounds(self._ctx)

    def matching_floors(self) -> MatchingFloors:
        """The weakest matching table this device accepts, the floors its checks apply: the
        pinned manifest's, else (insecure development mode) those set here, else the
        defaults."""
        return vouchers_floors(self._ctx)

    def install_manifest(self, note: str) -> Manifest:
        """Replace the pinned manifest by a newer one it signed (M2; see `LogTrust`)."""
        return self._ctx.log_trust.install_manifest(note)

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
        manifest: str | None = None,
        insecure_dev: bool = False,
        approver_set: str | None = None,
        clock: Clock | None = None,
        kdf_cost: KdfCost = DEFAULT_KDF_COST,
        registration_token: str | None = None,
    ) -> AccordClient:
        """Step 1: make device keys, register the account, publish one-time keys.

        `manifest` is the deployment's signed manifest (a note): the log, its witnesses and
        quorum, the approver set and the other anchors come from it, never from the server.
        Without one, `insecure_dev` must be set: the log's key is then taken from the server,
        no witness is required, and `approver_set` (a hash, hex) names the lawful-access
        approver set (default: the one shown now). Neither: `manifest_required`.
        `kdf_cost` is the Argon2id cost of the passphrase (RFC 9106's unless a test lowers it).
        `registration_token` is what a closed deployment requires of new accounts.

        Resumable: the keys stay in `home` until the server has answered. A creation that was
        interrupted (Ctrl-C, a kill, a lost answer) is finished by calling this again with the
        same home, name and passphrase: the same device asks again, and the server answers as it
        did the first time. Only a refusal that proves the server holds no account for this
        device (the name is someone else's, reserved, a wrong token) clears the home.
        """
        setup = _Setup(transport, manifest, insecure_dev, approver_set, clock, kdf_cost)
        client = cls._interrupted_creation(home, server, name, passphrase, setup)
        resumed = client is not None
        if client is None:
            client = cls._fresh(home, server, name, passphrase, setup)
            client.store.set_device_status(DeviceStatus.CREATING)  # from here, keep the keys
        try:
            if client.store.device_status() is DeviceStatus.CREATING:
                request = CreateAccountRequest(
                    device=client._ctx.identity.device_keys(),
                    registration_token=registration_token,
                )
                client.api.call(
                    AccountCreated,
                    "POST",
                    "/v1/accounts",
                    json=request.model_dump(exclude_none=True),
                    auth=False,
                )
                client.store.set_device_status(DeviceStatus.REGISTERED)
            client._require_active()
        except BaseException as exc:
            client._abandon(refused=_refuses_creation(exc, resumed=resumed))
            raise
        return client

    @classmethod
    def _interrupted_creation(
        cls, home: Path, server: str, name: str, passphrase: str, setup: _Setup
    ) -> AccordClient | None:
        """The device of an account creation in `home` that never finished, to finish it; None
        if there is none (a home that never asked the server for anything is cleared)."""
        _check_new_device(name, passphrase)
        if not (Path(home) / "accord.db").exists():
            return None
        store = LocalStore(Path(home))
        try:
            status, device = store.device_status(), store.home_device()
            if store.initialised() and status is not None:
                if status not in (DeviceStatus.CREATING, DeviceStatus.REGISTERED):
                    raise ConfigurationError(f"{home} already holds an account")
                if device is None or (device.account, device.server) != (
                    name,
                    server.rstrip("/"),
                ):
                    other = f"{device.account} on {device.server}" if device else "another"
                    raise ConfigurationError(
                        f"{home} holds the unfinished creation of account {other}: "
                        "run 'accord account create' for that account to finish it"
                    )
        finally:
            store.close()
        if status is None:  # nothing was sent about this device: start again
            _forget_home(Path(home))
            return None
        return cls(home, passphrase, transport=setup.transport, clock=setup.clock)

    @classmethod
    def _fresh(
        cls,
        home: Path,
        server: str,
        name: str,
        passphrase: str,
        setup: _Setup,
    ) -> AccordClient:
        """A new home for device keys of `name`, its log and approver set pinned; nothing is
        sent to the server about this device yet."""
        _check_new_device(name, passphrase)
        device = HomeDevice(server.rstrip("/"), name, new_device_id())
        client = cls(
            home,
            passphrase,
            transport=setup.transport,
            clock=setup.clock,
            _new_device=device,
            _kdf_cost=setup.kdf_cost,
        )
        try:
            if setup.manifest is not None:
                pinned = client._ctx.log_trust.pin_manifest(setup.manifest)
                client.access.pin_approver_set(pinned.lawful_access.approver_genesis_set)
            else:
                client._ctx.log_trust.pin_insecure_dev()
                client.access.pin_approver_set(setup.approver_set)
            client._devices.remember_own([client.device_id])
            client._ctx.identity.create_keys()
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
        manifest: str | None = None,
        insecure_dev: bool = False,
        approver_set: str | None = None,
        clock: Clock | None = None,
        kdf_cost: KdfCost = DEFAULT_KDF_COST,
    ) -> tuple[AccordClient, str]:
        """Step 2, new device: ask to join `name`; returns the one-time code to approve.
        `manifest`, `insecure_dev` and `approver_set` as for `create_account`."""
        setup = _Setup(transport, manifest, insecure_dev, approver_set, clock, kdf_cost)
        client = cls._fresh(home, server, name, passphrase, setup)
        try:
            keys = client._ctx.identity.device_keys()
            created = client.api.call(
                LinkCreated,
                "POST",
                "/v1/link-requests",
                json={"v": 1, "device": keys.model_dump()},
                auth=False,
            )
            code = f"{created.request_id}-{link_fingerprint(keys)}"
            client.store.set_device_status(DeviceStatus.LINKING)
            client.vouchers.await_account_secret()
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
        signature = self._ctx.identity.sign(approval_payload(self.device_id, device))
        self.api.call(
            DeviceRecord,
            "POST",
            f"/v1/link-requests/{request_id}/approve",
            json=ApproveLinkRequest(
                approval=DeviceApproval(approver_device_id=self.device_id, signature=signature)
            ).model_dump(),
        )
        self._devices.remember_own([device.device_id])
        with self.store.transaction():
            self._devices.refresh([self.account_name])
        # The new device continues this account's matching count: it gets the secret over Olm
        # once it has published keys (`_share_matching_secret`, on this device's next send or
        # receive).
        self.vouchers.share_with(device.device_id)
        self._share_matching_secret()
        return device

    def remove_device(self, device_id: str) -> None:
        """Remove a device (this one or another) from this account: signed here, logged by the
        server; every device of the account and every contact then sees the smaller set."""
        self._require_active()
        with user_input():
            if not DEVICE_ID_RE.match(device_id):
                raise InvalidInput("not a device id")
        at = now_ms(self.clock)
        signature = self._ctx.identity.sign(
            revocation_payload(self.account_name, device_id, self.device_id, at)
        )
        self.api.request(
            "POST",
            f"/v1/devices/{device_id}/revoke",
            json=RevokeDeviceRequest(revoked_at=at, signature=signature).model_dump(),
        )
        if device_id != self.device_id:
            with self.store.transaction():
                self._devices.refresh([self.account_name])

    def _share_matching_secret(self) -> None:
        """Send the account's matching secret to the account's other devices if a device this
        one approved still waits for it and can now receive (docs/protocol/private-matching.md,
        C2). A device without published keys yet is tried again next time."""
        pending = self.vouchers.pending_share()
        if pending is None:
            return
        share, waiting = pending
        own = Conversation(account=self.account_name)
        message_id = new_message_id()
        # Every send carries a franking commitment; this one covers an empty message, as the
        # secret is not something a recipient could report.
        commitment = commit_message(
            FrankingKey(new_franking_key()),
            FrankedMessage(
                message_id=message_id,
                sender_account=self.account_name,
                sender_device=self.device_id,
                to_account=self.account_name,
                to_group=None,
                sent_at_ms=now_ms(self.clock),
                text="",
            ),
        )
        try:
            self._devices.prepare({self.account_name}, refresh=True)
            with self.store.transaction():
                targets = self._devices.others({self.account_name})
                if not waiting & {d.device_id for d in targets}:
                    return
                copies = self._sessions.encrypt_copies(targets, encode_payload(share))
            request = SendRequest(
                message_id=message_id,
                to=own,
                recipients=[DeviceRef(account=d.account, device_id=d.device_id) for d in targets],
                copies=copies,
                extensions={
                    FRANKING_EXTENSION: FrankingCommitment(
                        commitment=b64encode(commitment)
                    ).model_dump()
                },
            )
            self.api.call(SendAccepted, "POST", "/v1/messages", json=request.model_dump())
        except (ServiceError, StaleDevicesResponse):  # no keys yet, or the list just changed
            return
        except VerificationError:  # the account's history does not verify (its user is told):
            return  # the secret goes to no device of it until it does
        self.vouchers.shared(d.device_id for d in targets)

    def _abandon(self, *, refused: bool = False) -> None:
        """Close; and if the server never heard of this device, or `refused` it for good,
        forget it so a retry starts afresh. A creation whose answer was lost keeps its keys."""
        status = self.store.device_status()
        self.close()
        if status is None or (refused and status is DeviceStatus.CREATING):
            _forget_home(self.home)

    def _require_active(self) -> None:
        """A linking device becomes active once its approval lets it log in."""
        status = self.store.device_status()
        if status is DeviceStatus.ACTIVE:
            return
        if status is DeviceStatus.REGISTERED:
            publish_one_time_keys(self._ctx, initial=True)
            self.store.set_device_status(DeviceStatus.ACTIVE)
            return
        if status is DeviceStatus.CREATING:
            raise ConfigurationError(
                f"the creation of account {self.account_name} was interrupted: run "
                f"'accord account create {self.account_name} --server {self.api.base_url}' "
                "again to finish it"
            )
        if status is not DeviceStatus.LINKING:
            raise ConfigurationError(f"no account in {self.home}")
        try:
            self._token(True)
        except AccordError as exc:
            raise ConfigurationError(
                "this device is waiting for approval: run 'accord device approve CODE' on "
                "another device of the account"
            ) from exc
        publish_one_time_keys(self._ctx, initial=True)
        self.store.set_device_status(DeviceStatus.ACTIVE)
        # The devices the account had when this one joined were added by its user.
        with self.store.transaction():
            self._devices.refresh([self.account_name])
            self._devices.remember_own(d.device_id for d in self._devices.own())

    def _token(self, refresh: bool) -> str:
        """Step 4: a bearer token for this device (the API's token source)."""
        return self._login.token(self.api, refresh=refresh)

    # --- devices (step 6) -------------------------------------------------------------------

    def devices(self) -> tuple[list[PinnedDevice], list[str]]:
        """This account's devices as the server lists them (verified), and notices about any
        this device has not seen added."""
        self._require_active()
        notices = self._devices.check_own()
        return self._devices.own(), notices

    def _refresh_devices(self, accounts: Iterable[str]) -> list[str]:
        with self.store.transaction():
            return self._devices.refresh(accounts)

    def verify_contact(self, account: str, *, confirm: bool = False) -> tuple[str, bool]:
        """The safety code to compare with `account`'s user in person, and whether the contact
        is marked verified; `confirm` marks it verified (docs/protocol/transparency.md, K11)."""
        self._require_active()
        return self._devices.verify_contact(account, confirm=confirm)

    def contact_notices(self) -> list[str]:
        """Notices about contacts' device changes not yet taken (K11)."""
        with self.store.transaction():
            return self._devices.take_notices()

    # --- groups (step 9) --------------------------------------------------------------------

    def create_group(self, group: str, members: Sequence[str]) -> GroupState:
        self._require_active()
        return self._groups.create(group, members)

    def change_members(
        self, group: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> GroupState:
        self._require_active()
        return self._groups.change_members(group, add=add, remove=remove)

    # --- sending (steps 7-9) ----------------------------------------------------------------

    def send(self, to: str, text: str, attachments: Sequence[Path] = ()) -> str:
        """Send a direct message to every device of `to` and to this account's other devices."""
        with user_input():
            conversation = Conversation(account=to)
        content = self._compose(conversation, text, attachments)

        def encrypt(payload: bytes, attempt: int) -> SendRequest:
            self._devices.prepare({to, self.account_name}, refresh=attempt > 0)
            with self.store.transaction():
                targets = self._devices.others({to, self.account_name})
                copies = self._sessions.encrypt_copies(targets, payload)
            return SendRequest(
                message_id=content.message_id,
                to=conversation,
                recipients=[DeviceRef(account=d.account, device_id=d.device_id) for d in targets],
                copies=copies,
                extensions={},
            )

        return self._deliver(content, encrypt)

    def send_group(self, group: str, text: str, attachments: Sequence[Path] = ()) -> str:
        """Encrypt once with this device's Megolm session; share its key over Olm as needed."""
        with user_input():
            conversation = Conversation(group=group)
        content = self._compose(conversation, text, attachments)

        def encrypt(payload: bytes, attempt: int) -> SendRequest:
            with self.store.transaction():
                members = self._groups.state(group, refresh=attempt > 0).members
            self._devices.prepare(members, refresh=attempt > 0)
            with self.store.transaction():
                state = self._groups.state(group)
                targets = self._devices.others(state.members)
                current = {(d.account, d.device_id) for d in targets}
                outbound, shared = self._groups.outbound_session(group, current)
                share = GroupKeyShare(
                    group=group,
                    sender=content.sender,
                    session_id=outbound.session_id,
                    session_key=outbound.session_key(),
                )
                need_key = [d for d in targets if (d.account, d.device_id) not in shared]
                copies = self._sessions.encrypt_copies(need_key, encode_payload(share))
                ciphertext = outbound.encrypt(payload)
                self._groups.save_outbound_session(group, outbound, shared | current)
            return SendRequest(
                message_id=content.message_id,
                to=conversation,
                recipients=[DeviceRef(account=a, device_id=d) for a, d in sorted(current)],
                copies=copies,
                megolm=b64encode(ciphertext),
                megolm_session_id=outbound.session_id,
                extensions={},
            )

        with self._groups.answers_for(group):
            return self._deliver(content, encrypt)

    def _compose(
        self, conversation: Conversation, text: str, attachments: Sequence[Path]
    ) -> Content:
        """Step 7: upload the encrypted attachments and write the message as it will be read."""
        self._require_active()
        self._share_matching_secret()
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"a message has at most {MAX_TEXT_CHARS} characters")
        refs = self._attachments.upload(attachments)
        return Content(
            message_id=new_message_id(),
            sender=self._ctx.identity.ref,
            to=conversation,
            sent_at=now_ms(self.clock),
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
            request = encrypt(payload, attempt).model_copy(
                update={
                    "extensions": extensions,
                    "blobs": [ref.blob_id for ref in content.attachments],
                }
            )
            try:
                self.api.call(SendAccepted, "POST", "/v1/messages", json=request.model_dump())
            except StaleDevicesResponse as stale:
                if attempt > 0 and self._devices.unlogged(stale.body.missing):
                    # After a proof-checked refresh the server still wants devices that are
                    # not in the accounts' logged sets: never encrypt to them.
                    raise VerificationError(
                        "the server asks to encrypt to devices that are not in the transparency "
                        "log's set for their account",
                        code="unlogged_device",
                    ) from None
                continue
            self._remember_sent(content)
            return content.message_id
        raise ServiceError("the conversation's devices kept changing; try again")

    def _remember_sent(self, content: Content) -> None:
        with self.store.transaction():
            self.store.save_message(
                self.account_name,
                content.message_id,
                {
                    "direction": "out",
                    "content": content.model_dump(mode="json"),
                },
                shown=True,
            )
            access = self._access_at_work()
            if access is not None:
                access.on_sent(content)  # in the same transaction
        if access is not None:
            access.flush()

    # --- receiving (steps 10-12) ------------------------------------------------------------

    def receive(self, *, limit: int = 100) -> ReceiveResult:
        """Fetch, verify, decrypt and store every queued envelope; acknowledge each one."""
        self._require_active()
        # Own devices, operator notices, contacts' changes, lawful access (warrants, disclosures).
        result = ReceiveResult(notices=self._startup_notices())
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
        publish_one_time_keys(self._ctx)
        self._share_matching_secret()
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
        deadline = self.clock.monotonic() + timeout_s
        try:
            with connect(
                url,
                additional_headers={"Authorization": f"Bearer {self._token(False)}"},
                max_size=PUSH_MAX_FRAME_BYTES,
                open_timeout=PUSH_OPEN_TIMEOUT_S,
            ) as ws:
                while len(result.messages) < want:
                    remaining = deadline - self.clock.monotonic()
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
        publish_one_time_keys(self._ctx)
        return result

    def follow(self, stop: threading.Event | None = None) -> Iterator[ReceiveResult]:
        """Receive as messages arrive, over a WebSocket held open, until `stop` is set.

        Each frame's envelopes are verified, decrypted and stored, then yielded; they are
        acknowledged to the server only when the caller asks for the next frame (so a consumer
        that shows them first never has a message acknowledged and unshown; one killed before
        showing them finds them in `unshown_messages`). While idle it yields an empty result
        every FOLLOW_POLL_S, so the consumer's thread can use the client between frames, and
        every FOLLOW_NOTICES_EVERY_S (by the client's clock) one with the notices a receive
        gives: this account's devices, reviewers' warnings, lawful-access disclosures. A
        dropped connection (a server restart) is retried with backoff; each retry yields a
        notice.
        """
        from websockets.exceptions import WebSocketException
        from websockets.sync.client import connect

        self._require_active()
        stop = stop or threading.Event()
        first = ReceiveResult()
        first.notices += self._startup_notices()
        next_check = self.clock.monotonic() + FOLLOW_NOTICES_EVERY_S
        yield first
        backoff = FOLLOW_BACKOFF_MIN_S
        while not stop.is_set():
            url = self.api.base_url.replace("http", "ws", 1) + "/v1/ws"
            try:
                with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {self._token(False)}"},
                    max_size=PUSH_MAX_FRAME_BYTES,
                    open_timeout=PUSH_OPEN_TIMEOUT_S,
                ) as ws:
                    backoff = FOLLOW_BACKOFF_MIN_S
                    while not stop.is_set():
                        try:
                            raw = ws.recv(timeout=FOLLOW_POLL_S)
                        except TimeoutError:
                            idle = ReceiveResult()  # the consumer may use the client now
                            if self.clock.monotonic() >= next_check:
                                idle.notices += self._startup_notices()
                                next_check = self.clock.monotonic() + FOLLOW_NOTICES_EVERY_S
                            yield idle
                            continue
                        frame = json.loads(raw)
                        batch = [Envelope.model_validate(e) for e in frame.get("envelopes", [])]
                        result = ReceiveResult()
                        done = self.process_envelopes(batch, result)
                        result.notices += self.contact_notices()
                        yield result
                        if done:
                            ws.send(json.dumps({"type": "ack", "ids": done}))
                        publish_one_time_keys(self._ctx)
            except (WebSocketException, OSError, ValueError, AccordError) as exc:
                if stop.is_set():
                    break
                yield ReceiveResult(
                    notices=[f"connection lost ({type(exc).__name__}); retrying in {backoff:g} s"]
                )
                stop.wait(backoff)
                backoff = min(backoff * 2, FOLLOW_BACKOFF_MAX_S)

    def _startup_notices(self) -> list[str]:
        try:
            notices = self._devices.check_own()
        except VerificationError as exc:  # tell the user; keep receiving
            notices = [f"this account's device list did not verify: {exc.message}"]
        return notices + self._notices() + self.contact_notices() + self.access.sync_notices()

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
                        message = self._envelopes.open(env)
                        if message is not None:  # None: the account's matching secret, taken
                            self._save_received(message)
                    except EnvelopeRejected as exc:
                        message = None
                        result.rejected.append(
                            f"message {env.message_id} from {env.sender.account} rejected: "
                            f"{exc.reason}"
                        )
                    self.store.mark_processed(env.id)
            except BaseException:
                self._ctx.identity.reload()  # drop in-memory changes that were rolled back
                raise
            if message is not None:
                result.messages.append(message)
            done.append(env.id)
        self.access.flush()
        return done

    def _save_received(self, message: ReceivedMessage) -> None:
        self.store.save_message(
            message.sender,
            message.id,
            {
                "direction": "in",
                "message": message.to_json(),
                "sender_device": message.sender_device,
                "evidence": message.evidence.model_dump(mode="json") if message.evidence else None,
            },
            shown=False,
        )
        self.access.on_received(message)  # in the caller's transaction

    # --- what the user has seen -------------------------------------------------------------

    def unshown_messages(self) -> list[StoredMessage]:
        """Received messages stored but not yet shown to the user (from this run or earlier
        ones), oldest first."""
        return stored_conversation(self.store, unshown_only=True)

    def mark_shown(self, message: StoredMessage) -> None:
        """Call once the message reached the user (written and flushed to their output)."""
        self.store.mark_shown(message.seq)

    def history(
        self, *, name: str | None = None, group: str | None = None, limit: int | None = None
    ) -> list[StoredMessage]:
        """The stored conversation with account `name` or in `group` (every message if
        neither), sent and received, oldest first; the last `limit` of them if given."""
        return stored_conversation(
            self.store, me=self.account_name, name=name, group=group, limit=limit
        )

    def _notices(self) -> list[str]:
        """Notices from the provider's trust and safety (a warning), each shown once."""
        from accord.wire.reports import NoticeList

        listing = self.api.call(
            NoticeList, "GET", "/v1/notices", params={"after": self.store.notices_seen()}
        )
        if listing.notices:
            with self.store.transaction():
                self.store.set_notices_seen(listing.notices[-1].id)
        return [f"notice from trust and safety: {n.text}" for n in listing.notices]

    # --- reports (docs/protocol/franking.md, step 6) -----------------------------------------

    def appeal(self, text: str) -> int:
        """Appeal this account's suspension (a suspended account may still read and appeal);
        returns the appeal's id. The decision comes back as a notice."""
        from accord.wire.reports import Appeal, AppealRequest

        with user_input():
            request = AppealRequest(text=text)
        return self.api.call(Appeal, "POST", "/v1/appeals", json=request.model_dump()).id

    def report(self, message_id: str, *, reason: str = "", context: int = 0) -> str:
        """Reveal a received message, and up to `context` earlier received messages of the same
        conversation, with their franking openings; returns the report id."""
        from accord.client.reports import file_report

        return file_report(self._ctx, message_id, reason=reason, context=context)
