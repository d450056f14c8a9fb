"""Lawful access against a dishonest provider (issue 14): each attack played for real.

The provider is played with only the provider's own access: it edits its server's database
(SQLite and PostgreSQL), appends to its own log, answers for its server. Each test is named
after the attack; each shows what stops it, with the refusal's stable code
(docs/lawful-access.md §12, docs/threat-model.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, update

from accord.client import authority as au
from accord.client.audit import audit_log
from accord.client.client import AccordClient
from accord.client.disclosures import DISCLOSURE_GRACE_S
from accord.primitives.hpke import hpke_seal
from accord.primitives.olm import DeviceAccount
from accord.protocols.access.records import (
    RECORD_PAYLOAD_PURPOSE,
    SealedRecord,
    record_aad,
    record_info,
)
from accord.protocols.access.warrant import WarrantCommitment
from accord.server.process import ServerProcess
from accord.storage.schema import access_log_index, access_records, access_warrants
from accord.wire.access import AccessSync
from accord_testing import Cli, TestClock, eventually
from integration.lawful_access_world import (
    Authorities,
    account,
    server_db,
    tamper_warrant,
    warrant_row,
)

World = tuple[ServerProcess, Authorities, Path]


@pytest.fixture(scope="module")
def world(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The real approvers and agency on the module's server (SQLite or PostgreSQL)."""
    root = tmp_path_factory.mktemp("dishonest-provider")
    auth = Authorities.make(root / "authorities", server.clock)  # type: ignore[attr-defined]
    auth.publish(server)
    auth.register(server)
    return server, auth, root


@pytest.fixture
def pair(
    world: World, request: pytest.FixtureRequest, unique: Any
) -> Iterator[tuple[AccordClient, AccordClient]]:
    """A target named after the test and its counterpart, configured with the genesis set."""
    server, _, root = world
    stem = request.node.name.removeprefix("test_").split("[")[0].replace("_", "-")[:24]
    target = account(root, server, unique(stem))
    other = account(root, server, unique("peer"))
    yield target, other
    target.close()
    other.close()


def _stored(server: ServerProcess, wid: str) -> list[Any]:
    with server_db(server) as conn:
        return list(
            conn.execute(
                select(access_records.c.id, access_records.c.record)
                .join(access_warrants, access_warrants.c.id == access_records.c.warrant_pk)
                .where(access_warrants.c.warrant_id == bytes.fromhex(wid))
                .order_by(access_records.c.id)
            ).all()
        )


def _window(world: World, target: AccordClient, other: AccordClient, n: int) -> str:
    """A warrant against ``target``, accepted by its device, and ``n`` messages copied."""
    server, auth, _ = world
    wid = auth.submit(server, auth.warrant(target.account_name)).warrant_id
    assert target.access.sync().accepted == [wid]
    for i in range(n):
        target.send(other.account_name, f"message {i}")
    return wid


# --- prospective only ---------------------------------------------------------------------


def test_message_sent_in_the_same_second_a_window_starts_is_not_intercepted(
    world: World, pair: tuple[AccordClient, AccordClient]
) -> None:
    """The window starts at second S; the target sends a message inside S before its device
    has the warrant. Only what follows the device's verification is copied."""
    server, auth, _ = world
    target, other = pair
    clock: TestClock = server.clock  # type: ignore[attr-defined]
    start = int(clock.time()) + 2
    clock.advance(start + 0.05 - clock.time())  # just inside second S
    target.send(other.account_name, "sent in the start second, before the warrant")
    wid = auth.submit(server, auth.warrant(target.account_name, start=start)).warrant_id
    assert target.access.sync().accepted == [wid]
    target.send(other.account_name, "sent after the device verified the warrant")
    fetched = auth.fetch(server, wid)
    assert [r.plaintext for r in fetched.records] == [b"sent after the device verified the warrant"]
    assert not fetched.problems and not fetched.gaps


# --- disclosure -----------------------------------------------------------------------------


def test_disclosure_postponed_without_a_logged_extension_is_overdue(
    world: World, pair: tuple[AccordClient, AccordClient], tmp_path: Path
) -> None:
    """The provider moves the disclosure date in its database, ten years out, and so never
    publishes the opening. The log still holds the warrant's date: the audit shows it overdue,
    and the target's device, which verified the warrant, tells its user itself."""
    server, auth, _ = world
    target, other = pair
    end = auth.now() + 600
    signed = auth.warrant(target.account_name, end=end, disclose_after_s=0)
    wid = auth.submit(server, signed).warrant_id
    assert target.access.sync().accepted == [wid]
    tamper_warrant(server, wid, disclosure_time=auth.now() + 10 * 365 * 86400)
    auth.wait_until(end + DISCLOSURE_GRACE_S)
    notices = target.receive().notices
    assert any("lawful-access disclosure (overdue" in n and "CASE-77" in n for n in notices)
    assert warrant_row(server, wid).disclosure_index is None  # never published
    commitment = WarrantCommitment(bytes(warrant_row(server, wid).commitment))
    report = audit_log(server.url, tmp_path / "auditor", clock=server.clock).access  # type: ignore[attr-defined]
    assert report is not None and commitment in report.overdue_disclosures
    audited = Cli(tmp_path / "auditor-cli", env=server.clock.env).run(  # type: ignore[attr-defined]
        "log", "audit", "--server", server.url, check=False
    )
    assert audited.returncode == 1, audited.stderr
    assert f"warrant {commitment.hex()[:16]}: lawful-access disclosure overdue" in audited.stdout


