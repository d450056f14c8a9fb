"""The local store's typed state keeps the stored forms older homes already hold; its trust
anchors (manifest, last checkpoint, pinned devices) are tagged under the store key, and any
change made on disk is refused."""

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
    PinnedDevice,
    decode_checkpoint,
    encode_checkpoint,
)
from accord.errors import InvalidInput, VerificationError
from accord.primitives.encoding import b64encode
from accord.protocols.translog.note import Checkpoint, generate_cosigner, generate_signer
from accord_testing import TEST_KDF_COST, make_manifest

ROOT = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalStore]:
    store = LocalStore(tmp_path)
    store.initialise("a passphrase", TEST_KDF_COST)
    yield store
    store.close()


def test_a_new_home_has_no_anchors(store: LocalStore) -> None:
    assert store.home_device() is None and store.device_status() is None
    assert store.log_anchors() is None and store.log_checkpoint() is None
    assert store.known_devices() == frozenset() and store.auth_token() is None


def test_state_round_trips_under_its_old_keys(store: LocalStore) -> None:
    store.set_home_device(HomeDevice("http://server.test", "alice", "DEVICE1"))
    store.set_device_status(DeviceStatus.LINKING)
    anchors = LogAnchors("log.test", "log.test+1234+AAAA")
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
    assert store.get_meta("log_checkpoint") == f"7 {b64encode(ROOT)}"
    assert store.get_meta("known_devices") == '["A", "B", "C"]'


def test_one_encoding_for_a_stored_checkpoint() -> None:
    checkpoint = Checkpoint("log.test", 12, ROOT)
    assert decode_checkpoint(encode_checkpoint(checkpoint), "log.test") == checkpoint
    for bad in ("", "x AAAA", f"-1 {b64encode(ROOT)}", "3 not-base64", f"3 {b64encode(b'short')}"):
        with pytest.raises(InvalidInput):
            decode_checkpoint(bad, "log.test")


def _manifest_anchors() -> LogAnchors:
    log_vkey = generate_signer("log.test")[1]
    witness_vkey = generate_cosigner("witness.test/w1")[1]
    return LogAnchors.from_manifest(make_manifest(log_vkey, [witness_vkey]))


def test_a_pinned_manifest_round_trips(store: LocalStore) -> None:
    anchors = _manifest_anchors()
    store.set_log_anchors(anchors)
    assert store.log_anchors() == anchors
    assert anchors.manifest is not None and anchors.quorum == 1 == len(anchors.witnesses)


@pytest.mark.parametrize("key", ["trust_anchors", "trust_anchors_tag", "log_checkpoint"])
def test_every_tagged_record_refuses_an_edit_made_on_disk(store: LocalStore, key: str) -> None:
    store.set_log_anchors(_manifest_anchors())
    store.set_log_checkpoint(Checkpoint("log.test", 7, ROOT))
    raw = store.get_meta(key)
    assert raw is not None
    store.set_meta(key, raw.replace("7", "8", 1) if key == "log_checkpoint" else raw[:-3] + '"}')
    with pytest.raises(VerificationError) as caught:
        store.log_anchors() if key != "log_checkpoint" else store.log_checkpoint()
    assert caught.value.code == "anchors_tampered"


def test_a_tag_from_another_record_is_refused(store: LocalStore) -> None:
    """Tags are bound to their record: the checkpoint's tag does not pass for the anchors'."""
    store.set_log_anchors(LogAnchors("log.test", "log.test+1234+AAAA"))
    store.set_log_checkpoint(Checkpoint("log.test", 7, ROOT))
    store.set_meta("trust_anchors", store.get_meta("log_checkpoint") or "")
    store.set_meta("trust_anchors_tag", store.get_meta("log_checkpoint_tag") or "")
    with pytest.raises(VerificationError, match="changed outside accord"):
        store.log_anchors()


def test_a_pinned_device_row_edited_on_disk_is_refused(store: LocalStore) -> None:
    dev = PinnedDevice("bob", "D1", "ed-key", "curve-key")
    store.replace_devices("bob", [dev], now=5)
    assert store.pinned_devices("bob") == [dev]
    store._conn.execute("UPDATE devices SET active = 0")  # hide bob's device from senders
    with pytest.raises(VerificationError) as caught:
        store.pinned_devices("bob")
    assert caught.value.code == "anchors_tampered"
    store._conn.execute("UPDATE devices SET active = 1")  # and back: the row is as tagged
    assert store.pinned_device("bob", "D1") == dev


def test_a_home_pinned_before_manifests_is_told_to_install_one(store: LocalStore) -> None:
    store.set_meta("log_origin", "log.test")
    store.set_meta("log_vkey", "log.test+1234+AAAA")
    with pytest.raises(InvalidInput) as caught:
        store.log_anchors()
    assert caught.value.code == "manifest_required"
