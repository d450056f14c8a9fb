"""The demo's lawful-access chapter: approval, a retroactive warrant refused, interception
within the window, expiry, an agency detecting a record forged by the provider, disclosure and
the public audit (docs/lawful-access.md). Called by `accord demo` (cli/demo.py) with its running
server and clients; every step is checked.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select, update

from accord.cli.access import report_lines
from accord.client import authority as au
from accord.client.audit import audit_log
from accord.client.client import AccordClient
from accord.errors import AuthorizationError
from accord.primitives.olm import DeviceAccount
from accord.protocols.access.approvers import SignedApproverSet
from accord.protocols.access.device import VerifiedWarrant
from accord.protocols.access.records import Direction, InterceptedMessage, RecordSealer
from accord.protocols.access.timeparse import format_time
from accord.server.process import ServerProcess
from accord.storage.db import begin_write, make_engine, sqlite_url
from accord.storage.schema import access_records, access_warrants

WINDOW_S = 6
DISCLOSURE_WAIT_S = 15.0
APPROVERS = {
    "judge": "issuing_authority",
    "commissioner": "judicial_commissioner",
    "oversight": "oversight_body",
}


@dataclass(frozen=True)
class DemoApprovers:
    """The approvers' keys and their first set, signed: made before the deployment manifest,
    which names the set's hash as the approvers' genesis set."""

    keys: Path
    approvers: dict[str, au.ApproverKey]
    signed_set: SignedApproverSet

    @property
    def set_hash(self) -> str:
        return self.signed_set.approver_set.set_hash.hex()


def make_approvers(keys: Path) -> DemoApprovers:
    """Three approvers, any two of whom must sign; two of them sign the set."""
    keys.mkdir()
    approvers = {}
    for name, role in APPROVERS.items():
        au.generate_approver_key(name, role, keys / f"{name}.key")
        approvers[name] = au.load_approver_key(keys / f"{name}.key")
    signed_set = au.sign_approver_set_with(
        au.create_approver_set(2, [a.approver for a in approvers.values()]),
        [approvers["judge"], approvers["commissioner"]],
    )
    return DemoApprovers(keys, approvers, signed_set)


def access_chapter(
    root: Path,
    server: ServerProcess,
    alice: AccordClient,
    bob: AccordClient,
    made: DemoApprovers,
    *,
    step: Callable[[str], None],
    ok: Callable[[str], None],
    expect: Callable[[bool, str], None],
) -> None:
    """alice is the target, bob her counterpart; everything alice sent before is out of reach."""
    keys, approvers = made.keys, made.approvers
    url = server.url

    step("lawful access: three approvers, any two of whom must sign; the set goes in the log")
    published = au.publish_approver_set(url, server.admin_token(), made.signed_set)
    ok(
        f"approver set v1 (2 of 3) at log index {published.index}, hash {published.set_hash[:16]}"
        " (the deployment manifest names it as the genesis set)"
    )

    step("the agency's HPKE key is registered in the log, signed by two approvers")
    au.generate_agency_key("nca", keys / "nca.key")
    signed_key, registered = au.register_agency(
        url, keys / "nca.key.pub", [approvers["judge"], approvers["oversight"]], keys
    )
    ok(f"agency nca, key id {registered.key_id[:16]}, at log index {registered.index}")

    step("a retroactive warrant (its window starting 20 days ago) is refused")
    now = int(time.time())
    retro = au.draft_warrant(
        target="alice",
        agency=signed_key.key,
        scope=["content"],
        start_time=now - 20 * 86400,
        end_time=now + 86400,
        case_reference="DEMO-RETRO",
        disclose_after_s=0,
    )
    for name in ("judge", "commissioner"):
        retro = au.sign_warrant(retro, approvers[name], now=now - 20 * 86400 - 60)
    try:
        au.submit_warrant(url, retro)
        refused = ""
    except AuthorizationError as exc:
        refused = exc.code
    expect(refused == "warrant_retroactive", "the server refuses it: warrant_retroactive")
    ok("devices refuse one too: a window may start at most 5 minutes before the witnesses")
    ok("first cosigned its commitment, and a device copies nothing from before it verified it")

    step(f"a warrant against alice: content and metadata, a {WINDOW_S}-second window")
    time.sleep(1 - time.time() % 1)  # windows are whole seconds: start on a fresh one
    start = int(time.time())
    warrant = au.draft_warrant(
        target="alice",
        agency=signed_key.key,
        scope=["content", "metadata"],
        start_time=start,
        end_time=start + WINDOW_S,
        case_reference="DEMO-CASE-1",
        disclose_after_s=0,
    )
    for name in ("judge", "commissioner"):
        warrant = au.sign_warrant(warrant, approvers[name], now=start)
        ok(f"{name} signed")
    submitted = au.submit_warrant(url, warrant)
    ok(f"submitted; its commitment is at log index {submitted.index}")
    public = au.public_report(url)
    entry = base64.b64decode(_entry_at(url, submitted.index))
    expect(
        public.active == 1 and b"alice" not in entry,
        "the log shows one active warrant, its window and approvers, and not its target",
    )

    step("alice's client gets the warrant on its next sync and checks it (W1-W12)")
    notices = alice.receive().notices
    verified = alice.access.active_warrants()
    active = [w.warrant_id.hex() for w in verified]
    expect(active == [submitted.warrant_id], "signatures, set, target, window, log: all verified")
    expect(not any("lawful-access" in n for n in notices), "alice is not told before disclosure")

    step("inside the window alice and bob talk; her client seals a copy of each message")
    alice.send("bob", "Meet at the station at six")
    expect(
        [m.text for m in bob.receive().messages] == ["Meet at the station at six"],
        "bob reads alice's message as always",
    )
    bob.send("alice", "See you there")
    expect(
        [m.text for m in alice.receive().messages] == ["See you there"],
        "alice reads bob's reply as always",
    )

    step("the window ends: alice's client stops copying")
    while time.time() < start + WINDOW_S:
        time.sleep(0.2)
    alice.send("bob", "Running late")
    bob.receive()
    expect(alice.access.active_warrants() == [], "no warrant is active on alice's device")

    step("the agency fetches the records and decrypts them, in order")
    manifest = alice.manifest()  # the agency reads device keys from the deployment's log
    pinned = None if manifest is None else manifest.log_policy()
    agency_key = au.load_agency_key(keys / "nca.key")
    fetched = au.fetch_records(
        url, agency_key, submitted.warrant_id, with_metadata=True, log_policy=pinned
    )
    texts = [(r.direction.value, (r.plaintext or b"").decode()) for r in fetched.records]
    for direction, text in texts:
        ok(f"{direction}: {text}")
    expect(
        texts == [("sent", "Meet at the station at six"), ("received", "See you there")],
        "exactly the two messages of the window; nothing from before it, nothing after",
    )
    expect(not fetched.problems and not fetched.gaps, "every record opened, no gaps")
    expect(
        [(m.direction, m.counterpart) for m in fetched.metadata]
        == [("sent", "bob"), ("received", "bob")],
        "the server kept delivery metadata for alice during the window only",
    )
    stored = [
        p for p in (root / "server").rglob("*") if p.is_file() and b"station" in p.read_bytes()
    ]
    expect(not stored, "the server stored the records sealed: it holds no key to them")

    step("the provider forges a record (the agency's key is public) in place of a stored one")
    _forge_record(server, verified[0], alice.device_id, start)
    forged = au.fetch_records(url, agency_key, submitted.warrant_id, log_policy=pinned)
    for problem in forged.problems:
        ok(problem)
    expect(
        [r.seq for r in forged.records] == [0]
        and any("record_forged" in p for p in forged.problems)
        and not any(b"confess" in (r.plaintext or b"") for r in forged.records),
        "the agency reports record 1 as forged (not signed by alice's logged device key), "
        "never as content",
    )

    step("after the disclosure time the provider opens the warrant in the log; alice is told")
    deadline = time.monotonic() + DISCLOSURE_WAIT_S
    shown: list[str] = []
    while not shown and time.monotonic() < deadline:
        shown = [n for n in alice.receive().notices if "lawful-access disclosure" in n]
        if not shown:
            time.sleep(0.5)
    expect(len(shown) == 1 and "DEMO-CASE-1" in shown[0], "alice's client shows the notice")
    ok(shown[0] if shown else "")

    step("anyone can audit: warrants, approvers and record counts recomputed from the log")
    report = audit_log(url, root / "auditor").access
    while report is not None and not report.total_records and time.monotonic() < deadline:
        time.sleep(0.5)
        report = audit_log(url, root / "auditor").access
    expect(
        report is not None
        and report.past == 1
        and report.total_records == 2
        and not report.overdue_disclosures
        and report.warrants[0].disclosed,
        "1 past warrant, 2 intercepted records, disclosed, none overdue",
    )
    if report is not None:
        for line in report_lines(report):
            ok(line.strip())
    ok(f"window was {format_time(start)} to {format_time(start + WINDOW_S)}")


def _entry_at(url: str, index: int) -> str:
    page = httpx.get(f"{url}/v1/log/entries", params={"start": index, "end": index + 1}).json()
    return str(page["entries"][0])


def _forge_record(server: ServerProcess, verified: VerifiedWarrant, device: str, at: int) -> None:
    """Play the provider: seal "I confess to everything" to the agency's public key with the
    right warrant, device and sequence, signed with a key of its own, and store it in place
    of alice's record 1."""
    forger = RecordSealer(verified, device_id=device, sign=DeviceAccount().sign, next_seq=1)
    forged = forger.seal(
        InterceptedMessage(
            direction=Direction.SENT,
            occurred_at=at,
            sender="alice",
            recipients=("bob",),
            conversation_id="account:bob",
            message_id="forged",
            plaintext=b"I confess to everything",
        ),
        now=at,
    )
    engine = make_engine(server.db_url or sqlite_url(server.data_dir))
    try:
        with begin_write(engine) as conn:  # the server writes to the same file meanwhile
            rows = conn.execute(
                select(access_records.c.id)
                .join(access_warrants, access_warrants.c.id == access_records.c.warrant_pk)
                .where(access_warrants.c.warrant_id == verified.warrant_id)
                .order_by(access_records.c.id)
            ).all()
            conn.execute(
                update(access_records)
                .where(access_records.c.id == rows[1].id)
                .values(record=forged.to_bytes())
            )
    finally:
        engine.dispose()
