"""Clients set up with a deployment manifest and a real witness: the whole path (accounts, a
message each way, a linked device), what happens without a manifest, and the operator (or
anyone who can write the client's disk) trying to change the anchors or to serve an old view.

The deployments here are real server and witness processes with a log key the test chose, so
that the manifest can name it before the server starts (docs/protocol/transparency.md,
"Deployment manifest").
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_witnessed_log import _start_witness

from accord.protocols.translog.note import generate_signer
from accord.server.process import ServerProcess
from accord.server.translog import DEFAULT_LOG_ORIGIN, LOG_KEY_FILE
from accord_testing import Cli, CliResult, TestClock, make_manifest, manifest_signer

MAX_AGE_S = 3600
REFRESH_S = 600


@dataclass
class Deployment:
    root: Path
    server: ServerProcess
    witness: subprocess.Popen[bytes]
    witness_url: str
    witness_vkey: str
    log_vkey: str
    manifest_file: Path
    clock: TestClock

    def cli(self, name: str, *, manifest: bool = True) -> Cli:
        env = dict(self.clock.env)
        if manifest:
            env["ACCORD_MANIFEST"] = str(self.manifest_file)
        return Cli(self.root / f"home-{name}", env=env)

    def stop_witness(self) -> None:
        self.witness.send_signal(signal.SIGTERM)
        self.witness.wait(timeout=30)

    def restart_witness(self) -> None:
        port = int(self.witness_url.rsplit(":", 1)[1])
        self.witness = _restart_witness(self.root, self.log_vkey, port, self.clock)


def _restart_witness(
    root: Path, log_vkey: str, port: int, clock: TestClock
) -> subprocess.Popen[bytes]:
    """The same witness (key and state) again on its old port."""
    from lawful_access_world import start_witness

    return start_witness(root, root / "witness.key", log_vkey, port, clock)


def _deploy(root: Path, clock: TestClock) -> Iterator[Deployment]:
    data = root / "server"
    data.mkdir()
    log_skey, log_vkey = generate_signer(DEFAULT_LOG_ORIGIN)
    (data / LOG_KEY_FILE).write_text(log_skey + "\n")
    (data / LOG_KEY_FILE).chmod(0o600)
    witness, url, wvkey = _start_witness(root, log_vkey, clock.env)
    manifest_file = root / "deployment.manifest"
    manifest_file.write_text(
        make_manifest(log_vkey, [wvkey], max_checkpoint_age_s=MAX_AGE_S, signer=manifest_signer())
    )
    server = ServerProcess(
        data,
        extra_args=["--witness", url, "--checkpoint-refresh", str(REFRESH_S)],
        env=clock.env,
    )
    deployment = Deployment(root, server, witness, url, wvkey, log_vkey, manifest_file, clock)
    try:
        server.start()
        yield deployment
    finally:
        server.stop()
        deployment.witness.kill()
        deployment.witness.wait()


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock
) -> Iterator[Deployment]:
    """One deployment (server, witness, manifest) shared by the tests that leave it honest."""
    yield from _deploy(tmp_path_factory.mktemp("deployment"), module_clock)


@pytest.fixture
def own_deployment(tmp_path: Path, clock: TestClock) -> Iterator[Deployment]:
    """A deployment of the test's own, for a test that stops its witness or moves its clock."""
    yield from _deploy(tmp_path, clock)


def _one_line_refusal(result: CliResult, code: str, exit_code: int) -> None:
    assert result.returncode == exit_code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{code}: "), result.stderr


def _meta(home: Path, key: str) -> str:
    with sqlite3.connect(home / "accord.db") as db:
        return str(db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0])


def _write_meta(home: Path, key: str, value: str) -> None:
    """What an attacker with write access to the client's disk does: edit its SQLite file."""
    with sqlite3.connect(home / "accord.db") as db:
        db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))


