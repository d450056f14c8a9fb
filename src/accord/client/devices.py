"""Device lists (step 6): fetched from the server, verified against the transparency log, and
pinned; this account's own list is watched for devices its user did not add."""

from __future__ import annotations

from collections.abc import Iterable

from accord.client.context import ClientContext
from accord.client.log_trust import ProofEncoding, decode_proof
from accord.client.store import PinnedDevice
from accord.clock import now_ms
from accord.errors import ProtocolError, VerificationError
from accord.protocols.messaging import registration_entry, verify_device_list
from accord.wire.messaging import DeviceList


class DeviceDirectory:
    """The devices this device encrypts to and accepts messages from."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx

    def refresh(self, accounts: Iterable[str]) -> None:
        """Fetch, verify (signatures, then key transparency) and pin each account's devices. A
        device whose keys changed, or a list without this device for its own account, is
        refused."""
        ctx = self._ctx
        me = ctx.identity
        for account in sorted(set(accounts)):
            listing = ctx.api.call(DeviceList, "GET", f"/v1/accounts/{account}/devices")
            if listing.account != account:
                raise ProtocolError("server answered for another account")
            verified = verify_device_list(account, listing.devices)
            self._verify_logged(listing)
            if account == me.account_name and not any(
                d.device_id == me.device_id for d in verified
            ):
                raise VerificationError("this device is missing from its own account's list")
            ctx.store.replace_devices(
                account,
                [PinnedDevice(account, d.device_id, d.ed25519, d.curve25519) for d in verified],
                now_ms(ctx.clock),
            )

    def _verify_logged(self, listing: DeviceList) -> None:
        """Key transparency step V4: every device is in the log, as the server lists it."""
        log_trust = self._ctx.log_trust
        checkpoint = log_trust.accept_checkpoint(listing.checkpoint)
        for record in listing.devices:
            keys = record.keys
            entry = registration_entry(keys, record.approval, record.created_at)
            if record.log_index is None:
                raise VerificationError(f"device {keys.device_id} of {keys.account} is not logged")
            proof = decode_proof(record.inclusion_proof, ProofEncoding.BASE64)
            try:
                log_trust.verify_inclusion(entry.to_bytes(), record.log_index, checkpoint, proof)
            except VerificationError:
                raise VerificationError(
                    f"device {keys.device_id} of {keys.account} is not in the transparency log",
                    code="unlogged_device",
                ) from None

    def others(self, accounts: Iterable[str], *, refresh: bool = False) -> list[PinnedDevice]:
        """Every device of `accounts` but this one; lists not pinned yet (or all, if `refresh`)
        are fetched first."""
        names = sorted(set(accounts))
        store = self._ctx.store
        stale = [a for a in names if refresh or not store.pinned_devices(a)]
        if stale:
            self.refresh(stale)
        me = (self._ctx.identity.account_name, self._ctx.identity.device_id)
        return [d for a in names for d in store.pinned_devices(a) if (d.account, d.device_id) != me]

    def pinned(self, account: str, device_id: str) -> PinnedDevice | None:
        """A device as pinned; an unknown one is looked for in a fresh list of its account."""
        store = self._ctx.store
        device = store.pinned_device(account, device_id)
        if device is None:
            self.refresh([account])
            device = store.pinned_device(account, device_id)
        return device

    def own(self) -> list[PinnedDevice]:
        return self._ctx.store.pinned_devices(self._ctx.identity.account_name)

    def remember_own(self, device_ids: Iterable[str]) -> None:
        """Devices of this account that its user added (here or on another device)."""
        self._ctx.store.add_known_devices(device_ids)

    def check_own(self) -> list[str]:
        """Monitor this account: every device in its (logged, verified) list that this device
        did not add or see before is reported once to the user."""
        store = self._ctx.store
        account = self._ctx.identity.account_name
        with store.transaction():
            self.refresh([account])
            current = self.own()
            known = store.known_devices()
            notices = [
                f"a new device {d.device_id} was added to your account {account}; "
                "if you did not add it, someone else may be reading your messages"
                for d in current
                if d.device_id not in known
            ]
            self.remember_own(d.device_id for d in current)
        return notices
