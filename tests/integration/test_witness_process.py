"""`accord witness keygen` and `accord witness serve` as real processes, across a restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from accord.protocols.translog import merkle
from accord.protocols.translog import note as tn
from accord.witness import format_add_checkpoint_request
from accord_testing import eventually

ORIGIN = "log.example/process-test"
LOG = tn.parse_skey(tn.generate_signer(ORIGIN)[0])
LEAVES = [merkle.leaf_hash(b"%d" % i) for i in range(20)]


def accord_cmd() -> list[str]:
    script = shutil.which("accord", path=str(Path(sys.executable).parent))
    if script:
        return [script]
    return [sys.executable, "-c", "from accord.cli.main import main; main()"]


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*accord_cmd(), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(key: Path, state: Path, home: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            *accord_cmd(),
            "--home",
            str(home),
            "witness",
            "serve",
            "--key",
            str(key),
            "--log-vkey",
            LOG.vkey,
            "--port",
            str(port),
            "--state",
            str(state),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"witness exited: {proc.communicate()[1]}")
            try:
                httpx.get(url + "/", timeout=1)
            except httpx.TransportError:
                return False
            return True

        eventually(listening, "the witness listening")
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def add(url: str, old: int, size: int) -> httpx.Response:
    body = tn.Checkpoint(ORIGIN, size, merkle.root_hash(LEAVES[:size])).to_text()
    proof = merkle.consistency_proof(LEAVES[:size], old) if old else []
    request = format_add_checkpoint_request(old, proof, tn.sign_note(body, [LOG]))
    return httpx.post(url + "/add-checkpoint", content=request, timeout=10)


@pytest.mark.slow
def test_witness_process_keeps_its_state_across_a_restart(tmp_path: Path) -> None:
    home, key, state = tmp_path / "home", tmp_path / "witness.key", tmp_path / "state"
    made = run("witness", "keygen", "witness.example/w-process", "--out", str(key), home=home)
    assert made.returncode == 0, made.stderr
    vkey = made.stdout.strip()
    assert (tmp_path / "witness.key.pub").read_text().strip() == vkey
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    witness = tn.parse_vkey(vkey)
    assert witness.is_cosigner

    with serving(key, state, home) as url:
        r = add(url, 0, 5)
        assert r.status_code == 200, r.text
        body = tn.Checkpoint(ORIGIN, 5, merkle.root_hash(LEAVES[:5])).to_text()
        tn.verify_cosignature(body, r.text.strip(), witness)
        assert add(url, 5, 9).status_code == 200

    with serving(key, state, home) as url:
        # The restarted witness remembers size 9: a request from 0 is stale.
        r = add(url, 0, 12)
        assert r.status_code == 409
        assert r.headers["content-type"] == "text/x.tlog.size"
        assert r.text == "9\n"
        assert add(url, 9, 12).status_code == 200


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    home, key = tmp_path / "home", tmp_path / "w.key"
    assert run("witness", "keygen", "w", "--out", str(key), home=home).returncode == 0
    again = run("witness", "keygen", "w", "--out", str(key), home=home)
    assert again.returncode == 2 and len(again.stderr.strip().splitlines()) == 1
    bad_log = run("witness", "serve", "--key", str(key), "--log-vkey", "nonsense", home=home)
    assert bad_log.returncode == 2 and "invalid_input" in bad_log.stderr
    assert len(bad_log.stderr.strip().splitlines()) == 1
    os.chmod(key, 0o644)
    loose = run("witness", "serve", "--key", str(key), "--log-vkey", LOG.vkey, home=home)
    assert loose.returncode == 2 and "chmod 600" in loose.stderr
    bad_name = run("witness", "keygen", "has space", "--out", str(tmp_path / "x"), home=home)
    assert bad_name.returncode == 2
