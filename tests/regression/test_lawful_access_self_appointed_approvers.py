"""Self-appointed approvers (issue 14): the provider makes its own approvers and agency.

The provider generates approver keys itself, signs a version 1 approver set with them, appends
it to its own log and makes it its server's current set (editing its database), registers its
own "agency" under it and submits a warrant. Devices take the genesis set from their
configuration, never from the server: a configured device refuses the warrant
(``approver_set_mismatch``), an unconfigured one refuses lawful access altogether
(``approver_set_required``), and the audit flags the provider's set as a second genesis.
Run on SQLite and PostgreSQL: the attack is an edit of the provider's database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from accord.client import authority as au
from accord.client.audit import audit_log
from accord.primitives.hpke import generate_hpke_key_pair
from accord.protocols.access.agency import AgencyKey, SignedAgencyKey, sign_agency_key
from accord.protocols.access.log_entries import ApproverSetEntry
from accord.server.process import ServerProcess
from accord.storage.db import make_engine, sqlite_url
from accord.storage.schema import access_log_index
from accord.storage.translog import TransparencyLogStore
from integration.lawful_access_world import GENESIS, Authorities, account, server_db


def _append_to_own_log(server: ServerProcess, entry: bytes) -> int:
    """The provider appends to the log it runs (its server signs the next checkpoint)."""
    engine = make_engine(server.db_url or sqlite_url(server.data_dir))
    try:
        return TransparencyLogStore(engine).append_batch([entry])
    finally:
        engine.dispose()


def test_self_appointed_approvers_not_in_the_genesis_set_are_refused(
    server: ServerProcess,
    tmp_path: Path,
    unique: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = server.clock  # type: ignore[attr-defined]
    real = Authorities.make(tmp_path / "real", clock)
    real.publish(server)  # the deployment's genesis set, configured in its clients
    genesis = GENESIS[server.url]
    alice = account(tmp_path, server, unique("alice"))
    naive = account(tmp_path, server, unique("naive"), approver_set=None)
    try:
        # The provider's own "approvers": keys it generated, a set signed by them.
        own = Authorities.make(tmp_path / "own", clock)
        members = [own.keys[m].approver for m in ("commissioner", "judge", "oversight")]
        signed_set = au.sign_approver_set_with(
            au.create_approver_set(2, members), own.signers("judge", "commissioner")
        )
        index = _append_to_own_log(server, ApproverSetEntry(signed_set).to_bytes())
        with server_db(server) as conn:  # ... and its server now serves it as current
            conn.execute(
                access_log_index.insert().values(
                    kind="approver_set",
                    ref=signed_set.approver_set.set_hash,
                    version=1,
                    log_index=index,
                    created_at=own.now(),
                )
            )
        # Its own "agency", registered under its own set, and a warrant against each device.
        key = AgencyKey(
            agency_id="provider",
            name="National Crime Agency",
            public_key=generate_hpke_key_pair().public_key(),
            approver_set=signed_set.approver_set.set_hash,
            registered_at=own.now(),
        )
        signed_key = SignedAgencyKey(key)
        for signer in own.signers("judge", "oversight"):
            signed_key = sign_agency_key(signed_key, signer.signer)
        httpx.post(
            f"{server.url}/v1/access/agency-keys",
            json={"v": 1, "signed_agency_key": signed_key.to_obj()},
        ).raise_for_status()
        own.approver_set, own.agency = signed_set, key
        for target in (alice, naive):
            own.submit(server, own.warrant(target.account_name))

        refused = alice.access.sync()
        assert refused.accepted == [] and alice.access.active_warrants() == []
        assert "approver_set_mismatch" in [r.code for r in refused.refused]
        assert alice.access.approver_set() is not None
        assert alice.access.approver_set().set_hash.hex() == genesis  # type: ignore[union-attr]
        monkeypatch.delenv("ACCORD_APPROVER_SET", raising=False)
        unconfigured = naive.access.sync()
        assert unconfigured.accepted == [] and naive.access.active_warrants() == []
        assert "approver_set_required" in [r.code for r in unconfigured.refused]

        # The audit follows the chain from the genesis set and flags the provider's set.
        monkeypatch.setenv("ACCORD_APPROVER_SET", genesis)
        report = audit_log(server.url, tmp_path / "auditor", clock=clock).access
        assert report is not None and report.second_genesis == (index,)
        assert [s.status for s in report.approver_sets] == ["genesis", "second genesis"]
        provider_warrants = [w for w in report.warrants if w.approver_set_version is None]
        assert len(provider_warrants) == 2
        assert [a.valid for a in report.agencies] == [False]
    finally:
        alice.close()
        naive.close()
