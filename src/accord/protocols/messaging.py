"""Pure logic of the messaging protocol: what gets signed, how payloads are framed and checked.

Step numbers refer to docs/protocol/messaging.md. The functions read the fields of the wire
models in `accord.wire.messaging` (`DeviceKeys`, `DeviceApproval`, `DeviceRecord`, `OneTimeKey`,
`GroupState`) through the structural types below, so that this layer needs no pydantic; the
wire layer parses payloads into its models (`accord.wire.messaging.decode_payload`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from accord.errors import DecryptionError, InvalidInput, VerificationError
from accord.primitives.encoding import canonical_json
from accord.primitives.padding import pad, unpad
from accord.primitives.signing import verify_ed25519
from accord.protocols.translog.entries import DeviceRegistration

MAX_CONTENT_BYTES = 128 * 1024


class DeviceIdentity(Protocol):
    """A device's keys, self-signed (step 1); the wire's `DeviceKeys`."""

    @property
    def account(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def ed25519(self) -> str: ...
    @property
    def curve25519(self) -> str: ...
    @property
    def signature(self) -> str: ...


class DeviceApprovalSignature(Protocol):
    """An existing device's signature admitting a new one (step 2); the wire's `DeviceApproval`."""

    @property
    def approver_device_id(self) -> str: ...
    @property
    def signature(self) -> str: ...


IdentityT_co = TypeVar("IdentityT_co", bound=DeviceIdentity, covariant=True)
IdentityT = TypeVar("IdentityT", bound=DeviceIdentity)


class DeviceListEntry(Protocol[IdentityT_co]):
    """One device of an account's list as the server presents it; the wire's `DeviceRecord`."""

    @property
    def keys(self) -> IdentityT_co: ...
    @property
    def approval(self) -> DeviceApprovalSignature | None: ...
    @property
    def created_at(self) -> int: ...


class SignedOneTimeKey(Protocol):
    """A published one-time or fallback key (step 3); the wire's `OneTimeKey`."""

    @property
    def key_id(self) -> str: ...
    @property
    def key(self) -> str: ...
    @property
    def signature(self) -> str: ...