def test_disclosure_extension_is_logged_signed_and_bounded(
    world: World, pair: tuple[AccordClient, AccordClient], tmp_path: Path
) -> None:
    """The lawful way to postpone: k approvers sign an extension, the log holds it, and the
    new date is bounded. One approver alone, or a date beyond the bound, is refused."""
    server, auth, _ = world
    target, _ = pair
    end = auth.now() + 600
    wid = auth.submit(
        server, auth.warrant(target.account_name, end=end, disclose_after_s=86400)
    ).warrant_id
    commitment = bytes(warrant_row(server, wid).commitment).hex()
    later = end + 30 * 86400
    with pytest.raises(Exception) as one:
        au.extend_disclosure(server.url, commitment, later, auth.signers("judge"), now=auth.now())
    assert getattr(one.value, "code", None) == "threshold_not_met"
    with pytest.raises(Exception) as far:
        au.extend_disclosure(
            server.url, commitment, end + 10 * 365 * 86400, auth.signers("judge", "oversight"),
            now=auth.now(),
        )  # fmt: skip
    assert getattr(far.value, "code", None) == "disclosure_too_late"
    done = au.extend_disclosure(
        server.url, commitment, later, auth.signers("judge", "oversight"), now=auth.now()
    )
    assert done.disclosure_time == later
    auth.wait_until(end + 86400 + 1)
    report = audit_log(server.url, tmp_path / "auditor", clock=server.clock).access  # type: ignore[attr-defined]
    assert report is not None
    [w] = [w for w in report.warrants if w.commitment.hex() == commitment]
    assert (w.disclosure_due, w.extensions, w.disclosure_overdue) == (later, 1, False)


def test_server_hiding_a_disclosure_from_its_target_is_found_in_the_log(
    world: World, pair: tuple[AccordClient, AccordClient]
) -> None:
    """The provider publishes the opening (the public sees it) but leaves it out of what it
    shows the target. The device reads the log itself and tells its user."""
    server, auth, _ = world
    target, _ = pair
    end = auth.now() + 600
    wid = auth.submit(
        server, auth.warrant(target.account_name, end=end, disclose_after_s=0)
    ).warrant_id
    assert target.access.sync().accepted == [wid]
    auth.wait_until(end)
    eventually(lambda: warrant_row(server, wid).disclosure_index is not None, "the disclosure")
    commitment = bytes(warrant_row(server, wid).commitment)
    with server_db(server) as conn:  # the provider's own selection no longer lists it
        conn.execute(
            delete(access_log_index).where(
                access_log_index.c.kind == "disclosure", access_log_index.c.ref == commitment
            )
        )
    shown = target.api.call(
        AccessSync, "GET", "/v1/access/sync", params={"since": 0, "sets_after": 0}
    )
    assert shown.disclosures == []
    notices = target.receive().notices
    assert [n for n in notices if n.startswith("lawful-access disclosure:")], notices


# --- records ------------------------------------------------------------------------------


def test_record_forged_by_the_provider_is_reported_never_shown(
    world: World, pair: tuple[AccordClient, AccordClient]
) -> None:
    """The agency's key is public. The provider seals "I confess to everything" to it, with
    the right warrant, device and sequence, and puts it in place of a stored record. Without
    the device's logged key it cannot sign it: the agency reports record 1 as forged."""
    server, auth, _ = world
    target, other = pair
    wid = _window(world, target, other, 3)
    rows = _stored(server, wid)
    genuine = SealedRecord.from_bytes(bytes(rows[1].record))
    assert auth.agency is not None
    payload = (
        '{"content":{"attachments":[],"plaintext":"SSBjb25mZXNzIHRvIGV2ZXJ5dGhpbmc="},'
        f'"device_id":"{genuine.device_id}","direction":"sent","metadata":null,'
        f'"occurred_at":{auth.now()},"purpose":"{RECORD_PAYLOAD_PURPOSE}","seq":1,'
        f'"signature":"{DeviceAccount().sign(b"the provider has no device key")}",'
        f'"warrant_id":"{wid}"}}'
    ).encode()
    sealed = hpke_seal(
        auth.agency.public_key,
        payload,
        info=record_info(auth.agency.key_id),
        aad=record_aad(genuine.warrant_id, genuine.device_id, 1),
        aead=auth.agency.aead,
    )
    forged = SealedRecord(genuine.warrant_id, genuine.device_id, 1, sealed.enc, sealed.ciphertext)
    with server_db(server) as conn:
        conn.execute(
            update(access_records)
            .where(access_records.c.id == rows[1].id)
            .values(record=forged.to_bytes())
        )
    result = auth.fetch(server, wid)
    assert [r.seq for r in result.records] == [0, 2]
    assert all(b"confess" not in (r.plaintext or b"") for r in result.records)
    assert any(p.startswith("record 1 ") and "record_forged" in p for p in result.problems)
    assert result.gaps == {target.device_id: ((1, 2),)}


def test_records_reordered_by_the_provider_are_reported(
    world: World, pair: tuple[AccordClient, AccordClient]
) -> None:
    """The provider swaps two stored records: the agency opens them in the order served and
    reports the one out of order (with its sequence number) and the gap it leaves."""
    server, auth, _ = world
    target, other = pair
    wid = _window(world, target, other, 4)
    rows = _stored(server, wid)
    with server_db(server) as conn:
        for row, record in ((rows[1], rows[2].record), (rows[2], rows[1].record)):
            conn.execute(
                update(access_records).where(access_records.c.id == row.id).values(record=record)
            )
    result = auth.fetch(server, wid)
    assert [r.seq for r in result.records] == [0, 2, 3]
    assert any(p.startswith("record 1 ") and "record_reordered" in p for p in result.problems)
    assert result.gaps == {target.device_id: ((1, 2),)}
