"""The local store's typed trust anchors keep the stored forms older homes already hold."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accord.client.store import (
    AuthToken,
    DeviceStatus,
    HomeDevice,
    LocalStore,
    LogAnchors,
    decode_checkpoint,
    encode_checkpoint,
)
from accord.errors import InvalidInput
from accord.primitives.encoding import b64encode
from accord.protocols.translog.note import Checkpoint

ROOT = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path)
    store.initialise("a passphrase")
    yield store
    store.close()


def test_a_new_home_has_no_anchors(store: LocalStore) -> None:
    assert store.home_device() is None and store.device_status() is None
    assert store.log_anchors() is None and store.log_checkpoint() is None
    assert store.known_devices() == frozenset() and store.auth_token() is None


def test_anchors_round_trip_under_their_old_keys(store: LocalStore) -> None:
    store.set_home_device(HomeDevice("http://server.test", "alice", "DEVICE1"))
    store.set_device_status(DeviceStatus.LINKING)
    anchors = LogAnchors("log.test", "log.test+1234+AAAA", ("w1", "w2"), 1)
    store.set_log_anchors(anchors)
    store.set_log_checkpoint(Checkpoint("log.test", 7, ROOT))
    store.add_known_devices(["B", "A"])
    store.add_known_devices(["A", "C"])
    store.set_auth_token(AuthToken("tok", 123))

    assert store.home_device() == HomeDevice("http://server.test", "alice", "DEVICE1")
    assert store.device_status() is DeviceStatus.LINKING
    assert store.log_anchors() == anchors
    assert store.log_checkpoint() == Checkpoint("log.test", 7, ROOT)
    assert store.known_devices() == {"A", "B", "C"}
    assert store.auth_token() == AuthToken("tok", 123)
    assert store.get_meta("account") == "alice" and store.get_meta("status") == "linking"
    assert store.get_meta("log_witnesses") == '["w1", "w2"]'
    assert store.get_meta("log_checkpoint") == f"7 {b64encode(ROOT)}"
    assert store.get_meta("known_devices") == '["A", "B", "C"]'


def test_one_encoding_for_a_stored_checkpoint() -> None:
    checkpoint = Checkpoint("log.test", 12, ROOT)
    assert decode_checkpoint(encode_checkpoint(checkpoint), "log.test") == checkpoint
    for bad in ("", "x AAAA", f"-1 {b64encode(ROOT)}", "3 not-base64", f"3 {b64encode(b'short')}"):
        with pytest.raises(InvalidInput):
            decode_checkpoint(bad, "log.test")