class GroupMembership(Protocol):
    """One version of a group's membership (step 9); the wire's `GroupState`."""

    @property
    def v(self) -> int: ...
    @property
    def group(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def admins(self) -> Sequence[str]: ...
    @property
    def members(self) -> Sequence[str]: ...


def device_keys_payload(account: str, device_id: str, ed25519: str, curve25519: str) -> bytes:
    """Step 1: the bytes a device signs to bind its two keys to its account and id."""
    return canonical_json(
        {
            "purpose": "accord-device-keys-v1",
            "account": account,
            "device_id": device_id,
            "ed25519": ed25519,
            "curve25519": curve25519,
        }
    )


def approval_payload(approver_device_id: str, device: DeviceIdentity) -> bytes:
    """Step 2: the bytes an existing device signs to admit a new device to its account."""
    return canonical_json(
        {
            "purpose": "accord-device-approval-v1",
            "account": device.account,
            "approver_device_id": approver_device_id,
            "device_id": device.device_id,
            "ed25519": device.ed25519,
            "curve25519": device.curve25519,
        }
    )


def one_time_key_payload(
    account: str, device_id: str, key: SignedOneTimeKey, fallback: bool
) -> bytes:
    """Step 3: the bytes a device signs for each one-time or fallback key it publishes."""
    return canonical_json(
        {
            "purpose": "accord-one-time-key-v1",
            "account": account,
            "device_id": device_id,
            "key_id": key.key_id,
            "key": key.key,
            "fallback": fallback,
        }
    )


def auth_payload(account: str, device_id: str, challenge: str) -> bytes:
    """Step 4: the bytes a device signs to answer the server's login challenge."""
    return canonical_json(
        {
            "purpose": "accord-auth-v1",
            "account": account,
            "device_id": device_id,
            "challenge": challenge,
        }
    )


def group_state_payload(state: GroupMembership) -> bytes:
    """Step 9: the bytes an admin device signs for each version of a group's membership."""
    return canonical_json(
        {
            "purpose": "accord-group-state-v1",
            "v": state.v,
            "group": state.group,
            "version": state.version,
            "admins": list(state.admins),
            "members": list(state.members),
        }
    )


def registration_entry(
    keys: DeviceIdentity, approval: DeviceApprovalSignature | None, registered_at: int
) -> DeviceRegistration:
    """The transparency-log entry of a device: what the server appends and clients prove."""
    return DeviceRegistration(
        account=keys.account,
        device_id=keys.device_id,
        ed25519=keys.ed25519,
        curve25519=keys.curve25519,
        signature=keys.signature,
        approver_device_id=approval.approver_device_id if approval else None,
        approval_signature=approval.signature if approval else None,
        registered_at=registered_at,
    )


def verify_device_keys(keys: DeviceIdentity) -> None:
    verify_ed25519(
        keys.ed25519,
        device_keys_payload(keys.account, keys.device_id, keys.ed25519, keys.curve25519),
        keys.signature,
    )


def verify_one_time_key(device: DeviceIdentity, key: SignedOneTimeKey, fallback: bool) -> None:
    verify_ed25519(
        device.ed25519,
        one_time_key_payload(device.account, device.device_id, key, fallback),
        key.signature,
    )


def verify_device_list(
    account: str, records: Sequence[DeviceListEntry[IdentityT]]
) -> list[IdentityT]:
    """Step 6: check an account's device list as the server presents it.

    Every device must be self-signed and belong to `account`. The first device (oldest) founds
    the account; every later device must carry an approval signed by a device listed before it.
    A server can still withhold devices or show a different list to different people; the
    transparency log closes that gap.
    """
    accepted: dict[str, IdentityT] = {}
    for record in sorted(records, key=lambda r: (r.created_at, r.keys.device_id)):
        keys = record.keys
        if keys.account != account or keys.device_id in accepted:
            raise VerificationError("device list is inconsistent")
        verify_device_keys(keys)
        if accepted:
            approval = record.approval
            if approval is None or approval.approver_device_id not in accepted:
                raise VerificationError("a device was added without approval")
            approver = accepted[approval.approver_device_id]
            verify_ed25519(
                approver.ed25519,
                approval_payload(approval.approver_device_id, keys),
                approval.signature,
            )
        accepted[keys.device_id] = keys
    return list(accepted.values())


def verify_group_state(
    state: GroupMembership,
    signer_account: str,
    signer_keys: DeviceIdentity,
    signature: str,
    previous: GroupMembership | None,
) -> None:
    """Step 9: accept a group state only if signed by an admin, never rolling back.

    A device seeing a group for the first time trusts the admins the state itself names (trust on
    first use); after that, only admins of the state it already holds can change it.
    """
    admins = previous.admins if previous is not None else state.admins
    if signer_account not in admins or signer_keys.account != signer_account:
        raise VerificationError("group state not signed by an admin")
    if previous is not None:
        if state.group != previous.group or state.version <= previous.version:
            raise VerificationError("group state rolled back or replaced")
    verify_ed25519(signer_keys.ed25519, group_state_payload(state), signature)


def pad_payload(raw: bytes) -> bytes:
    """Step 7: the canonical bytes of an inner payload, padded to a size bucket for encryption."""
    if len(raw) > MAX_CONTENT_BYTES:
        raise InvalidInput(f"message larger than {MAX_CONTENT_BYTES} bytes")
    return pad(raw)


def unpad_payload(padded: bytes) -> bytes:
    """Step 11: the bytes of a decrypted payload. A bad pad or size is one `DecryptionError`."""
    raw = unpad(padded)
    if len(raw) > MAX_CONTENT_BYTES:
        raise DecryptionError()
    return raw
