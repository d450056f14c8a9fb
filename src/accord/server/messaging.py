"""`MessagingService`: accounts, devices, tokens, device links, one-time keys, groups, and the
queues messages travel through. No FastAPI here: the routes in `server/routes/` wrap it.

The server is trusted for availability only. It checks what it can (signatures on device keys
and one-time keys, group states signed by an admin, complete device lists on every send) so that
honest clients fail early, but clients verify everything again themselves.
Step numbers refer to docs/protocol/messaging.md.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import (
    AuthenticationError,
    AuthorizationError,
    Conflict,
    InvalidInput,
    NotFound,
    QueueFull,
    VerificationError,
)
from accord.primitives.encoding import b64decode, b64encode, canonical_json
from accord.primitives.signing import check_curve25519_key, parse_ed25519_key, verify_ed25519
from accord.protocols.franking import TagContext, conversation_label
from accord.protocols.key_transparency import revocation_payload
from accord.protocols.messaging import (
    approval_payload,
    auth_payload,
    registration_entry,
    verify_device_keys,
    verify_group_state,
    verify_one_time_key,
)
from accord.protocols.translog.entries import DeviceRevocation
from accord.server.franking import FrankingKeyRing
from accord.server.limits import DEFAULT_MAX_QUEUE, SendLimiter, registration_limiter
from accord.server.translog import LogService
from accord.storage.db import Database, inserted_id
from accord.storage.schema import (
    accounts,
    auth_challenges,
    auth_tokens,
    blobs,
    deliveries,
    devices,
    group_members,
    groups,
    link_requests,
    message_blobs,
    messages,
    one_time_keys,
)
from accord.wire.common import MAX_OLM_BODY_BYTES, is_reserved_name
from accord.wire.franking import FRANKING_EXTENSION, FrankingCommitment, commitment_bytes
from accord.wire.messaging import (
    GROUP_NOT_FOUND_CODE,
    AckResult,
    ApproveLinkRequest,
    Challenge,
    ClaimedKey,
    ClaimedKeys,
    ClaimKeysRequest,
    Conversation,
    CreateAccountRequest,
    DeviceApproval,
    DeviceKeys,
    DeviceList,
    DeviceRecord,
    DeviceRef,
    Envelope,
    EnvelopeBatch,
    GroupState,
    KeyCount,
    LinkCreated,
    LinkRequest,
    OlmBody,
    OneTimeKey,
    PendingLink,
    PublishKeysRequest,
    RevokeDeviceRequest,
    SendAccepted,
    SendRequest,
    SignedGroupState,
    StaleDevices,
    Token,
)

CHALLENGE_TTL_MS = 5 * 60 * 1000
QUEUE_FULL_RETRY_S = 30
TOKEN_TTL_MS = 24 * 3600 * 1000
LINK_TTL_MS = 15 * 60 * 1000
MAX_ONE_TIME_KEYS_STORED = 500
# Safety vouchers travel here: up to 32 of at most 12,288 bytes (base64: 524,288 characters).
MAX_EXTENSIONS_BYTES = 768 * 1024
DEFAULT_FETCH_LIMIT = 100
AUTH_CACHE_TTL_S = 10.0
AUTH_CACHE_MAX_ENTRIES = 100_000
MAX_FETCH_LIMIT = 500


# A device takes part in messaging only when not revoked and already in the transparency log.
_ACTIVE_DEVICE = and_(devices.c.revoked_at.is_(None), devices.c.log_index.is_not(None))


# The relay's hot path (send, push, acknowledge) runs these statements, built once: SQLAlchemy
# keys its compiled-statement cache on a statement's structure, and building and keying a new
# statement object on every call cost more than running it.
_sender_accounts = accounts.alias("sender_accounts")
_sender_devices = devices.alias("sender_devices")
_ENVELOPES = (
    select(
        deliveries.c.id,
        deliveries.c.olm_type,
        deliveries.c.olm_body,
        messages.c.message_id,
        messages.c.to_account,
        messages.c.to_group,
        messages.c.megolm,
        messages.c.megolm_session_id,
        messages.c.extensions,
        messages.c.created_at,
        _sender_devices.c.device_id.label("sender_device_id"),
        _sender_accounts.c.name.label("sender_account"),
    )
    .join(messages, messages.c.id == deliveries.c.message_pk)
    .join(_sender_devices, _sender_devices.c.id == messages.c.sender_device_pk)
    .join(_sender_accounts, _sender_accounts.c.id == _sender_devices.c.account_id)
    .where(deliveries.c.device_pk == bindparam("device_pk"))
)
_ENVELOPES_AFTER = (
    _ENVELOPES.where(deliveries.c.id > bindparam("after"))
    .order_by(deliveries.c.id)
    .limit(bindparam("limit"))
)
_ENVELOPE_BY_ID = _ENVELOPES.where(deliveries.c.id == bindparam("delivery_id"))
_ENVELOPES_BY_IDS = _ENVELOPES.where(
    deliveries.c.id.in_(bindparam("ids", expanding=True))
).order_by(deliveries.c.id)
_QUEUE_IDS = (
    select(deliveries.c.id)
    .where(deliveries.c.device_pk == bindparam("device_pk"))
    .order_by(deliveries.c.id)
    .limit(bindparam("limit"))
)
_SENT_BEFORE = select(messages.c.created_at, messages.c.device_count).where(
    messages.c.sender_device_pk == bindparam("device_pk"),
    messages.c.message_id == bindparam("message_id"),
)
_DEVICES_OF_ACCOUNTS = (
    select(devices.c.id, accounts.c.name, devices.c.device_id)
    .join(accounts, accounts.c.id == devices.c.account_id)
    .where(accounts.c.name.in_(bindparam("names", expanding=True)), _ACTIVE_DEVICE)
)
_FULL_QUEUE = (
    select(deliveries.c.device_pk)
    .where(deliveries.c.device_pk.in_(bindparam("device_pks", expanding=True)))
    .group_by(deliveries.c.device_pk)
    .having(func.count() >= bindparam("max_queue"))
    .limit(1)
)
_INSERT_MESSAGE = insert(messages)
_INSERT_DELIVERY = insert(deliveries)
_DELETE_OWN_DELIVERIES = (
    delete(deliveries)
    .where(
        deliveries.c.device_pk == bindparam("device_pk"),
        deliveries.c.id.in_(bindparam("ids", expanding=True)),
    )
    .returning(deliveries.c.message_pk)
)
_DELETE_DELIVERED_MESSAGES = delete(messages).where(
    messages.c.id.in_(bindparam("message_pks", expanding=True)),
    ~select(deliveries.c.id).where(deliveries.c.message_pk == messages.c.id).exists(),
)


def _hash_secret(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class AuthedDevice:
    """A device that proved possession of its identity key; what every route acts as."""

    device_pk: int
    account_id: int
    account: str
    device_id: str
    suspended: bool


class StaleDevicesError(Conflict):
    code = "stale_devices"
    default_message = "the device list of the conversation has changed"

    def __init__(self, missing: list[DeviceRef], extra: list[DeviceRef]) -> None:
        super().__init__()
        self.body = StaleDevices(message=self.message, missing=missing, extra=extra)


class MessagingService:
    def __init__(
        self,
        db: Database,
        log: LogService,
        *,
        notify: Callable[[Iterable[int]], None] | None = None,
        franking: FrankingKeyRing,
        limiter: SendLimiter | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        clock: Clock = SYSTEM_CLOCK,
        registration: SendLimiter | None = None,
        registration_token: str | None = None,
    ) -> None:
        self.db = db
        self.log = log
        self.clock = clock
        self.franking = franking
        self.limiter = limiter or SendLimiter(clock=clock)
        # New accounts and link requests per client address; the token a closed deployment
        # requires of new accounts.
        self.registration = registration or registration_limiter(clock=clock)
        self.registration_token = registration_token
        self.max_queue = max_queue
        # Other protocol parts attach here (private matching, lawful access): checks that may
        # refuse a send before anything is stored, and observers of each newly accepted message.
        self.send_checks: list[Callable[[AuthedDevice, SendRequest], Awaitable[None]]] = []
        self.send_observers: list[
            Callable[[AuthedDevice, SendRequest, SendAccepted], Awaitable[None]]
        ] = []
        self._notify = notify or (lambda _pks: None)
        self._auth_cache: dict[bytes, tuple[AuthedDevice, float, int]] = {}

    # --- accounts and devices -------------------------------------------------------------

    async def create_account(self, req: CreateAccountRequest, *, address: str) -> DeviceRecord:
        """Step 1: register an account with its first device.

        Idempotent on the device: a retry carrying the same self-signed device keys (the client
        lost the first answer) is answered as the first request was, and completes a
        registration whose log entry never got written. Limited per client `address`
        (`registration_throttled`), and on a closed deployment only with its token.
        """
        keys = req.device
        if is_reserved_name(keys.account):
            raise InvalidInput("this account name is reserved", code="name_reserved")
        self._check_device_keys(keys)
        await self.registration.check(address)
        self._check_registration_token(req.registration_token)
        created = now_ms(self.clock)
        try:

            def _tx(conn: Connection) -> Any:
                account_id = inserted_id(
                    conn.execute(
                        insert(accounts).values(
                            name=keys.account, created_at=created, suspended=False
                        )
                    )
                )
                return self._insert_device(conn, account_id, keys, None, created)

            device_pk: int = await self.db.transact_async(_tx)
        except IntegrityError:
            return await self._repeat_account_creation(keys)
        await self._log_device(device_pk, keys, None, created)
        return DeviceRecord(keys=keys, approval=None, created_at=created)

    def _check_registration_token(self, offered: str | None) -> None:
        if self.registration_token is None:
            return
        if offered is None:
            raise AuthorizationError(
                "this server requires a registration token", code="registration_token_required"
            )
        if not hmac.compare_digest(offered.encode(), self.registration_token.encode()):
            raise AuthorizationError("wrong registration token", code="registration_token_invalid")

    async def _repeat_account_creation(self, keys: DeviceKeys) -> DeviceRecord:
        """The name is taken: by this very device (a retry), or by someone else (409)."""

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(devices)
                .join(accounts, accounts.c.id == devices.c.account_id)
                .where(accounts.c.name == keys.account, devices.c.approver_device_id.is_(None))
            ).first()

        first = await self.db.read_async(_rd)
        same = first is not None and all(
            hmac.compare_digest(str(getattr(first, field)), str(getattr(keys, field)))
            for field in ("device_id", "ed25519", "curve25519", "signature")
        )
        if first is None or not same:
            raise Conflict("account name is taken", code="account_exists")
        if first.log_index is None:  # the first request stopped before the log took it
            await self._log_device(int(first.id), keys, None, int(first.created_at))
        return DeviceRecord(keys=keys, approval=None, created_at=int(first.created_at))

    async def _log_device(
        self, device_pk: int, keys: DeviceKeys, approval: DeviceApproval | None, created: int
    ) -> int:
        """Key transparency: log the registration, then let the device take effect."""
        entry = registration_entry(keys, approval, created)
        index = await to_thread.run_sync(self.log.append, [entry.to_bytes()])

        def _tx(conn: Connection) -> None:
            conn.execute(update(devices).where(devices.c.id == device_pk).values(log_index=index))

        await self.db.transact_async(_tx)
        return int(index)

    def _check_device_keys(self, keys: DeviceKeys) -> None:
        parse_ed25519_key(keys.ed25519)
        check_curve25519_key(keys.curve25519)
        verify_device_keys(keys)

    def _insert_device(
        self,
        conn: Connection,
        account_id: int,
        keys: DeviceKeys,
        approval: DeviceApproval | None,
        created: int,
    ) -> int:
        return inserted_id(
            conn.execute(
                insert(devices).values(
                    account_id=account_id,
                    device_id=keys.device_id,
                    ed25519=keys.ed25519,
                    curve25519=keys.curve25519,
                    signature=keys.signature,
                    approver_device_id=approval.approver_device_id if approval else None,
                    approval_signature=approval.signature if approval else None,
                    created_at=created,
                )
            )
        )

    def _account_id(self, conn: Connection, name: str) -> int:
        row = conn.execute(select(accounts.c.id).where(accounts.c.name == name)).first()
        if row is None:
            raise NotFound()
        return int(row.id)

    def _device_rows(self, conn: Connection, account_names: Iterable[str]) -> list[DeviceRecord]:
        rows = conn.execute(
            select(devices, accounts.c.name)
            .join(accounts, accounts.c.id == devices.c.account_id)
            .where(accounts.c.name.in_(sorted(set(account_names))))
            .where(_ACTIVE_DEVICE)
            .order_by(devices.c.created_at, devices.c.id)
        ).all()
        return [_device_record(row) for row in rows]

    async def device_list(self, account: str) -> DeviceList:
        """Step 6: the account's devices, each with an inclusion proof in the transparency log
        at the size of the signed checkpoint that comes with the list."""

        def _rd(conn: Connection) -> Any:
            self._account_id(conn, account)
            return self._device_rows(conn, [account])

        records: list[DeviceRecord] = await self.db.read_async(_rd)

        def _prove() -> DeviceList:
            note = self.log.checkpoint()
            size = int(note.split("\n", 2)[1])
            proven = [
                r.model_copy(
                    update={
                        "inclusion_proof": [
                            b64encode(h)
                            for h in self.log.store.inclusion_proof(int(r.log_index or 0), size)
                        ]
                    }
                )
                for r in records
            ]
            return DeviceList(account=account, devices=proven, checkpoint=note)

        result: DeviceList = await to_thread.run_sync(_prove)
        return result

    # --- authentication ---------------------------------------------------------------------

    async def issue_challenge(self, account: str, device_id: str) -> Challenge:
        """Step 4: a single-use random challenge for one device."""
        challenge = b64encode(secrets.token_bytes(32))
        expires = now_ms(self.clock) + CHALLENGE_TTL_MS

        def _tx(conn: Connection) -> Any:
            device_pk = self._device_pk(conn, account, device_id)
            if device_pk is None:
                raise NotFound()
            conn.execute(
                delete(auth_challenges).where(auth_challenges.c.expires_at < now_ms(self.clock))
            )
            conn.execute(
                insert(auth_challenges).values(
                    challenge_hash=_hash_secret(challenge), device_pk=device_pk, expires_at=expires
                )
            )

        await self.db.transact_async(_tx)
        return Challenge(challenge=challenge, expires_at=expires)

    def _device_pk(self, conn: Connection, account: str, device_id: str) -> int | None:
        row = conn.execute(
            select(devices.c.id)
            .join(accounts, accounts.c.id == devices.c.account_id)
            .where(accounts.c.name == account, devices.c.device_id == device_id)
            .where(_ACTIVE_DEVICE)
        ).first()
        return None if row is None else int(row.id)

    async def issue_token(
        self, account: str, device_id: str, challenge: str, signature: str
    ) -> Token:
        """Step 4: exchange a signed challenge for a bearer token (stored only as a hash)."""

        def _tx(conn: Connection) -> Any:
            row = conn.execute(
                select(devices.c.id, devices.c.ed25519, auth_challenges.c.expires_at)
                .join(auth_challenges, auth_challenges.c.device_pk == devices.c.id)
                .join(accounts, accounts.c.id == devices.c.account_id)
                .where(auth_challenges.c.challenge_hash == _hash_secret(challenge))
                .where(accounts.c.name == account, devices.c.device_id == device_id)
                .where(_ACTIVE_DEVICE)
            ).first()
            if row is None or row.expires_at < now_ms(self.clock):
                raise AuthenticationError("unknown or expired challenge")
            conn.execute(
                delete(auth_challenges).where(
                    auth_challenges.c.challenge_hash == _hash_secret(challenge)
                )
            )
            try:
                verify_ed25519(row.ed25519, auth_payload(account, device_id, challenge), signature)
            except (VerificationError, InvalidInput):
                raise AuthenticationError("bad challenge signature") from None
            token = secrets.token_urlsafe(32)
            expires = now_ms(self.clock) + TOKEN_TTL_MS
            conn.execute(delete(auth_tokens).where(auth_tokens.c.expires_at < now_ms(self.clock)))
            conn.execute(
                insert(auth_tokens).values(
                    token_hash=_hash_secret(token), device_pk=row.id, expires_at=expires
                )
            )
            return Token(token=token, expires_at=expires)

        token: Token = await self.db.transact_async(_tx)
        return token

    async def authenticate(self, token: str) -> AuthedDevice:
        """The device behind a bearer token.

        Answers are cached for AUTH_CACHE_TTL_S (keyed by the token's hash), so a token revoked
        or an account suspended elsewhere takes at most that long to stop working here.
        """
        if not token or len(token) > 128:
            raise AuthenticationError()
        key = _hash_secret(token)
        cached = self._auth_cache.get(key)
        now = self.clock.monotonic()
        if cached is not None and cached[1] > now and cached[2] > now_ms(self.clock):
            return cached[0]

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(
                    devices.c.id,
                    devices.c.device_id,
                    devices.c.account_id,
                    accounts.c.name,
                    accounts.c.suspended,
                    auth_tokens.c.expires_at,
                )
                .join(auth_tokens, auth_tokens.c.device_pk == devices.c.id)
                .join(accounts, accounts.c.id == devices.c.account_id)
                .where(auth_tokens.c.token_hash == _hash_secret(token))
                .where(_ACTIVE_DEVICE)
            ).first()

        row = await self.db.read_async(_rd)
        if row is None or row.expires_at < now_ms(self.clock):
            raise AuthenticationError("invalid or expired token")
        device = AuthedDevice(
            device_pk=int(row.id),
            account_id=int(row.account_id),
            account=row.name,
            device_id=row.device_id,
            suspended=bool(row.suspended),
        )
        if len(self._auth_cache) >= AUTH_CACHE_MAX_ENTRIES:
            self._auth_cache.clear()
        self._auth_cache[key] = (device, now + AUTH_CACHE_TTL_S, int(row.expires_at))
        return device

    def forget_cached_auth(self) -> None:
        """Drop cached token answers (after a revocation or suspension in this process)."""
        self._auth_cache.clear()

    # --- linking a new device ---------------------------------------------------------------

    async def create_link(self, req: LinkRequest, *, address: str) -> LinkCreated:
        """Step 2: a new device asks to join an account; nothing happens until approval.
        Limited per client `address` together with new accounts."""
        self._check_device_keys(req.device)
        await self.registration.check(address)
        request_id = base64.b32encode(secrets.token_bytes(10)).decode("ascii")
        expires = now_ms(self.clock) + LINK_TTL_MS

        def _tx(conn: Connection) -> Any:
            account_id = self._account_id(conn, req.device.account)
            conn.execute(
                delete(link_requests).where(link_requests.c.expires_at < now_ms(self.clock))
            )
            if self._device_pk(conn, req.device.account, req.device.device_id) is not None:
                raise Conflict("device id already in use", code="device_exists")
            conn.execute(
                insert(link_requests).values(
                    request_id=request_id,
                    account_id=account_id,
                    device_json=req.device.model_dump_json(),
                    expires_at=expires,
                )
            )

        await self.db.transact_async(_tx)
        return LinkCreated(request_id=request_id, expires_at=expires)

    def _pending_link(self, conn: Connection, dev: AuthedDevice, request_id: str) -> PendingLink:
        row = conn.execute(
            select(link_requests).where(
                link_requests.c.request_id == request_id,
                link_requests.c.account_id == dev.account_id,
            )
        ).first()
        if row is None or row.expires_at < now_ms(self.clock):
            # One answer for all three: the code is the caller's own, so this reveals nothing.
            raise NotFound(
                "this link code is unknown, already used or expired", code="link_code_not_found"
            )
        return PendingLink(
            request_id=row.request_id,
            device=DeviceKeys.model_validate_json(row.device_json),
            expires_at=row.expires_at,
        )

    async def get_link(self, dev: AuthedDevice, request_id: str) -> PendingLink:
        def _rd(conn: Connection) -> Any:
            return self._pending_link(conn, dev, request_id)

        return await self.db.read_async(_rd)

    async def approve_link(
        self, dev: AuthedDevice, request_id: str, req: ApproveLinkRequest
    ) -> DeviceRecord:
        """Step 2: an existing device's signature admits the new device."""
        approval = req.approval
        if approval.approver_device_id != dev.device_id:
            raise AuthorizationError("approval must be signed by the calling device")
        created = now_ms(self.clock)

        def _tx(conn: Connection) -> Any:
            pending = self._pending_link(conn, dev, request_id)
            approver_key = conn.execute(
                select(devices.c.ed25519).where(devices.c.id == dev.device_pk)
            ).scalar_one()
            verify_ed25519(
                approver_key,
                approval_payload(dev.device_id, pending.device),
                approval.signature,
            )
            try:
                device_pk = self._insert_device(
                    conn, dev.account_id, pending.device, approval, created
                )
            except IntegrityError:
                raise Conflict("device id already in use", code="device_exists") from None
            conn.execute(delete(link_requests).where(link_requests.c.request_id == request_id))
            return pending, device_pk

        pending, device_pk = await self.db.transact_async(_tx)
        await self._log_device(device_pk, pending.device, approval, created)
        return DeviceRecord(keys=pending.device, approval=approval, created_at=created)

    async def revoke_device(
        self, dev: AuthedDevice, device_id: str, req: RevokeDeviceRequest
    ) -> None:
        """Remove a device of the caller's account: the caller's signature is checked, the
        revocation is logged (the map refuses to remove the last device), and only then does
        the device stop taking part."""

        def _rd(conn: Connection) -> Any:
            revoker_key = conn.execute(
                select(devices.c.ed25519).where(devices.c.id == dev.device_pk)
            ).scalar_one()
            target = self._device_pk(conn, dev.account, device_id)
            return revoker_key, target

        revoker_key, target = await self.db.read_async(_rd)
        if target is None:
            raise NotFound()
        verify_ed25519(
            revoker_key,
            revocation_payload(dev.account, device_id, dev.device_id, req.revoked_at),
            req.signature,
        )
        entry = DeviceRevocation(
            account=dev.account,
            device_id=device_id,
            revoker_device_id=dev.device_id,
            signature=req.signature,
            revoked_at=req.revoked_at,
        )
        await to_thread.run_sync(self.log.append, [entry.to_bytes()])
        revoked = now_ms(self.clock)

        def _tx(conn: Connection) -> None:
            conn.execute(update(devices).where(devices.c.id == target).values(revoked_at=revoked))
            conn.execute(delete(auth_tokens).where(auth_tokens.c.device_pk == target))

        await self.db.transact_async(_tx)
        self.forget_cached_auth()

    # --- one-time keys ----------------------------------------------------------------------

    async def publish_keys(self, dev: AuthedDevice, req: PublishKeysRequest) -> KeyCount:
        """Step 3: store signed one-time keys and (replacing any earlier one) a fallback key."""

        def _tx(conn: Connection) -> Any:
            keys = self._own_keys(conn, dev)
            for otk in req.one_time_keys:
                check_curve25519_key(otk.key)
                verify_one_time_key(keys, otk, fallback=False)
            if req.fallback_key is not None:
                check_curve25519_key(req.fallback_key.key)
                verify_one_time_key(keys, req.fallback_key, fallback=True)
            count = self._count_keys(conn, dev.device_pk)
            if count + len(req.one_time_keys) > MAX_ONE_TIME_KEYS_STORED:
                raise InvalidInput("too many one-time keys stored", code="too_many_keys")
            existing = set(
                conn.execute(
                    select(one_time_keys.c.key_id).where(
                        one_time_keys.c.device_pk == dev.device_pk,
                        one_time_keys.c.fallback.is_(False),
                    )
                ).scalars()
            )
            fresh = [k for k in req.one_time_keys if k.key_id not in existing]
            if fresh:
                conn.execute(
                    insert(one_time_keys),
                    [
                        {
                            "device_pk": dev.device_pk,
                            "key_id": k.key_id,
                            "key": k.key,
                            "signature": k.signature,
                            "fallback": False,
                        }
                        for k in fresh
                    ],
                )
            if req.fallback_key is not None:
                conn.execute(
                    delete(one_time_keys).where(
                        one_time_keys.c.device_pk == dev.device_pk,
                        one_time_keys.c.fallback.is_(True),
                    )
                )
                conn.execute(
                    insert(one_time_keys).values(
                        device_pk=dev.device_pk,
                        key_id=req.fallback_key.key_id,
                        key=req.fallback_key.key,
                        signature=req.fallback_key.signature,
                        fallback=True,
                    )
                )
            return self._key_count(conn, dev.device_pk)

        count: KeyCount = await self.db.transact_async(_tx)
        return count

    def _own_keys(self, conn: Connection, dev: AuthedDevice) -> DeviceKeys:
        row = conn.execute(
            select(devices, accounts.c.name)
            .join(accounts, accounts.c.id == devices.c.account_id)
            .where(devices.c.id == dev.device_pk)
        ).one()
        return _device_record(row).keys

    def _count_keys(self, conn: Connection, device_pk: int) -> int:
        return int(
            conn.execute(
                select(func.count())
                .select_from(one_time_keys)
                .where(one_time_keys.c.device_pk == device_pk, one_time_keys.c.fallback.is_(False))
            ).scalar_one()
        )

    def _key_count(self, conn: Connection, device_pk: int) -> KeyCount:
        fallback = conn.execute(
            select(func.count())
            .select_from(one_time_keys)
            .where(one_time_keys.c.device_pk == device_pk, one_time_keys.c.fallback.is_(True))
        ).scalar_one()
        return KeyCount(one_time_keys=self._count_keys(conn, device_pk), fallback_key=fallback > 0)

    async def key_count(self, dev: AuthedDevice) -> KeyCount:
        def _rd(conn: Connection) -> Any:
            return self._key_count(conn, dev.device_pk)

        return await self.db.read_async(_rd)

    async def claim_keys(self, dev: AuthedDevice, req: ClaimKeysRequest) -> ClaimedKeys:
        """Step 5: hand out one one-time key per device (the fallback key once they run out)."""
        claimed: list[ClaimedKey] = []

        def _tx(conn: Connection) -> Any:
            for ref in req.devices:
                rows = [
                    r
                    for r in self._device_rows(conn, [ref.account])
                    if r.keys.device_id == ref.device_id
                ]
                if not rows:
                    raise NotFound()
                record = rows[0]
                device_pk = self._device_pk(conn, ref.account, ref.device_id)
                otk = conn.execute(
                    select(one_time_keys)
                    .where(one_time_keys.c.device_pk == device_pk)
                    .order_by(one_time_keys.c.fallback, one_time_keys.c.id)
                    .limit(1)
                ).first()
                if otk is None:
                    claimed.append(ClaimedKey(device=record, one_time_key=None, fallback=False))
                    continue
                if not otk.fallback:
                    conn.execute(delete(one_time_keys).where(one_time_keys.c.id == otk.id))
                claimed.append(
                    ClaimedKey(
                        device=record,
                        one_time_key=OneTimeKey(
                            key_id=otk.key_id, key=otk.key, signature=otk.signature
                        ),
                        fallback=bool(otk.fallback),
                    )
                )

        await self.db.transact_async(_tx)
        return ClaimedKeys(keys=claimed)

    # --- groups -----------------------------------------------------------------------------

    async def put_group(self, dev: AuthedDevice, signed: SignedGroupState) -> SignedGroupState:
        """Step 9: create a group or replace its state with a newer one signed by an admin."""
        state = signed.state
        if signed.signer != DeviceRef(account=dev.account, device_id=dev.device_id):
            raise AuthorizationError("the group state must be signed by the calling device")

        def _tx(conn: Connection) -> Any:
            member_ids = {}
            for name in state.members:
                member_ids[name] = self._account_id(conn, name)
            current = conn.execute(select(groups).where(groups.c.name == state.group)).first()
            previous = (
                None if current is None else GroupState.model_validate_json(current.state_json)
            )
            if previous is None and state.version != 1:
                raise Conflict("a new group starts at version 1", code="group_version")
            if previous is not None and state.version != previous.version + 1:
                raise Conflict("group state is not the next version", code="group_version")
            verify_group_state(
                state, dev.account, self._own_keys(conn, dev), signed.signature, previous
            )
            values = {
                "version": state.version,
                "state_json": state.model_dump_json(),
                "signer_account": dev.account,
                "signer_device_id": dev.device_id,
                "signature": signed.signature,
            }
            if current is None:
                try:
                    group_pk = inserted_id(
                        conn.execute(insert(groups).values(name=state.group, **values))
                    )
                except IntegrityError:
                    raise Conflict("group exists", code="group_exists") from None
            else:
                group_pk = current.id
                conn.execute(update(groups).where(groups.c.id == group_pk).values(**values))
                conn.execute(delete(group_members).where(group_members.c.group_pk == group_pk))
            conn.execute(
                insert(group_members),
                [{"group_pk": group_pk, "account_id": aid} for aid in member_ids.values()],
            )

        await self.db.transact_async(_tx)
        return signed

    async def get_group(self, dev: AuthedDevice, name: str) -> SignedGroupState:
        """A group's signed state, for its members only (others get 404)."""

        def _rd(conn: Connection) -> Any:
            return self._member_group(conn, dev, name)

        row = await self.db.read_async(_rd)
        return SignedGroupState(
            state=GroupState.model_validate_json(row.state_json),
            signer=DeviceRef(account=row.signer_account, device_id=row.signer_device_id),
            signature=row.signature,
        )

    def _member_group(self, conn: Connection, dev: AuthedDevice, name: str) -> Row[Any]:
        row = conn.execute(
            select(groups)
            .join(group_members, group_members.c.group_pk == groups.c.id)
            .where(groups.c.name == name, group_members.c.account_id == dev.account_id)
        ).first()
        if row is None:  # no such group, or not the caller's: one answer
            raise NotFound("no group of that name that you belong to", code=GROUP_NOT_FOUND_CODE)
        return row

    # --- sending and receiving --------------------------------------------------------------

    def _conversation_devices(
        self, conn: Connection, dev: AuthedDevice, to: Conversation
    ) -> dict[tuple[str, str], int]:
        """Every current device of the conversation but the sender's: (account, id) -> pk."""
        if to.account is not None:
            names = {to.account, dev.account}
        else:
            assert to.group is not None
            row = self._member_group(conn, dev, to.group)
            names = set(GroupState.model_validate_json(row.state_json).members)
        rows = conn.execute(_DEVICES_OF_ACCOUNTS, {"names": sorted(names)}).all()
        if to.account is not None and not any(r.name == to.account for r in rows):
            raise NotFound()  # no such account (every account has at least one device)
        found = {(r.name, r.device_id): int(r.id) for r in rows}
        found.pop((dev.account, dev.device_id), None)
        return found

    async def send(self, dev: AuthedDevice, req: SendRequest) -> SendAccepted:
        """Step 8: check the device list is complete, then commit one queue row per device.

        Idempotent on (sender device, message_id): a retried send is not delivered twice. The
        answer is given only after the transaction has committed.
        """
        if dev.suspended:
            raise AuthorizationError("account is suspended", code="account_suspended")
        if req.to.account is not None and req.megolm is not None:
            raise InvalidInput("a direct message has no group ciphertext")
        if req.to.group is not None and req.megolm is None:
            raise InvalidInput("a group message needs a group ciphertext")
        if len(canonical_json(req.extensions)) > MAX_EXTENSIONS_BYTES:
            raise InvalidInput("extensions too large")
        megolm = (
            b64decode(req.megolm, max_bytes=MAX_OLM_BODY_BYTES, what="group ciphertext")
            if req.megolm is not None
            else None
        )
        copies: dict[tuple[str, str], OlmBody] = {}
        for copy in req.copies:
            key = (copy.account, copy.device_id)
            if key in copies:
                raise InvalidInput("two copies for one device")
            copies[key] = copy.olm
        olm_bytes = {
            key: b64decode(c.body, max_bytes=MAX_OLM_BODY_BYTES, what="ciphertext")
            for key, c in copies.items()
        }
        commitment = _franking_commitment(req.extensions)
        recipients = {(r.account, r.device_id) for r in req.recipients}
        if len(recipients) != len(req.recipients):
            raise InvalidInput("duplicate recipient")
        if len(set(req.blobs)) != len(req.blobs):
            raise InvalidInput("a blob named twice")
        if not set(copies) <= recipients:
            raise InvalidInput("a copy for a device that is not a recipient")
        if req.to.account is not None and set(copies) != recipients:
            raise InvalidInput("a direct message needs a copy for every recipient device")
        await self.limiter.check(dev.account)
        for check in self.send_checks:
            await check(dev, req)
        created = now_ms(self.clock)
        # Franking step 3: tag the commitment with who sent it, to whom, and when.
        stamp = await self.franking.stamp_async(
            commitment,
            TagContext(
                sender_account=dev.account,
                sender_device=dev.device_id,
                conversation=conversation_label(req.to.account, req.to.group),
                accepted_at_ms=created,
                message_id=req.message_id,
            ),
        )
        extensions = canonical_json(
            {**req.extensions, FRANKING_EXTENSION: stamp.model_dump()}
        ).decode("utf-8")

        def _tx(conn: Connection) -> Any:
            existing = conn.execute(
                _SENT_BEFORE, {"device_pk": dev.device_pk, "message_id": req.message_id}
            ).first()
            if existing is not None:  # a retry of a send that already committed
                accepted = SendAccepted(
                    message_id=req.message_id,
                    accepted_at=existing.created_at,
                    devices=existing.device_count,
                )
                return accepted, {}, False
            targets = self._conversation_devices(conn, dev, req.to)
            expected = set(targets)
            if expected != recipients:
                raise StaleDevicesError(
                    missing=_refs(expected - recipients), extra=_refs(recipients - expected)
                )
            self._check_queues(conn, list(targets.values()))
            message_pk = inserted_id(
                conn.execute(
                    _INSERT_MESSAGE,
                    {
                        "sender_device_pk": dev.device_pk,
                        "message_id": req.message_id,
                        "to_account": req.to.account,
                        "to_group": req.to.group,
                        "megolm": megolm,
                        "megolm_session_id": req.megolm_session_id,
                        "extensions": extensions,
                        "created_at": created,
                        "device_count": len(recipients),
                    },
                )
            )
            self._hold_blobs(conn, message_pk, req.blobs)
            if targets:
                conn.execute(
                    _INSERT_DELIVERY,
                    [
                        {
                            "device_pk": targets[key],
                            "message_pk": message_pk,
                            "olm_type": copies[key].type if key in copies else None,
                            "olm_body": olm_bytes.get(key),
                        }
                        for key in sorted(recipients)
                    ],
                )
            accepted = SendAccepted(
                message_id=req.message_id, accepted_at=created, devices=len(targets)
            )
            return accepted, targets, True

        accepted, targets, fresh = await self.db.transact_async(_tx)
        self._notify(targets.values())
        if fresh:
            for observe in self.send_observers:
                await observe(dev, req, accepted)
        result: SendAccepted = accepted
        return result

    def _check_queues(self, conn: Connection, device_pks: list[int]) -> None:
        """Backpressure: refuse a message that would grow a full queue (nothing is dropped)."""
        if not device_pks or self.max_queue <= 0:
            return
        full = conn.execute(
            _FULL_QUEUE, {"device_pks": device_pks, "max_queue": self.max_queue}
        ).first()
        if full is not None:
            raise QueueFull(
                "a recipient device has too many undelivered messages; retry later",
                retry_after_s=QUEUE_FULL_RETRY_S,
            )

    async def fetch(
        self, dev: AuthedDevice, *, after: int = 0, limit: int = DEFAULT_FETCH_LIMIT
    ) -> EnvelopeBatch:
        """Step 10: the device's queue, oldest first; nothing is removed until acknowledged."""
        limit = max(1, min(limit, MAX_FETCH_LIMIT))

        def _rd(conn: Connection) -> Any:
            return conn.execute(
                _ENVELOPES_AFTER, {"device_pk": dev.device_pk, "after": after, "limit": limit + 1}
            ).all()

        rows = await self.db.read_async(_rd)
        return EnvelopeBatch(envelopes=[_envelope(r) for r in rows[:limit]], more=len(rows) > limit)

    async def fetch_unsent(
        self, dev: AuthedDevice, in_flight: set[int], *, limit: int = DEFAULT_FETCH_LIMIT
    ) -> EnvelopeBatch:
        """The oldest envelopes of the device's queue that are not `in_flight` (pushed on a
        socket, not yet acknowledged), at most `limit`.

        The queue is read from its start, by id only, and only the envelopes not in flight are
        read in full: on PostgreSQL a row with a lower id can commit after one with a higher id,
        so a cursor by id could pass over it.
        """
        limit = max(1, min(limit, MAX_FETCH_LIMIT))

        def _rd(conn: Connection) -> Any:
            ids = conn.execute(
                _QUEUE_IDS, {"device_pk": dev.device_pk, "limit": len(in_flight) + limit + 1}
            ).scalars()
            unsent = [i for i in ids if i not in in_flight]
            if not unsent:
                return [], False
            wanted = unsent[:limit]
            rows = conn.execute(
                _ENVELOPES_BY_IDS, {"device_pk": dev.device_pk, "ids": wanted}
            ).all()
            return rows, len(unsent) > limit

        rows, more = await self.db.read_async(_rd)
        return EnvelopeBatch(envelopes=[_envelope(r) for r in rows], more=more)

    async def get_envelope(self, dev: AuthedDevice, delivery_id: int) -> Envelope:
        def _rd(conn: Connection) -> Any:
            return conn.execute(
                _ENVELOPE_BY_ID, {"device_pk": dev.device_pk, "delivery_id": delivery_id}
            ).first()

        row = await self.db.read_async(_rd)
        if row is None:
            raise NotFound()
        return _envelope(row)

    def _hold_blobs(self, conn: Connection, message_pk: int, blob_ids: list[str]) -> None:
        """Record the blobs a message carries, so they stay while it is queued (server.blobs
        collects the others). Each must be on the server."""
        if not blob_ids:
            return
        known = set(
            conn.execute(select(blobs.c.blob_id).where(blobs.c.blob_id.in_(blob_ids))).scalars()
        )
        if known != set(blob_ids):
            raise InvalidInput(
                "the message names a blob the server does not hold", code="unknown_blob"
            )
        conn.execute(
            insert(message_blobs), [{"message_pk": message_pk, "blob_id": b} for b in blob_ids]
        )

    async def ack(self, dev: AuthedDevice, ids: Iterable[int]) -> AckResult:
        """Step 12: delete acknowledged rows of the caller's own queue (404 if none matched)."""
        wanted = sorted(set(ids))

        def _tx(conn: Connection) -> Any:
            owned = conn.execute(
                _DELETE_OWN_DELIVERIES, {"device_pk": dev.device_pk, "ids": wanted}
            ).all()
            if not owned:
                raise NotFound()
            message_pks = sorted({r.message_pk for r in owned})
            conn.execute(_DELETE_DELIVERED_MESSAGES, {"message_pks": message_pks})
            return len(owned)

        acked: int = await self.db.transact_async(_tx)
        return AckResult(acked=acked)


def _franking_commitment(extensions: dict[str, Any]) -> bytes:
    raw = extensions.get(FRANKING_EXTENSION)
    if raw is None:
        raise InvalidInput("every message carries a franking commitment", code="franking_required")
    try:
        commitment = FrankingCommitment.model_validate(raw)
    except ValueError:
        raise InvalidInput("malformed franking commitment") from None
    return commitment_bytes(commitment.commitment)


def _refs(pairs: Iterable[tuple[str, str]]) -> list[DeviceRef]:
    return [DeviceRef(account=a, device_id=d) for a, d in sorted(pairs)]


def _device_record(row: Row[Any]) -> DeviceRecord:
    approval = (
        DeviceApproval(approver_device_id=row.approver_device_id, signature=row.approval_signature)
        if row.approver_device_id
        else None
    )
    return DeviceRecord(
        keys=DeviceKeys(
            account=row.name,
            device_id=row.device_id,
            ed25519=row.ed25519,
            curve25519=row.curve25519,
            signature=row.signature,
        ),
        approval=approval,
        created_at=row.created_at,
        log_index=row.log_index,
    )


def _envelope(row: Row[Any]) -> Envelope:
    return Envelope(
        id=row.id,
        message_id=row.message_id,
        sender=DeviceRef(account=row.sender_account, device_id=row.sender_device_id),
        to=Conversation(account=row.to_account, group=row.to_group),
        olm=(
            OlmBody(type=row.olm_type, body=b64encode(row.olm_body))
            if row.olm_body is not None
            else None
        ),
        megolm=b64encode(row.megolm) if row.megolm is not None else None,
        megolm_session_id=row.megolm_session_id,
        received_at=row.created_at,
        extensions=json.loads(row.extensions),
    )
