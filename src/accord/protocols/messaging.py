"""Pure logic of the messaging protocol: what gets signed, how payloads are framed and checked.

Step numbers refer to docs/protocol/messaging.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import ValidationError

from accord.errors import DecryptionError, InvalidInput, VerificationError
from accord.primitives.encoding import canonical_json
from accord.primitives.padding import pad, unpad
from accord.primitives.signing import verify_ed25519
from accord.protocols.translog.entries import DeviceRegistration
from accord.wire.common import WireModel
from accord.wire.messaging import (
    Content,
    DeviceApproval,
    DeviceKeys,
    DeviceRecord,
    GroupKeyShare,
    GroupState,
    OneTimeKey,
)

MAX_CONTENT_BYTES = 128 * 1024


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


def approval_payload(approver_device_id: str, device: DeviceKeys) -> bytes:
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


def one_time_key_payload(account: str, device_id: str, key: OneTimeKey, fallback: bool) -> bytes:
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


def group_state_payload(state: GroupState) -> bytes:
    """Step 9: the bytes an admin device signs for each version of a group's membership."""
    return canonical_json({"purpose": "accord-group-state-v1", **state.model_dump(mode="json")})


def registration_entry(
    keys: DeviceKeys, approval: DeviceApproval | None, registered_at: int
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


def verify_device_keys(keys: DeviceKeys) -> None:
    verify_ed25519(
        keys.ed25519,
        device_keys_payload(keys.account, keys.device_id, keys.ed25519, keys.curve25519),
        keys.signature,
    )


def verify_one_time_key(device: DeviceKeys, key: OneTimeKey, fallback: bool) -> None:
    verify_ed25519(
        device.ed25519,
        one_time_key_payload(device.account, device.device_id, key, fallback),
        key.signature,
    )


def verify_device_list(account: str, records: Sequence[DeviceRecord]) -> list[DeviceKeys]:
    """Step 6: check an account's device list as the server presents it.

    Every device must be self-signed and belong to `account`. The first device (oldest) founds
    the account; every later device must carry an approval signed by a device listed before it.
    A server can still withhold devices or show a different list to different people; the
    transparency log closes that gap.
    """
    accepted: dict[str, DeviceKeys] = {}
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
    state: GroupState,
    signer_account: str,
    signer_keys: DeviceKeys,
    signature: str,
    previous: GroupState | None,
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


def encode_payload(model: WireModel) -> bytes:
    """Step 7: canonical bytes of an inner payload, padded to a size bucket before encryption."""
    raw = canonical_json(model.model_dump(mode="json"))
    if len(raw) > MAX_CONTENT_BYTES:
        raise InvalidInput(f"message larger than {MAX_CONTENT_BYTES} bytes")
    return pad(raw)


def decode_payload(padded: bytes) -> Content | GroupKeyShare:
    """Step 11: parse a decrypted payload. Anything malformed is one `DecryptionError`."""
    raw = unpad(padded)
    if len(raw) > MAX_CONTENT_BYTES:
        raise DecryptionError()
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise DecryptionError()
        if data.get("type") == "group_key":
            return GroupKeyShare.model_validate(data)
        return Content.model_validate(data)
    except (ValueError, ValidationError, RecursionError):
        raise DecryptionError() from None