def test_accounts_messages_and_a_linked_device_under_a_manifest(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    alice, bob = unique("alice"), unique("bob")
    a, phone, laptop = deployment.cli("a"), deployment.cli("phone"), deployment.cli("laptop")
    url = deployment.server.url
    created = a.run("account", "create", alice, "--server", url)
    assert "INSECURE" not in created.stderr
    phone.run("account", "create", bob, "--server", url)
    a.run("send", bob, "under the manifest")
    got = phone.run("receive", "--json")
    assert [json.loads(line)["text"] for line in got.stdout.splitlines()] == ["under the manifest"]
    assert got.stderr == ""
    code = laptop.run("device", "link", bob, "--server", url).stdout.strip()
    phone.run("device", "approve", code)
    laptop.run("receive")
    laptop.run("send", alice, "from the laptop")
    got = a.run("receive", "--json")
    assert [json.loads(line)["text"] for line in got.stdout.splitlines()] == ["from the laptop"]
    assert got.stderr == ""


def test_without_a_manifest_a_device_is_not_set_up(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    me = Cli(deployment.root / "home-none", env={**deployment.clock.env, "ACCORD_MANIFEST": ""})
    refused = me.run("account", "create", unique("nomanifest"), "--server", deployment.server.url,
                     check=False)  # fmt: skip
    _one_line_refusal(refused, "manifest_required", 2)
    linked = me.run("device", "link", unique("nolink"), "--server", deployment.server.url,
                    check=False)  # fmt: skip
    _one_line_refusal(linked, "manifest_required", 2)


def test_insecure_development_mode_says_so_on_every_command(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    dev = deployment.cli("dev", manifest=False)
    made = dev.run("account", "create", unique("dev"), "--server", deployment.server.url,
                   "--insecure-dev")  # fmt: skip
    for result in (made, dev.run("account", "devices"), dev.run("receive")):
        warnings = [line for line in result.stderr.splitlines() if "INSECURE" in line]
        assert len(warnings) == 1 and "nothing is protected against the server" in warnings[0]


def test_a_manifest_naming_another_log_is_refused(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    other_log = generate_signer(DEFAULT_LOG_ORIGIN)[1]
    wrong = deployment.root / "other-log.manifest"
    wrong.write_text(make_manifest(other_log, [deployment.witness_vkey]))
    me = deployment.cli("mismatch", manifest=False)
    refused = me.run("account", "create", unique("mm"), "--server", deployment.server.url,
                     "--manifest", str(wrong), check=False)  # fmt: skip
    _one_line_refusal(refused, "manifest_mismatch", 1)


def test_a_log_key_swapped_on_disk_is_refused(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    """An attacker who can write the client's disk replaces the pinned manifest with one of
    their own (their log key, their signature, valid in itself)."""
    alice = deployment.cli("swap")
    alice.run("account", "create", unique("alice"), "--server", deployment.server.url)
    forged = make_manifest(generate_signer(DEFAULT_LOG_ORIGIN)[1], [deployment.witness_vkey])
    _write_meta(alice.home, "trust_anchors", json.dumps({"manifest": forged}))
    _one_line_refusal(alice.run("receive", check=False), "anchors_tampered", 2)
    _one_line_refusal(alice.run("account", "devices", check=False), "anchors_tampered", 2)


def test_a_witness_quorum_lowered_on_disk_is_refused(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    """The attacker rewrites the pinned anchors to the same log with no witness required (the
    insecure development form, quorum 0), then also drops the tag."""
    alice = deployment.cli("quorum")
    alice.run("account", "create", unique("alice"), "--server", deployment.server.url)
    lowered = {"insecure_dev": {"origin": DEFAULT_LOG_ORIGIN, "vkey": deployment.log_vkey}}
    _write_meta(alice.home, "trust_anchors", json.dumps(lowered))
    _one_line_refusal(alice.run("receive", check=False), "anchors_tampered", 2)
    with sqlite3.connect(alice.home / "accord.db") as db:
        db.execute("DELETE FROM meta WHERE key = 'trust_anchors_tag'")
    _one_line_refusal(alice.run("receive", check=False), "anchors_tampered", 2)


def test_a_pinned_device_key_swapped_on_disk_is_refused(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    """After alice pinned bob's device, the attacker puts their own key in its row, so that
    alice's next message would be encrypted to them."""
    a, b = deployment.cli("pin-a"), deployment.cli("pin-b")
    alice, bob = unique("alice"), unique("bob")
    a.run("account", "create", alice, "--server", deployment.server.url)
    b.run("account", "create", bob, "--server", deployment.server.url)
    a.run("send", bob, "first")
    attacker = os.urandom(32).hex()
    with sqlite3.connect(a.home / "accord.db") as db:
        changed = db.execute(
            "UPDATE devices SET curve25519 = ? WHERE account = ?", (attacker, bob)
        ).rowcount
    assert changed == 1
    _one_line_refusal(a.run("send", bob, "second", check=False), "anchors_tampered", 2)
    assert b.run("receive", "--json").stdout.count("\n") == 1  # only the first arrived


def test_a_stale_checkpoint_is_refused(
    own_deployment: Deployment, unique: Callable[[str], str]
) -> None:
    """The operator keeps serving the last checkpoint its witness cosigned (the witness is
    stopped; nobody will cosign its view any more) while time moves past the manifest's
    maximum age: clients and the auditor refuse it. While the witness is up, the server keeps
    an unchanged checkpoint fresh by sending it again."""
    d = own_deployment
    alice = d.cli("alice")
    alice.run("account", "create", unique("alice"), "--server", d.server.url)
    d.clock.advance(MAX_AGE_S + 60)  # the log did not grow, but the server re-asked its witness
    alice.run("account", "devices")
    auditor = Cli(d.root / "auditor", env=d.clock.env)
    auditor.run("log", "audit", "--server", d.server.url, "--manifest", str(d.manifest_file))

    d.stop_witness()
    d.clock.advance(MAX_AGE_S + 60)
    _one_line_refusal(alice.run("account", "devices", check=False), "stale_checkpoint", 1)
    audit = auditor.run("log", "audit", "--server", d.server.url, "--manifest",
                        str(d.manifest_file), check=False)  # fmt: skip
    assert audit.returncode == 1 and "INVALID: 1 finding" in audit.stdout
    assert "stale_checkpoint" in audit.stdout

    d.restart_witness()
    d.clock.advance(REFRESH_S)  # the server asks again, and the witness cosigns its view
    alice.run("account", "devices")


def test_manifest_commands_make_sign_show_and_install(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    """Two of two signers make a manifest (the log's key read from the server); a home set up
    with it takes a newer one they both signed, and refuses one signed by anyone else or not
    newer (M2)."""
    root, url = deployment.root / unique("ops"), deployment.server.url
    root.mkdir()
    op = Cli(root / "home", env=deployment.clock.env)
    vkeys = {
        who: op.run("manifest", "keygen", f"signer.test/{who}", "--out", str(root / who)).stdout
        for who in ("a", "b", "stranger")
    }
    assert (root / "a").stat().st_mode & 0o777 == 0o600

    def create(out: str, serial: int, *keys: str) -> None:
        args = [f"--signer-key={root / k}" for k in keys]
        op.run(
            "manifest", "create", "--deployment", "accord.test", "--serial", str(serial),
            "--server", url, "--witness", deployment.witness_vkey, "--approver-set", "00" * 32,
            *args, *([] if "b" in keys else ["--signer", vkeys["b"].strip()]),
            "--signer-quorum", "2", "--out", str(root / out),
        )  # fmt: skip

    create("m1", 1, "a")
    unsigned = op.run("manifest", "show", str(root / "m1"), check=False)
    assert unsigned.returncode == 1 and "does NOT verify: manifest_unsigned" in unsigned.stdout
    assert "signed: 2 of the 2" in op.run("manifest", "sign", str(root / "m1"), "--key",
                                          str(root / "b")).stdout  # fmt: skip
    shown = op.run("manifest", "show", str(root / "m1")).stdout
    assert "witnesses   1 of 1 must cosign" in shown and "verifies: 2 valid" in shown
    assert f"log key     {deployment.log_vkey}" in shown

    user = deployment.cli("installer", manifest=False)
    user.run("account", "create", unique("user"), "--server", url, "--manifest", str(root / "m1"))
    create("m2", 2, "a", "b")
    assert "serial 2 installed" in user.run("manifest", "install", str(root / "m2")).stdout
    user.run("account", "devices")
    rollback = user.run("manifest", "install", str(root / "m1"), check=False)
    _one_line_refusal(rollback, "manifest_rollback", 1)
    op.run(
        "manifest", "create", "--deployment", "accord.test", "--serial", "3", "--log-vkey",
        deployment.log_vkey, "--witness", deployment.witness_vkey, "--approver-set", "00" * 32,
        "--signer-key", str(root / "stranger"), "--out", str(root / "m3"),
    )  # fmt: skip
    unchained = user.run("manifest", "install", str(root / "m3"), check=False)
    _one_line_refusal(unchained, "manifest_not_chained", 1)


def test_an_insecure_home_can_take_a_manifest_for_its_log(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    dev = deployment.cli("upgrade", manifest=False)
    dev.run("account", "create", unique("dev"), "--server", deployment.server.url, "--insecure-dev")
    other = deployment.root / "upgrade-other.manifest"
    other.write_text(
        make_manifest(generate_signer(DEFAULT_LOG_ORIGIN)[1], [deployment.witness_vkey])
    )
    refused = dev.run("manifest", "install", str(other), check=False)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr.splitlines()[-1].startswith("manifest_mismatch: ")
    installed = dev.run("manifest", "install", str(deployment.manifest_file))
    assert "INSECURE" in installed.stderr  # said before the manifest was taken
    after = dev.run("account", "devices")
    assert "INSECURE" not in after.stderr


def test_a_checkpoint_rolled_back_on_disk_stops_every_command(
    deployment: Deployment, unique: Callable[[str], str]
) -> None:
    """Not only the commands that read the checkpoint: `receive`, which reports a device list
    that does not verify as a notice and carries on, stops too."""
    alice = deployment.cli("rollback")
    alice.run("account", "create", unique("alice"), "--server", deployment.server.url)
    size, _, root = _meta(alice.home, "log_checkpoint").partition(" ")
    _write_meta(alice.home, "log_checkpoint", f"{int(size) - 1} {root}")
    _one_line_refusal(alice.run("receive", check=False), "anchors_tampered", 2)
