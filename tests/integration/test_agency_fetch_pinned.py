"""`accord agency fetch` reads the target's device keys from the deployment's log: the log key
and witnesses of its manifest (`--manifest` or ACCORD_MANIFEST), or those given with
`--log-key`/`--witness`. With none it refuses as a client without a manifest does; only with
--insecure-dev does it take the server's key, and then says so. A real server and witness."""

from __future__ import annotations

import json
from pathlib import Path

from lawful_access_world import account, witnessed_deployment

from accord.protocols.translog.note import generate_cosigner, generate_signer
from accord.server.translog import DEFAULT_LOG_ORIGIN
from accord_testing import Cli, TestClock, make_manifest

UNPINNED = "INSECURE DEVELOPMENT MODE: the log's key is the one the server names"


def test_agency_fetch_checks_the_log_against_the_deployment_manifest(
    tmp_path: Path, clock: TestClock
) -> None:
    with witnessed_deployment(tmp_path, clock) as d:
        server, auth = d.server, d.auth
        manifest = tmp_path / "manifest.note"
        manifest.write_text(d.manifest())
        pat = account(tmp_path, server, "pat", manifest=d.manifest())
        account(tmp_path, server, "bob").close()
        try:
            wid = auth.submit(server, auth.warrant("pat")).warrant_id
            assert pat.access.sync().accepted == [wid]
            pat.send("bob", "copied under the warrant")
        finally:
            pat.close()

        agency = Cli(tmp_path / "agency", env=clock.env)
        assert auth.agency_key_file is not None
        fetch = ("agency", "fetch", "--key", str(auth.agency_key_file), "--server", server.url,
                 "--warrant", wid, "--json")  # fmt: skip

        def texts(stdout: str) -> list[str]:
            return [json.loads(line)["text"] for line in stdout.splitlines()]

        pinned = agency.run(*fetch, "--manifest", str(manifest))
        assert texts(pinned.stdout) == ["copied under the warrant"] and pinned.stderr == ""
        agency.env["ACCORD_MANIFEST"] = str(manifest)
        assert texts(agency.run(*fetch).stdout) == ["copied under the warrant"]
        del agency.env["ACCORD_MANIFEST"]

        # A manifest naming another log (the provider's own) or another witness: refused.
        own_log = make_manifest(generate_signer(DEFAULT_LOG_ORIGIN)[1], [d.log.witness_vkey])
        other_witness = make_manifest(d.log.log_vkey, [generate_cosigner("other.test/w")[1]])
        for note in (own_log, other_witness):
            manifest.write_text(note)
            refused = agency.run(*fetch, "--manifest", str(manifest), check=False)
            assert refused.returncode == 1 and refused.stdout == ""
            assert len(refused.stderr.strip().splitlines()) == 1

        # No anchors at all: refused like a client without a manifest (one line, exit 2) ...
        unpinned = agency.run(*fetch, check=False)
        assert unpinned.returncode == 2 and unpinned.stdout == ""
        assert len(unpinned.stderr.strip().splitlines()) == 1 and "manifest" in unpinned.stderr
        both = agency.run(*fetch, "--manifest", str(manifest), "--insecure-dev", check=False)
        assert both.returncode == 2
        # ... unless it is told to trust the server, which it then says on every fetch.
        dev = agency.run(*fetch, "--insecure-dev")
        assert texts(dev.stdout) == ["copied under the warrant"]
        assert dev.stderr.startswith(UNPINNED) and len(dev.stderr.strip().splitlines()) == 1
