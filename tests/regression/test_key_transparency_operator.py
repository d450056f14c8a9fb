"""Key transparency against a dishonest operator (docs/protocol/transparency.md §8).

Each test plays the operator for real: it writes the server's database behind the running
server's back (a second genesis, an unapproved device, a rewritten history, each with a map head
that the operator computed to include it), or answers in the server's place (a device left out
of an account's history). The deployment is the real one: a server with a witness, and clients
set up under a deployment manifest that requires the witness's fresh cosignature. The witness
cosigns any append consistent with what it saw, the operator's forged map heads included (each
test checks that it did): the map's rules, not the witness, catch the operator. Clients refuse
with a stable code before they encrypt, the owner is warned, and `accord log audit --manifest`
flags what the log holds. One deployment per module and database kind; names are unique per
test.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from accord.cli.demo_transparency import forge_registration, operator_appends, state_with_device
from accord.client.client import AccordClient
from accord.errors import VerificationError
from accord.primitives.olm import DeviceAccount
from accord.protocols.key_transparency import (
    AccountState,
    LoggedDevice,
    next_history,
)
from accord.protocols.manifest import verify_manifest
from accord.protocols.translog.note import parse_vkey
from accord.protocols.translog.verify import LogTrustPolicy, verify_checkpoint_note
from accord.server.process import ServerProcess
from accord.storage.db import make_engine, sqlite_url
from accord.storage.translog import kt_versions
from accord_testing import TEST_KDF_COST, Cli, TestClock, make_manifest, start_server
from integration.lawful_access_world import start_witness, witnessed_log

PASS = "test passphrase"


@dataclass(frozen=True)
class Deployment:
    """A server with a witness, and the manifest its clients are set up with."""

    server: ServerProcess
    manifest: str
    manifest_file: Path
    clock: TestClock

    def create_account(self, home: Path, name: str, **kw: Any) -> AccordClient:
        return AccordClient.create_account(
            home, self.server.url, name, PASS, kdf_cost=TEST_KDF_COST, manifest=self.manifest, **kw
        )

    def start_link(self, home: Path, account: str) -> tuple[AccordClient, str]:
        return AccordClient.start_link(
            home, self.server.url, account, PASS, kdf_cost=TEST_KDF_COST, manifest=self.manifest
        )

    @contextlib.contextmanager
    def linked(self, home: Path, account: str, approver: AccordClient) -> Iterator[AccordClient]:
        """A new device of `account`, approved by `approver` and active (closed afterwards)."""
        device, code = self.start_link(home, account)
        try:
            approver.approve_device(code)
            device.receive()
            yield device
        finally:
            device.close()

    def cosigned_size(self) -> int:
        """The size of the server's current checkpoint, which must verify under the manifest:
        the log's key and a quorum of the witness's cosignatures."""
        m = verify_manifest(self.manifest)
        policy = LogTrustPolicy(
            origin=m.log_origin,
            log_verifiers=(parse_vkey(m.log_vkey),),
            witness_verifiers=m.witness_verifiers(),
            witness_quorum=m.witness_quorum,
        )
        note = httpx.get(f"{self.server.url}/v1/log/checkpoint").text
        return verify_checkpoint_note(note, policy).checkpoint.size

    def audit(self, root: Path) -> tuple[int, dict[str, Any]]:
        """`accord log audit --manifest --json` by an auditor whose home is under `root`."""
        result = Cli(root / "auditor", env=self.clock.env).run(
            "log", "audit", "--server", self.server.url, "--manifest", str(self.manifest_file),
            "--json", check=False,
        )  # fmt: skip
        return result.returncode, json.loads(result.stdout)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def deployment(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_clock: TestClock,
) -> Iterator[Deployment]:
    """One server and witness per database kind, shared by the module (its own, not the
    conftest's `server`: it runs with `--witness` and a log key the manifest names)."""
    db = None if request.param == "sqlite" else str(request.getfixturevalue("module_pg_url"))
    root = tmp_path_factory.mktemp(f"kt-operator-{request.param}")
    w = witnessed_log(root)
    manifest = make_manifest(w.log_vkey, [w.witness_vkey])
    (root / "deployment.manifest").write_text(manifest)
    witness = start_witness(root, w.witness_key, w.log_vkey, w.port, module_clock)
    try:
        server = start_server(w.data, clock=module_clock, db_url=db, extra_args=w.server_args)
        try:
            yield Deployment(server, manifest, root / "deployment.manifest", module_clock)
        finally:
            server.stop()
    finally:
        witness.kill()
        witness.wait()


@pytest.fixture
def accounts(deployment: Deployment, tmp_path: Path, unique: Callable[[str], str]) -> Iterator[Any]:
    """alice and bob (bob with a phone and an approved laptop); alice has sent to bob once,
    so she has pinned bob's history."""
    alice = deployment.create_account(tmp_path / "a", unique("alice"))
    bob = deployment.create_account(tmp_path / "b", unique("bob"))
    laptop, code = deployment.start_link(tmp_path / "b2", bob.account_name)
    bob.approve_device(code)
    laptop.receive()  # the laptop becomes active and publishes its one-time keys
    alice.send(bob.account_name, "hello")
    assert [m.text for m in bob.receive().messages] == ["hello"]
    try:
        yield alice, bob, laptop
    finally:
        for c in (alice, bob, laptop):
            c.close()


def _db(d: Deployment) -> str:
    return str(d.server.db_url or sqlite_url(d.server.data_dir))


def _ghost_id() -> str:
    return "GHOST" + secrets.token_hex(4).upper()


def _refused_warned_and_flagged(
    d: Deployment,
    alice: AccordClient,
    bob: AccordClient,
    root: Path,
    *,
    index: int,
    refusal: str,
    warning: str,
    finding: str,
) -> list[str]:
    """What each forgery below meets. The operator's entry and its map head (`index`,
    `index + 1`) are in a checkpoint the witness cosigned (what a client under the manifest
    accepts); alice, who pinned bob's history, refuses to encrypt (`refusal`); bob is warned (a
    notice containing `warning`); the audit exits 1 and flags entry `index` (`finding`), and
    nothing against the manifest. Returns the audit's findings."""
    assert d.cosigned_size() >= index + 2
    with pytest.raises(VerificationError) as caught:
        alice.send(bob.account_name, "must not reach a ghost")
    assert caught.value.code == refusal
    assert any(warning in n for n in bob.receive().notices)
    code, report = d.audit(root)
    assert code == 1
    findings: list[str] = report["findings"]
    assert any(f.startswith(f"entry {index}: {finding}") for f in findings)
    assert all(f.startswith("entry ") for f in findings)
    return findings


def test_a_second_genesis_device_is_refused_warned_and_flagged(
    deployment: Deployment, accounts: Any, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    alice, bob, _laptop = accounts
    entry = forge_registration(bob.account_name, _ghost_id(), approver=None)
    index = operator_appends(_db(deployment), entry, state_with_device(entry))
    # alice has bob's history pinned: the new change is a second genesis. The audit flags the
    # entry and the map head that includes it.
    findings = _refused_warned_and_flagged(
        deployment, alice, bob, tmp_path, index=index, refusal="kt_second_genesis",
        warning="second genesis", finding=f"kt_second_genesis: {bob.account_name}",
    )  # fmt: skip
    assert any(f.startswith(f"entry {index + 1}: map_head_mismatch") for f in findings)
    # carol sees bob for the first time and replays his whole history: refused too.
    carol = deployment.create_account(tmp_path / "c", unique("carol"))
    try:
        with pytest.raises(VerificationError) as caught:
            carol.send(bob.account_name, "nor this")
        assert caught.value.code == "kt_second_genesis"
    finally:
        carol.close()


def test_a_device_the_owner_never_approved_is_refused_warned_and_flagged(
    deployment: Deployment, accounts: Any, tmp_path: Path
) -> None:
    alice, bob, _laptop = accounts
    # "Approved" by bob's phone id, but signed with a key the operator holds.
    entry = forge_registration(
        bob.account_name, _ghost_id(), approver=(bob.device_id, DeviceAccount())
    )
    index = operator_appends(_db(deployment), entry, state_with_device(entry))
    _refused_warned_and_flagged(
        deployment, alice, bob, tmp_path, index=index, refusal="kt_unapproved_device",
        warning="approval signature", finding="kt_unapproved_device",
    )  # fmt: skip


def test_a_rewritten_history_is_refused_by_everyone_who_saw_the_old_one(
    deployment: Deployment, accounts: Any, tmp_path: Path
) -> None:
    """The operator replaces bob's whole history with a fresh genesis of a device it holds.
    alice asks for bob's changes after the version she pinned: there are none (the operator
    hid them), and the map no longer holds the state she saw."""
    alice, bob, _laptop = accounts
    entry = forge_registration(bob.account_name, _ghost_id(), approver=None)

    def fresh(_old: AccountState | None, index: int) -> AccountState:
        device = LoggedDevice(
            entry.device_id, entry.ed25519, entry.curve25519, entry.signature, index
        )
        return AccountState(
            bob.account_name, 1, index, next_history(bytes(32), index, entry.to_bytes()), (device,)
        )

    engine: Engine = make_engine(_db(deployment))
    try:  # the operator hides the old versions, then logs the new genesis
        with engine.begin() as conn:
            conn.execute(kt_versions.delete().where(kt_versions.c.account == bob.account_name))
    finally:
        engine.dispose()
    index = operator_appends(_db(deployment), entry, fresh)
    _refused_warned_and_flagged(
        deployment, alice, bob, tmp_path, index=index, refusal="history_rewritten",
        warning="did not verify", finding="kt_second_genesis",
    )  # fmt: skip


class _Doctor(httpx.BaseTransport):
    """The operator answering in the server's place: it edits the transparency answer for one
    account (`edit` takes the JSON body and changes it in place)."""

    def __init__(self, account: str, edit: Callable[[dict[str, Any]], None]) -> None:
        self.account = account
        self.edit = edit
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if not request.url.path.endswith(f"/accounts/{self.account}/transparency"):
            return response
        response.read()
        body = json.loads(response.content)
        self.edit(body)
        return httpx.Response(response.status_code, json=body)


def _leave_out_the_last_change(body: dict[str, Any]) -> None:
    body["changes"] = body["changes"][:-1]


def test_a_device_list_with_a_logged_device_left_out_is_refused(
    deployment: Deployment, accounts: Any, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    _alice, bob, laptop = accounts
    carol = deployment.create_account(
        tmp_path / "c",
        unique("carol"),
        transport=_Doctor(bob.account_name, _leave_out_the_last_change),
    )
    try:
        with pytest.raises(VerificationError) as caught:
            carol.send(bob.account_name, "to both devices or none")
        assert caught.value.code == "incomplete_device_list"
        assert carol.store.pinned_devices(bob.account_name) == []
    finally:
        carol.close()
    assert all(m.sender != unique("carol") for m in laptop.receive().messages)


def _map_head_not_last(body: dict[str, Any]) -> None:
    body["map_head"]["index"] -= 1  # an older entry offered as the map head


def _claim_absent(body: dict[str, Any]) -> None:
    body["changes"] = []  # no history, and the search turned into "no such account"
    body["search"].update(result="non_inclusion_parent", leaf_key=None, leaf_commitment=None)


@pytest.mark.parametrize(
    ("edit", "code"),
    [(_map_head_not_last, "missing_map_head"), (_claim_absent, "map_proof_invalid")],
)
def test_a_doctored_map_head_or_search_proof_is_refused(
    deployment: Deployment,
    accounts: Any,
    tmp_path: Path,
    unique: Callable[[str], str],
    edit: Callable[[dict[str, Any]], None],
    code: str,
) -> None:
    """A map head that is not the checkpoint's last leaf, or bob's search proof turned into a
    non-inclusion (the operator hiding his account): carol refuses before she encrypts."""
    _alice, bob, _laptop = accounts
    carol = deployment.create_account(
        tmp_path / "c", unique("carol"), transport=_Doctor(bob.account_name, edit)
    )
    try:
        with pytest.raises(VerificationError) as caught:
            carol.send(bob.account_name, "only to a proven set")
        assert caught.value.code == code
        assert carol.store.pinned_devices(bob.account_name) == []
    finally:
        carol.close()


def test_an_account_that_does_not_exist_is_proven_absent(
    deployment: Deployment, accounts: Any, unique: Callable[[str], str]
) -> None:
    alice, _bob, _laptop = accounts
    with pytest.raises(Exception) as caught:
        alice.send(unique("nobody"), "hello?")
    assert getattr(caught.value, "code", None) == "not_found"
    assert "transparency map" in str(caught.value)


def test_a_contact_gaining_a_device_is_told_before_the_next_message(
    deployment: Deployment, accounts: Any, tmp_path: Path
) -> None:
    alice, bob, laptop = accounts
    with deployment.linked(tmp_path / "b3", bob.account_name, laptop) as tablet:
        with pytest.raises(VerificationError) as caught:  # told, and nothing sent
            alice.send(bob.account_name, "after the change")
        assert caught.value.code == "contact_changed"
        assert bob.account_name in caught.value.message and "safety code" in caught.value.message
        alice.send(bob.account_name, "after the change")  # told once: now it goes
        assert [m.text for m in tablet.receive().messages] == ["after the change"]


def test_a_verified_contact_stays_blocked_until_verified_again(
    deployment: Deployment, accounts: Any, tmp_path: Path
) -> None:
    alice, bob, laptop = accounts
    code_a, verified = alice.verify_contact(bob.account_name, confirm=True)
    code_b, _ = bob.verify_contact(alice.account_name)
    assert verified and code_a == code_b and len(code_a.split()) == 6
    with deployment.linked(tmp_path / "b3", bob.account_name, laptop) as tablet:
        for _ in range(2):
            with pytest.raises(VerificationError) as caught:
                alice.send(bob.account_name, "blocked")
            assert caught.value.code == "contact_changed"
        new_code, verified = alice.verify_contact(bob.account_name)
        assert not verified and new_code != code_a
        alice.verify_contact(bob.account_name, confirm=True)
        alice.send(bob.account_name, "verified again")
        assert [m.text for m in tablet.receive().messages] == ["verified again"]


def test_a_removed_device_leaves_every_set_and_the_last_one_stays(
    deployment: Deployment, accounts: Any, tmp_path: Path
) -> None:
    alice, bob, laptop = accounts
    bob.remove_device(laptop.device_id)
    assert [d.device_id for d in bob.devices()[0]] == [bob.device_id]
    # A removal is not an addition: alice is not stopped, and only the phone gets the message.
    alice.send(bob.account_name, "to the phone only")
    assert [m.text for m in bob.receive().messages] == ["to the phone only"]
    with pytest.raises(Exception) as caught:  # the laptop's token died with it
        laptop.receive()
    assert getattr(caught.value, "code", None) in ("unauthenticated", "not_found")
    with pytest.raises(VerificationError) as last:
        bob.remove_device(bob.device_id)
    assert last.value.code == "kt_last_device"
    _code, report = deployment.audit(tmp_path)
    assert not any(bob.account_name in f for f in report["findings"])
