from __future__ import annotations

import os

import pytest

from accord.errors import DecryptionError, InvalidInput
from accord.primitives.olm import DeviceAccount, MegolmInbound, MegolmOutbound, OlmCiphertext
from accord.primitives.storage_crypto import KdfParams, LocalVault, derive_root_key


def _pair():  # type: ignore[no-untyped-def]
    a, b = DeviceAccount(), DeviceAccount()
    otk = next(iter(b.generate_one_time_keys(1).values()))
    b.mark_keys_as_published()
    s = a.create_outbound_session(b.curve25519, otk)
    first = s.encrypt(b"hello")
    r, plaintext = b.create_inbound_session(a.curve25519, first)
    assert plaintext == b"hello"
    return a, b, s, r, first


def test_olm_round_trip_and_replay() -> None:
    _a, b, s, r, first = _pair()
    assert s.decrypt(r.encrypt(b"back")) == b"back"
    with pytest.raises(DecryptionError):
        r.decrypt(first)  # message key already used
    msg = s.encrypt(b"x")
    tampered = OlmCiphertext(msg.message_type, msg.body[:-1] + bytes([msg.body[-1] ^ 1]))
    with pytest.raises(DecryptionError):
        r.decrypt(tampered)
    with pytest.raises(InvalidInput):
        OlmCiphertext(7, b"")
    with pytest.raises(DecryptionError):
        b.create_inbound_session(_a.curve25519, OlmCiphertext(0, b"garbage"))


def test_pickles_need_the_key() -> None:
    a = DeviceAccount()
    key = os.urandom(32)
    again = DeviceAccount.from_pickle(a.pickle(key), key)
    assert again.ed25519 == a.ed25519
    with pytest.raises(DecryptionError):
        DeviceAccount.from_pickle(a.pickle(key), os.urandom(32))


def test_megolm_new_session_is_unreadable_with_old_key() -> None:
    old = MegolmOutbound()
    inbound = MegolmInbound.from_session_key(old.session_key())
    assert inbound.decrypt(old.encrypt(b"one")).plaintext == b"one"
    new = MegolmOutbound()
    with pytest.raises(DecryptionError):
        inbound.decrypt(new.encrypt(b"after rotation"))


def test_vault_binds_labels_and_keys() -> None:
    params = KdfParams(salt=b"s" * 16, time_cost=1, memory_kib=8, parallelism=1)
    vault = LocalVault(derive_root_key("pw", params))
    sealed = vault.seal("message:a", b"secret")
    assert vault.open("message:a", sealed) == b"secret"
    with pytest.raises(DecryptionError):
        vault.open("message:b", sealed)
    other = LocalVault(derive_root_key("other", params))
    with pytest.raises(DecryptionError):
        other.open("message:a", sealed)
    with pytest.raises(InvalidInput):
        derive_root_key("", params)
