"""This device's identity: the account and device id it was set up for, and its Olm keys."""

from __future__ import annotations

from accord.client.store import HomeDevice, LocalStore
from accord.errors import ConfigurationError
from accord.primitives.olm import DeviceAccount
from accord.protocols.messaging import device_keys_payload
from accord.wire.messaging import DeviceKeys, DeviceRef


class DeviceIdentity:
    """The device's names and long-term keys, as kept (sealed) in its store.

    The Olm account is unpickled once and kept in memory; `save` writes it back, and `reload`
    drops changes that a rolled-back transaction did not keep.
    """

    def __init__(self, store: LocalStore) -> None:
        self._store = store
        self._device: HomeDevice | None = None
        self._account: DeviceAccount | None = None

    @property
    def account_name(self) -> str:
        return self._home_device().account

    @property
    def device_id(self) -> str:
        return self._home_device().device_id

    @property
    def ref(self) -> DeviceRef:
        return DeviceRef(account=self.account_name, device_id=self.device_id)

    def _home_device(self) -> HomeDevice:
        if self._device is None:
            self._device = self._store.home_device()
        if self._device is None:
            raise ConfigurationError(f"no account configured in {self._store.home}")
        return self._device

    @property
    def olm(self) -> DeviceAccount:
        if self._account is None:
            pickle = self._store.olm_account_pickle()
            if pickle is None:
                raise ConfigurationError("no device keys in this home")
            self._account = DeviceAccount.from_pickle(pickle, self._store.pickle_key)
        return self._account

    def create_keys(self) -> None:
        """Make this device's long-term keys (once, when the home is set up)."""
        self._account = DeviceAccount()
        self.save()

    def save(self) -> None:
        self._store.set_olm_account_pickle(self.olm.pickle(self._store.pickle_key))

    def reload(self) -> None:
        """Forget the in-memory keys; the next use reads what the store holds."""
        self._account = None

    def sign(self, payload: bytes) -> str:
        return self.olm.sign(payload)

    def device_keys(self) -> DeviceKeys:
        """This device's public keys, signed by itself (as it registers them)."""
        olm = self.olm
        account, device_id = self.account_name, self.device_id
        ed, curve = olm.ed25519, olm.curve25519
        signature = olm.sign(device_keys_payload(account, device_id, ed, curve))
        return DeviceKeys(
            account=account, device_id=device_id, ed25519=ed, curve25519=curve, signature=signature
        )
