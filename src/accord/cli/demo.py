"""`accord demo`: the whole story, on embedded SQLite in a temporary directory.

Every step checks what really happened (what was received, byte for byte) and the demo exits
non-zero if any check fails.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from accord.cli.common import write_key_pair
from accord.cli.demo_access import DemoApprovers, access_chapter, make_approvers
from accord.cli.demo_matching import matching_chapter
from accord.cli.demo_transparency import transparency_chapter
from accord.client.audit import audit_log
from accord.client.client import AccordClient
from accord.client.operator import OperatorApi
from accord.client.received import ReceivedMessage
from accord.client.review import ReviewerApi
from accord.errors import AccordError
from accord.protocols.manifest import build_manifest, sign_manifest, verify_manifest
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.protocols.translog.note import generate_cosigner, generate_signer, parse_skey
from accord.server.process import ServerProcess, free_port
from accord.server.review import verify_audit_chain
from accord.server.translog import DEFAULT_LOG_ORIGIN, load_or_create_signer

DEMO_PASSPHRASE = "demo passphrase (not for real use)"  # noqa: S105 (a demo in a temporary directory)
ATTACHMENT_BYTES = 2 * 1000 * 1000
DEMO_REVIEWER_PASSWORD = "demo reviewer password"  # noqa: S105 (a demo in a temporary directory)
DEMO_WITNESS = "witness.demo/w1"
WITNESS_START_TIMEOUT_S = 30.0


class DemoFailed(AccordError):
    code = "demo_failed"


def _step(text: str) -> None:
    click.secho(f"==> {text}", bold=True)


def _ok(text: str) -> None:
    click.echo(f"    ok: {text}")


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise DemoFailed(what)
    _ok(what)


def _one(
    messages: list[ReceivedMessage], pred: Callable[[ReceivedMessage], bool]
) -> ReceivedMessage:
    found = [m for m in messages if pred(m)]
    if len(found) != 1:
        raise DemoFailed(f"expected one matching message, got {len(found)}")
    return found[0]


@click.command()
@click.option("--keep", is_flag=True, help="Keep the temporary directory.")
def demo(keep: bool) -> None:
    """The whole story on embedded SQLite in a temporary directory."""
    run_demo(keep=keep)


def run_demo(*, keep: bool = False) -> None:
    root = Path(tempfile.mkdtemp(prefix="accord-demo-"))
    try:
        _run(root)
        click.secho("demo finished: every step checked", fg="green", bold=True)
    finally:
        if keep:
            click.echo(f"files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _witness(root: Path, log_vkey: str) -> Iterator[tuple[str, str]]:
    """`accord witness serve` for the demo's log, as its own process: (url, cosigning vkey)."""
    skey, vkey = generate_cosigner(DEMO_WITNESS)
    write_key_pair(root / "witness.key", skey, vkey)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "accord", "--home", str(root / "witness-home"), "witness",
            "serve", "--key", str(root / "witness.key"), "--log-vkey", log_vkey,
            "--port", str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WITNESS_START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise DemoFailed("the witness did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", vkey
    finally:
        proc.terminate()
        proc.wait()


def _manifest(root: Path, log_vkey: str, witness_vkey: str, approver_set: str) -> str:
    """The demo deployment's manifest: its log, its one witness (quorum 1), the approvers'
    genesis set; signed by a signing key made here (a deployment keeps its keys offline)."""
    signer = parse_skey(generate_signer("manifest.demo/signer")[0])
    manifest = build_manifest(
        deployment="accord.demo",
        log_vkey=log_vkey,
        witnesses=[witness_vkey],
        approver_genesis_set=approver_set,
        signers=[signer.vkey],
        matching_floors=DEFAULT_MATCHING_FLOORS,
    )
    note = sign_manifest(manifest, [signer])
    (root / "accord.demo.manifest").write_text(note)
    return note


def _run(root: Path) -> None:
    _step("the deployment: a log key, a witness process, and the manifest clients are given")
    (root / "server").mkdir()
    log_vkey = load_or_create_signer(root / "server", DEFAULT_LOG_ORIGIN).vkey
    approvers = make_approvers(root / "authorities")
    with _witness(root, log_vkey) as (witness_url, witness_vkey):
        manifest = _manifest(root, log_vkey, witness_vkey, approvers.set_hash)
        _ok(f"witness {witness_vkey.split('+')[0]} at {witness_url} cosigns every checkpoint")
        _ok("manifest: log key, witness (quorum 1), approvers' genesis set; signed")
        server = ServerProcess(root / "server", extra_args=["--witness", witness_url])
        with server:
            _ok(f"server at {server.url}")
            _chapters(root, server, manifest, approvers)


def _chapters(root: Path, server: ServerProcess, manifest: str, approvers: DemoApprovers) -> None:
    url = server.url
    _step("creating accounts alice, bob and carol (each device makes its own keys)")

    def create(name: str) -> AccordClient:
        return AccordClient.create_account(
            root / name, url, name, DEMO_PASSPHRASE, manifest=manifest
        )

    alice, bob, carol = create("alice"), create("bob"), create("carol")
    clients = [alice, bob, carol]
    try:
        for c in clients:
            _ok(f"{c.account_name}: device {c.device_id}, one-time keys published")

        _step("bob links a second device; his first device approves its one-time code")
        bob2, code = AccordClient.start_link(
            root / "bob-laptop", url, "bob", DEMO_PASSPHRASE, manifest=manifest
        )
        clients.append(bob2)
        _ok(f"new device printed code {code}")
        approved = bob.approve_device(code)
        _expect(approved.device_id == bob2.device_id, "bob's phone approved the laptop")
        bob2.receive()  # first contact: logs in, publishes its one-time keys

        _step("alice sends bob a 1:1 message with an encrypted attachment")
        photo = root / "holiday.bin"
        photo.write_bytes(os.urandom(ATTACHMENT_BYTES))
        digest = hashlib.sha256(photo.read_bytes()).hexdigest()
        alice.send("bob", "Hi Bob, photos from the trip", [photo])
        _ok("sent (Olm to each of bob's devices and alice's other devices)")

        for device, label in ((bob, "bob's phone"), (bob2, "bob's laptop")):
            got = device.receive().messages
            m = _one(got, lambda m: m.sender == "alice")
            _expect(m.text == "Hi Bob, photos from the trip", f"{label} decrypted the text")
            _expect(
                len(m.attachments) == 1 and m.attachments[0].sha256 == digest,
                f"{label} decrypted the {ATTACHMENT_BYTES:,}-byte attachment intact",
            )

        _step("bob replies from his laptop; his phone sees what he sent")
        bob2.send("alice", "Thanks Alice!")
        m = _one(alice.receive().messages, lambda m: m.sender == "bob")
        _expect(m.text == "Thanks Alice!", "alice got the reply")
        m = _one(bob.receive().messages, lambda m: m.sender == "bob")
        _expect(m.text == "Thanks Alice!", "bob's phone shows the message sent from the laptop")

        _step("alice creates group 'trip' with bob and carol and writes to it (Megolm)")
        alice.create_group("trip", ["bob", "carol"])
        alice.send_group("trip", "Dinner at eight?")
        for device, label in ((bob, "bob's phone"), (bob2, "bob's laptop"), (carol, "carol")):
            m = _one(device.receive().messages, lambda m: m.group == "trip")
            _expect(m.text == "Dinner at eight?", f"{label} read the group message")

        _step("carol answers in the group")
        carol.send_group("trip", "Yes!")
        for device, label in ((alice, "alice"), (bob, "bob's phone")):
            m = _one(device.receive().messages, lambda m: m.group == "trip")
            _expect(m.sender == "carol" and m.text == "Yes!", f"{label} read carol's answer")
        bob2.receive()

        _step("alice removes carol; the next message uses a fresh group session")
        alice.change_members("trip", remove=["carol"])
        alice.send_group("trip", "Change of plan, just us")
        _expect(not carol.receive().messages, "carol receives nothing more")
        m = _one(bob.receive().messages, lambda m: m.group == "trip")
        _expect(m.text == "Change of plan, just us", "bob still reads the group")

        _step("checking what the server stored")
        leaked = _server_sees(root / "server", [b"Hi Bob", b"Dinner at eight", b"just us"])
        _expect(not leaked, "no plaintext in the server's database or blob store")

        _report_chapter(root, server, alice, bob, carol)
        matching_chapter(root, server, alice, bob, step=_step, ok=_ok, expect=_expect)
        access_chapter(root, server, alice, bob, approvers, step=_step, ok=_ok, expect=_expect)
        clients += transparency_chapter(
            root,
            server,
            alice,
            bob,
            passphrase=DEMO_PASSPHRASE,
            manifest=manifest,
            step=_step,
            ok=_ok,
            expect=_expect,
        )
        _step("an auditor checks the log's checkpoint against the manifest's witness and age")
        audited = audit_log(url, root / "manifest-auditor", manifest=verify_manifest(manifest))
        _expect(not audited.problems, "cosigned by the manifest's witness, and fresh")
    finally:
        for c in clients:
            c.close()


def _report_chapter(
    root: Path, server: ServerProcess, alice: AccordClient, bob: AccordClient, carol: AccordClient
) -> None:
    """Franking, a verified report and its review (docs/protocol/franking.md, docs/console.md)."""
    _step("carol harasses bob in a direct message; bob reports it with one earlier message")
    picture = root / "unwanted.png"
    _demo_picture(picture)
    carol.send("bob", "you again?")
    carol.send("bob", "I know where you live", [picture])
    got = bob.receive().messages
    _expect(len(got) == 2, "bob's phone received both (each franking commitment opened)")
    threat = _one(got, lambda m: m.text.startswith("I know"))
    report_id = bob.report(threat.id, reason="threats", context=1)
    _ok(f"report {report_id} filed: the server checked both commitments and its own tags")

    _step("a reviewer works the case (the console at /console does the same in a browser)")
    operator = OperatorApi(server.url, server.admin_token())
    operator.api.request(
        "POST",
        "/v1/reviewers",
        json={"name": "rita", "password": DEMO_REVIEWER_PASSWORD, "role": "reviewer"},
    )
    operator.close()
    with ReviewerApi.login(server.url, "rita", DEMO_REVIEWER_PASSWORD) as rita:
        (summary,) = rita.reports(status="open").reports
        detail = rita.report(summary.report_id)
        _expect(detail.verified_sender.account == "carol", "queue shows carol as verified sender")
        _expect(
            [m.text for m in detail.items] == ["you again?", "I know where you live"],
            "the reported message and its context, in order",
        )
        data = rita.reveal(report_id, 0)
        _expect(data == picture.read_bytes(), "rita chose to view the attachment: intact")
        rita.act(report_id, "suspend", "credible threat")
        try:
            carol.send("bob", "hello?")
            raise DemoFailed("a suspended account could still send")
        except AccordError as exc:
            _expect(exc.code == "account_suspended", "carol's account is suspended: sends refused")
        rita.act(report_id, "escalate", "refer to police")
        package = zipfile.ZipFile(io.BytesIO(rita.export(report_id, "xml")))
        _expect(
            b"<fileViewedByEsp>true</fileViewedByEsp>" in package.read("fileDetails-1.xml"),
            f"escalated case exported as a CyberTipline-shaped package: {package.namelist()}",
        )
        trail = rita.audit().entries
        _expect(
            verify_audit_chain(trail), f"audit trail of {len(trail)} entries, hash chain intact"
        )


def _demo_picture(path: Path) -> None:
    from PIL import Image

    Image.effect_mandelbrot((160, 120), (-2.0, -1.2, 0.8, 1.2), 60).convert("RGB").save(path)


def _server_sees(data_dir: Path, needles: list[bytes]) -> list[str]:
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [str(path) for n in needles if n in data]
    return found
