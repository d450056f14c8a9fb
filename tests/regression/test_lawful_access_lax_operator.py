"""A provider that configures its own server to accept what devices must refuse (issue 14).

The operator sets its server's own bounds wide open (a start skew of a year, a disclosure delay
of two million years) so that the server logs a retroactive warrant and one whose disclosure
is a million years out. Devices apply the deployment's bounds whatever the server says: the
window may start at most `max_start_skew_s` before the witnesses first cosigned the warrant's
commitment (``warrant_retroactive``; the witnesses' timestamps, not the provider's, date it),
and disclosure may follow the window by at most `max_disclosure_delay_s`
(``disclosure_too_late``); the audit flags the latter. An honest server refuses both at
submission with the same codes. The database plays no part here: SQLite only, with a witness.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from accord.client import authority as au
from accord.client.audit import audit_log
from accord.errors import AuthorizationError, VerificationError
from accord.protocols.translog.note import (
    generate_signer,
    parse_skey,
    parse_unverified_note,
    parse_vkey,
    sign_note,
)
from accord.protocols.translog.verify import LogTrustPolicy
from accord.server.process import ServerProcess
from accord.server.translog import DEFAULT_LOG_ORIGIN
from accord_testing import Cli, TestClock, make_manifest, start_server
from integration.lawful_access_world import (
    GENESIS,
    Authorities,
    account,
    start_witness,
    witnessed_log,
)

DAY = 86400
MILLION_YEARS_S = 1_000_000 * 365 * DAY


@pytest.fixture(scope="module")
def lax(
    tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock
) -> Iterator[tuple[ServerProcess, Authorities, Path, str, str]]:
    root = tmp_path_factory.mktemp("lax-operator")
    w = witnessed_log(root)
    witness = start_witness(root, w.witness_key, w.log_vkey, w.port, module_clock)
    try:
        server = start_server(
            w.data,
            clock=module_clock,
            extra_args=w.server_args,
            env={
                "ACCORD_WARRANT_MAX_START_SKEW": "365d",
                "ACCORD_WARRANT_MAX_DISCLOSURE_DELAY": f"{2 * MILLION_YEARS_S // DAY}d",
            },
        )
        try:
            auth = Authorities.make(root / "authorities", module_clock)
            auth.publish(server)
            auth.register(server)
            # The deployment's manifest: its log, its witness, its genesis approver set.
            manifest = make_manifest(w.log_vkey, [w.witness_vkey], approver_set=GENESIS[server.url])
            yield server, auth, root, w.witness_vkey, manifest
        finally:
            server.stop()
    finally:
        witness.kill()
        witness.wait()


def test_retroactive_window_refused_by_the_device(
    lax: tuple[ServerProcess, Authorities, Path, str, str],
) -> None:
    """A window starting 20 days before the warrant existed, approvals dated before that: the
    lax server logs it; the device (witnesses pinned) refuses it and copies nothing, not even
    what the target sent after the window's claimed start."""
    server, auth, root, witness, manifest = lax
    alice = account(root, server, "alice", manifest=manifest)
    bob = account(root, server, "bob", manifest=manifest)
    try:
        alice.send("bob", "sent before any warrant existed")
        retro = auth.warrant("alice", start=auth.now() - 20 * DAY, end=auth.now() + 5 * DAY)
        assert all(a.approved_at <= retro.warrant.start_time for a in retro.approvals)
        wid = auth.submit(server, retro).warrant_id  # the lax operator logs it
        result = alice.access.sync()
        assert result.accepted == [] and alice.access.active_warrants() == []
        assert "warrant_retroactive" in [r.code for r in result.refused]
        alice.send("bob", "sent after the retroactive warrant was logged")
        assert auth.fetch(server, wid).records == []
    finally:
        alice.close()
        bob.close()


def test_retroactive_window_refused_by_an_honest_server(
    lax: tuple[ServerProcess, Authorities, Path, str, str],
) -> None:
    server, auth, root, _, _ = lax
    honest = start_server(root / "honest", clock=auth.clock)
    try:
        honest_auth = Authorities.make(root / "honest-authorities", auth.clock)
        honest_auth.publish(honest)
        honest_auth.register(honest)
        account(root / "h", honest, "carol").close()
        retro = honest_auth.warrant("carol", start=auth.now() - 20 * DAY, end=auth.now() + DAY)
        with pytest.raises(AuthorizationError) as info:
            honest_auth.submit(honest, retro)
        assert info.value.code == "warrant_retroactive"
        far = honest_auth.warrant("carol", disclose_after_s=MILLION_YEARS_S)
        with pytest.raises(AuthorizationError) as info:
            honest_auth.submit(honest, far)
        assert info.value.code == "disclosure_too_late"
    finally:
        honest.stop()


def test_disclosure_a_million_years_out_refused_and_flagged(
    lax: tuple[ServerProcess, Authorities, Path, str, str],
) -> None:
    server, auth, root, witness, manifest = lax
    dave = account(root, server, "dave", manifest=manifest)
    try:
        far = auth.warrant("dave", disclose_after_s=MILLION_YEARS_S)
        auth.submit(server, far)
        result = dave.access.sync()
        assert result.accepted == [] and dave.access.active_warrants() == []
        assert "disclosure_too_late" in [r.code for r in result.refused]
        report = audit_log(server.url, root / "auditor", clock=auth.clock).access
        assert report is not None
        assert any("disclosure_too_late" in why for _, why in report.invalid_entries)
        audited = Cli(root / "auditor-cli", env=auth.clock.env).run(
            "log", "audit", "--server", server.url, "--json", check=False
        )
        assert audited.returncode == 1, audited.stderr
        findings = json.loads(audited.stdout)["findings"]
        assert any(": lawful access: disclosure_too_late" in f for f in findings)
    finally:
        dave.close()


class _OwnLog(httpx.BaseTransport):
    """The provider answering the agency in its server's place: everything as the server
    says, except the log's checkpoint, which it signs with a key of its own."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self._signer = parse_skey(generate_signer(DEFAULT_LOG_ORIGIN)[0])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        if request.url.path != "/v1/log/checkpoint":
            return response
        text = parse_unverified_note(response.read().decode()).text
        return httpx.Response(200, text=sign_note(text, [self._signer]))


def test_agency_with_the_log_pinned_refuses_a_log_of_the_providers_own(
    lax: tuple[ServerProcess, Authorities, Path, str, str],
) -> None:
    """Device keys are read from the log; an agency that pins the log's key and witnesses
    (`agency fetch --log-key --witness`) refuses a log the provider signed itself, so the
    provider cannot slip it a device key of its own to sign forged records with."""
    server, auth, root, witness, manifest = lax
    erin = account(root, server, "erin", manifest=manifest)
    try:
        wid = auth.submit(server, auth.warrant("erin")).warrant_id
        assert erin.access.sync().accepted == [wid]
        erin.send("bob", "copied under the warrant")
        info = httpx.get(f"{server.url}/v1/log/info").json()
        log_key = parse_vkey(info["vkey"])
        pinned = LogTrustPolicy(
            origin=log_key.name,
            log_verifiers=(log_key,),
            witness_verifiers=(parse_vkey(witness),),
            witness_quorum=1,
        )
        assert auth.agency_key_file is not None
        key = au.load_agency_key(auth.agency_key_file)
        fetched = au.fetch_records(server.url, key, wid, log_policy=pinned)
        assert [r.plaintext for r in fetched.records] == [b"copied under the warrant"]
        with pytest.raises(VerificationError):
            au.fetch_records(server.url, key, wid, log_policy=pinned, transport=_OwnLog())
    finally:
        erin.close()
