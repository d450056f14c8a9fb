"""Witnessed checkpoints: a server that forks its log cannot get the fork cosigned, and clients
that require a witness quorum refuse the uncosigned view.

This test keeps servers of its own: they need a log key it chose and a witness flag, and it stops
one, copies its data directory to fork the log and restarts it, which no other test could share.
They run on the module's clock like the shared servers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from accord.client.client import AccordClient
from accord.errors import VerificationError
from accord.protocols.translog.note import generate_cosigner, generate_signer, parse_unverified_note
from accord.server.process import ServerProcess, free_port
from accord.server.translog import DEFAULT_LOG_ORIGIN, LOG_KEY_FILE
from accord_testing import TEST_KDF_COST, Cli, make_manifest, start_witness

PASS = "test passphrase"


def _start_witness(
    tmp: Path, log_vkey: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    skey, vkey = generate_cosigner("witness.test/w1")
    key = tmp / "witness.key"
    key.write_text(skey + "\n")
    key.chmod(0o600)
    port = free_port()
    return start_witness(tmp, key, log_vkey, port, env), f"http://127.0.0.1:{port}", vkey


def _signatures(url: str) -> int:
    return len(parse_unverified_note(httpx.get(url + "/v1/log/checkpoint").text).signatures)


def test_a_split_view_to_two_clients_is_refused(tmp_path, module_clock, unique):  # type: ignore[no-untyped-def]
    """The operator shows bob a second view of its log (a copy with another device registered
    at the same size) while alice and carol see the first: the witness will not cosign the
    fork, so bob refuses the view before he encrypts to anyone in it."""
    alice_name, bob_name = unique("alice"), unique("bob")
    carol_name, dave_name = unique("carol"), unique("dave")
    d1 = tmp_path / "server1"
    d1.mkdir()
    log_skey, log_vkey = generate_signer(DEFAULT_LOG_ORIGIN)
    (d1 / LOG_KEY_FILE).write_text(log_skey + "\n")
    os.chmod(d1 / LOG_KEY_FILE, 0o600)
    witness, wurl, wvkey = _start_witness(tmp_path, log_vkey, module_clock.env)
    manifest = make_manifest(log_vkey, [wvkey])
    s1 = ServerProcess(d1, extra_args=["--witness", wurl], env=module_clock.env)
    s2 = None
    clients: list[AccordClient] = []
    try:
        s1.start()
        alice = AccordClient.create_account(
            tmp_path / "a", s1.url, alice_name, PASS, manifest=manifest, kdf_cost=TEST_KDF_COST
        )
        bob = AccordClient.create_account(
            tmp_path / "b", s1.url, bob_name, PASS, manifest=manifest, kdf_cost=TEST_KDF_COST
        )
        clients += [alice, bob]
        assert _signatures(s1.url) == 2  # the log's signature and the witness's
        alice.send(bob_name, "cosigned")
        assert [m.text for m in bob.receive().messages] == ["cosigned"]

        # The operator copies the log and runs a second view of it.
        s1.stop()
        shutil.copytree(d1, tmp_path / "server2")
        s1.start()
        s2 = ServerProcess(
            tmp_path / "server2", extra_args=["--witness", wurl], env=module_clock.env
        ).start()
        carol = AccordClient.create_account(
            tmp_path / "c", s1.url, carol_name, PASS, manifest=manifest, kdf_cost=TEST_KDF_COST
        )
        clients.append(carol)
        # On the second view a different device is registered at the same tree size.
        dave = AccordClient.create_account(
            tmp_path / "d", s2.url, dave_name, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        clients.append(dave)
        assert _signatures(s1.url) == 2
        assert _signatures(s2.url) == 1  # the witness refused the fork

        alice.send(carol_name, "fine on the witnessed view")
        # bob is shown the forked view: its checkpoint lacks the witness's cosignature.
        bob.api.base_url = s2.url
        bob.api._http.base_url = httpx.URL(s2.url)
        with pytest.raises(VerificationError) as caught:
            bob._refresh_devices([dave_name])
        assert caught.value.code == "witness_quorum_not_met"

        # An auditor holding the deployment's manifest flags the forked view, not the other.
        manifest_file = tmp_path / "deployment.manifest"
        manifest_file.write_text(manifest)
        auditor = Cli(tmp_path / "auditor", env=module_clock.env)
        audit = ["log", "audit", "--manifest", str(manifest_file), "--server"]
        forked = auditor.run(*audit, s2.url, check=False)
        assert forked.returncode == 1, forked.stderr
        assert "INVALID: 1 finding" in forked.stdout
        assert "the checkpoint has 0 cosignatures by the manifest's witnesses; 1 needed" in (
            forked.stdout
        )
        witnessed = auditor.run(*audit, s1.url, check=False)
        assert witnessed.returncode == 0, witnessed.stdout
        assert "INVALID" not in witnessed.stdout
    finally:
        for c in clients:
            c.close()
        s1.stop()
        if s2 is not None:
            s2.stop()
        witness.kill()
        witness.wait()
