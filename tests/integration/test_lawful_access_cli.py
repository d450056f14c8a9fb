"""Acceptance 1 over the command line and a real server: approvers, agency, warrant, the
target's client, the agency's fetch, the public list, the disclosure and the audit."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from accord.client.authority import read_approver_set
from accord.client.client import AccordClient
from accord.protocols.access.records import SealedRecord
from accord.storage.db import begin_write, make_engine, sqlite_url
from accord.storage.schema import access_records
from accord_testing import TEST_KDF_COST, TestClock, eventually, start_server

PASS = "test passphrase"
START = "+60s"  # approvers sign before the window starts, then the test moves the clock
WINDOW = "+1h"  # the test moves the shared clock past its end


def test_warrant_end_to_end_over_the_cli(tmp_path: Path, cli, clock: TestClock) -> None:  # type: ignore[no-untyped-def]
    keys = tmp_path / "keys"
    keys.mkdir()
    k = {name: str(keys / f"{name}.key") for name in ("judge", "commissioner", "oversight", "nca")}
    server = start_server(tmp_path / "server", clock=clock)
    with server:  # stopped on the way out
        url = server.url
        authorities = cli("authorities")
        authorities.env.update(clock.env)
        authorities.env["ACCORD_ADMIN_TOKEN"] = server.admin_token()
        roles = {
            "judge": "issuing_authority",
            "commissioner": "judicial_commissioner",
            "oversight": "oversight_body",
        }
        for n, r in roles.items():
            authorities.run("approver", "keygen", n, "--role", r, "--out", k[n])
        authorities.run("agency", "keygen", "nca", "--out", k["nca"])
        aset = str(tmp_path / "approvers.json")
        authorities.run(
            "approver-set", "create", "--threshold", "2", "--out", aset,
            *[a for n in roles for a in ("--approver", k[n] + ".pub")],
        )  # fmt: skip
        authorities.run(
            "approver-set", "publish", aset, "--server", url,
            "--approver-key", k["judge"], "--approver-key", k["commissioner"],
        )  # fmt: skip
        authorities.run(
            "agency", "register", k["nca"] + ".pub", "--server", url,
            "--approver-key", k["judge"], "--approver-key", k["oversight"],
        )  # fmt: skip

        alice = cli("alice")
        alice.env.update(clock.env)
        # The deployment configures its clients with the genesis approver set.
        genesis = read_approver_set(Path(aset)).approver_set.set_hash.hex()
        alice.env["ACCORD_APPROVER_SET"] = genesis
        alice.run("account", "create", "alice", "--server", url)
        bob = AccordClient.create_account(
            tmp_path / "bob",
            url,
            "bob",
            PASS,
            kdf_cost=TEST_KDF_COST,
            clock=clock,
            insecure_dev=True,
        )
        try:
            alice.run("send", "bob", "before the window")

            warrant = str(tmp_path / "warrant.json")
            draft = [
                "warrant", "draft", "--target", "alice", "--agency", "nca",
                "--scope", "content,metadata", "--start", START, "--end", WINDOW,
                "--case", "CASE-2025-9", "--disclose-after", "0s", "--out", warrant,
            ]  # fmt: skip
            authorities.run(*draft)
            end = json.loads(Path(warrant).read_text())["signed_warrant"]["warrant"]["timespan"][
                "end_time"
            ]
            # k - 1 approvals are refused by the server, with the check's code, exit 1.
            authorities.run("warrant", "sign", warrant, "--key", k["judge"])
            refused = authorities.run("warrant", "submit", warrant, "--server", url, check=False)
            assert refused.returncode == 1
            assert refused.stderr.strip().startswith("threshold_not_met:")
            assert len(refused.stderr.strip().splitlines()) == 1
            authorities.run("warrant", "sign", warrant, "--key", k["commissioner"])
            wid = authorities.run("warrant", "submit", warrant, "--server", url).stdout.strip()
            assert len(wid) == 64
            clock.advance(61)  # the window starts (every approval is dated before it)

            alice.run("receive")  # the ordinary sync delivers the warrant; the client checks it
            photo = tmp_path / "photo.bin"
            photo.write_bytes(b"\x89PNG not really" * 100)
            alice.run("send", "bob", "inside the window", "--attach", str(photo))
            bob.send("alice", "a reply inside the window")
            got = alice.run("receive", "--json").stdout.splitlines()
            assert [json.loads(m)["text"] for m in got] == ["a reply inside the window"]
            assert clock.time() < end, "the window closed early"

            clock.advance_past(end)
            alice.run("send", "bob", "after the window")
            bob.send("alice", "a reply after the window")
            shown = [alice.run("receive").stderr]  # notices are shown once each
            assert [m.text for m in bob.receive().messages] == [
                "before the window",
                "inside the window",
                "after the window",
            ]

            fetched = authorities.run(
                "agency", "fetch", "--key", k["nca"], "--server", url, "--warrant", wid, "--json",
                "--insecure-dev",  # this server has no witness and the agency no manifest
            )  # fmt: skip
            rows = [json.loads(line) for line in fetched.stdout.splitlines()]
            assert [(r["seq"], r["direction"], r["text"]) for r in rows] == [
                (0, "sent", "inside the window"),
                (1, "received", "a reply inside the window"),
            ]
            for row in rows:
                assert set(row) == {"seq", "direction", "from", "to", "text", "sent_at",
                                    "attachments"}  # fmt: skip
            assert (rows[0]["from"], rows[0]["to"]) == ("alice", ["bob"])
            assert (rows[1]["from"], rows[1]["to"]) == ("bob", ["alice"])
            assert len(rows[0]["attachments"]) == 1 and rows[1]["attachments"] == []

            listing = authorities.run("warrant", "list", "--server", url).stdout
            assert "approved by commissioner, judge" in listing

            def disclosed() -> bool:
                if not any("lawful-access disclosure" in s for s in shown):
                    shown.append(alice.run("receive").stderr)
                return any("lawful-access disclosure" in s for s in shown)

            eventually(disclosed, "the disclosure notice")
            [notice] = [line for s in shown for line in s.splitlines() if "disclosure" in line]
            assert "CASE-2025-9" in notice and "scope: content, metadata" in notice
            assert "judge (issuing authority" in notice and "commissioner" in notice
            auditor = cli("auditor")
            auditor.env.update(clock.env)

            def audited() -> dict:  # type: ignore[type-arg]
                out = auditor.run("log", "audit", "--server", url, "--json").stdout
                return json.loads(out)["lawful_access"]  # type: ignore[no-any-return]

            eventually(lambda: audited()["total_records"] == 2, "the final record count")
            report = audited()
            assert (report["active"], report["past"], report["overdue_disclosures"]) == (0, 1, [])
            [w] = report["warrants"]
            assert w["approvers"] == ["commissioner", "judge"] and w["disclosed"]
            assert w["scope"] == ["content", "metadata"]
            text = auditor.run("log", "audit", "--server", url).stdout
            assert "lawful access (recomputed from the log)" in text and "2 records" in text

            # The agency detects a record the server altered: reported, exit 1.
            engine = make_engine(sqlite_url(server.data_dir))
            with begin_write(engine) as conn:
                first = conn.execute(select(access_records).order_by(access_records.c.id)).first()
                record = SealedRecord.from_bytes(bytes(first.record))
                altered = SealedRecord(
                    record.warrant_id,
                    record.device_id,
                    record.seq,
                    record.enc,
                    record.ciphertext[:-1] + bytes([record.ciphertext[-1] ^ 1]),
                )
                conn.execute(
                    update(access_records)
                    .where(access_records.c.id == first.id)
                    .values(record=altered.to_bytes())
                )
            engine.dispose()
            detected = authorities.run(
                "agency", "fetch", "--key", k["nca"], "--server", url, "--warrant", wid,
                "--insecure-dev", check=False,
            )  # fmt: skip
            assert detected.returncode == 1
            assert (
                "record 0 of device" in detected.stderr and "decryption_failed" in detected.stderr
            )
            assert "a reply inside the window" in detected.stdout  # the others still open

            # Bad input at the edge: one line, exit 2.
            bad = authorities.run(*[("yesterday" if a == START else a) for a in draft], check=False)
            assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
            extend = ["warrant", "extend", "--until", "+30d", "--server", url,
                      "--approver-key", k["judge"], "--approver-key", k["oversight"]]  # fmt: skip
            bad = authorities.run(*extend, "not-a-commitment", check=False)
            assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

            # A second warrant whose disclosure k approvers postpone, logged and bounded.
            authorities.run(*[a.replace("CASE-2025-9", "CASE-2") for a in draft])
            for key in ("judge", "commissioner"):
                authorities.run("warrant", "sign", warrant, "--key", k[key])
            authorities.run("warrant", "submit", warrant, "--server", url)
            [second] = [w for w in audited()["warrants"] if not w["disclosed"]]
            done = authorities.run(*extend, second["commitment"]).stdout
            assert done.startswith("disclosure due ")
            late = authorities.run(
                *[("+900000d" if a == "+30d" else a) for a in extend], second["commitment"],
                check=False,
            )  # fmt: skip
            assert late.returncode == 1 and late.stderr.startswith("disclosure_too_late:")
            [second] = [w for w in audited()["warrants"] if not w["disclosed"]]
            assert second["extensions"] == 1 and not second["disclosure_overdue"]
            text = auditor.run("log", "audit", "--server", url).stdout
            assert "approver set v1" in text and "; genesis" in text and "(extended 1x)" in text
        finally:
            bob.close()
