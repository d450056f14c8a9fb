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
from accord_testing import TestClock, make_manifest, manifest_signer
from conftest import Cli, CliResult

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
    assert audit.returncode == 1 and "INVALID: stale_checkpoint" in audit.stdout

    d.restart_witness()
    d.clock.advance(REFRESH_S)  # the server asks again, and the witness cosigns its view
    alice.run("account", "devices")
