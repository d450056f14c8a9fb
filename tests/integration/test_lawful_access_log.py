"""A warrant counts only if it is in the witnessed log: a device refuses one that is not in the
log, or that is proven only against a checkpoint the witnesses did not cosign, or against a
view of the log that forks from the one it saw before."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lawful_access_world import (
    Authorities,
    account,
    device_refuses,
    server_db,
    start_witness,
    tamper_warrant,
    warrant_row,
    witnessed_log,
)
from sqlalchemy import select, update

from accord.protocols.access.log_entries import WarrantCommitmentEntry
from accord.protocols.access.warrant import commit_warrant
from accord.server.process import ServerProcess
from accord.storage.translog import tlog_entries, tlog_nodes
from accord_testing import TestClock, make_manifest, start_server


@dataclass
class Witnessed:
    server: ServerProcess
    auth: Authorities
    root: Path
    witness_vkey: str
    witness_key: Path
    log_vkey: str
    port: int
    witness: subprocess.Popen[bytes]

    def manifest(self) -> str:
        """The deployment's manifest: this log, this witness, the published approver set."""
        return make_manifest(
            self.log_vkey,
            [self.witness_vkey],
            approver_set=self.auth.current_set.set_hash.hex(),
        )


@pytest.fixture(scope="module")
def witnessed(
    tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock
) -> Iterator[Witnessed]:
    root = tmp_path_factory.mktemp("lawful-access-log")
    w = witnessed_log(root)
    key, vkey, log_vkey, port = w.witness_key, w.witness_vkey, w.log_vkey, w.port
    witness = start_witness(root, key, log_vkey, port, module_clock)
    witnessed: Witnessed | None = None
    try:
        server = start_server(w.data, clock=module_clock, extra_args=w.server_args)
        try:
            auth = Authorities.make(root / "authorities", module_clock)
            auth.publish(server)
            auth.register(server)
            witnessed = Witnessed(server, auth, root, vkey, key, log_vkey, port, witness)
            yield witnessed
        finally:
            server.stop()
    finally:
        # A test may have replaced the witness; the object holds the one running now.
        for proc in {witness, witnessed.witness if witnessed is not None else witness}:
            proc.kill()
            proc.wait()


def test_warrant_not_in_log_refused(witnessed: Witnessed) -> None:
    """The provider shows a commitment entry the log does not hold at that index (it swaps the
    stored bytes; the tree still commits to the original)."""
    server, auth = witnessed.server, witnessed.auth
    target = account(witnessed.root, server, "unlogged", manifest=witnessed.manifest())
    try:
        wid = auth.submit(server, auth.warrant("unlogged")).warrant_id
        row = warrant_row(server, wid)
        never_logged = auth.warrant("unlogged")
        commitment, nonce = commit_warrant(never_logged)
        w = never_logged.warrant
        entry = WarrantCommitmentEntry(
            commitment=commitment,
            start_time=w.start_time,
            end_time=w.end_time,
            disclosure_time=w.disclosure_time,
            scope=w.scope,
            approver_ids=("commissioner", "judge"),
            approver_set=w.approver_set,
            delivery_key_id=w.delivery_key_id,
        )
        with server_db(server) as conn:
            conn.execute(
                update(tlog_entries)
                .where(tlog_entries.c.idx == row.commitment_index)
                .values(data=entry.to_bytes())
            )
        tamper_warrant(server, wid, signed_warrant=never_logged, nonce=nonce)
        device_refuses(target, "not_in_log")
    finally:
        target.close()


def test_warrant_proven_against_uncosigned_checkpoint_refused(witnessed: Witnessed) -> None:
    server, auth = witnessed.server, witnessed.auth
    target = account(witnessed.root, server, "uncosigned", manifest=witnessed.manifest())
    try:
        witnessed.witness.kill()  # the witnesses are unreachable: nothing new is cosigned
        witnessed.witness.wait()
        wid = auth.submit(server, auth.warrant("uncosigned")).warrant_id
        result = target.access.sync()
        assert result.accepted == [] and target.access.active_warrants() == []
        assert [(r.what, r.code) for r in result.refused] == [("sync", "witness_quorum_not_met")]
        # Once a witness cosigns a checkpoint that includes it, the same warrant is accepted.
        witnessed.witness = start_witness(
            witnessed.root, witnessed.witness_key, witnessed.log_vkey, witnessed.port,
            witnessed.server.clock,  # type: ignore[attr-defined]
        )  # fmt: skip
        account(witnessed.root, server, "later").close()  # the next append is cosigned
        assert target.access.sync().accepted == [wid]
    finally:
        target.close()


def test_warrant_proven_against_forked_checkpoint_refused(witnessed: Witnessed) -> None:
    """The provider rewrites its tree after the device saw it, then logs a warrant on the
    rewritten one. The witness will not cosign it; a device that requires no witness still
    refuses, because the new view is not consistent with the one it saw."""
    server, auth = witnessed.server, witnessed.auth
    cosigned = account(witnessed.root, server, "forked-w", manifest=witnessed.manifest())
    plain = account(witnessed.root, server, "forked")  # trusts the log key alone
    try:
        cosigned.access.sync()
        with server_db(server) as conn:
            for node in conn.execute(select(tlog_nodes)).all():
                conn.execute(
                    update(tlog_nodes)
                    .where(tlog_nodes.c.id == node.id)
                    .values(hash=hashlib.sha256(b"fork" + bytes(node.hash)).digest())
                )
        for target in ("forked", "forked-w"):
            auth.submit(server, auth.warrant(target))
        # Not consistent with what it saw / not cosigned by the witness.
        for client, code in ((plain, "verification_failed"), (cosigned, "witness_quorum_not_met")):
            result = client.access.sync()
            assert result.accepted == [] and client.access.active_warrants() == []
            assert [(r.what, r.code) for r in result.refused] == [("sync", code)]
    finally:
        cosigned.close()
        plain.close()
