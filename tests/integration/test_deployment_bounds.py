"""The bounds and floors a device reports are the ones it applies, and a deployment manifest's
own values (not the defaults) are the ones applied.

A real server and witness; the server's own bounds are set wide (as a lax operator would), so
whatever is refused here is refused by the device. Two deployment manifests for the same log:
one with the default bounds and floors, one stricter (a shorter disclosure delay and start
skew, a higher matching threshold). The same warrants and the same table pass a device under
the first and are refused by a device under the second. The database plays no part: SQLite.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accord.client.client import AccordClient
from accord.errors import ConfigurationError
from accord.protocols.access.warrant import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
)
from accord.protocols.manifest import LawfulAccessBounds
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.server.process import ServerProcess
from accord_testing import TestClock, make_manifest, start_server
from integration.lawful_access_world import (
    GENESIS,
    Authorities,
    account,
    start_witness,
    witnessed_log,
)

DAY = 86400
pytestmark = pytest.mark.timeout(300)

STRICT_DISCLOSURE_DELAY_S = 30 * DAY
STRICT_START_SKEW_S = 600
STRICT_FLOORS = dataclasses.replace(DEFAULT_MATCHING_FLOORS, min_threshold=16)


@dataclass
class Deployment:
    server: ServerProcess
    auth: Authorities
    root: Path
    default_manifest: str
    strict_manifest: str


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment-bounds")
    w = witnessed_log(root)
    witness = start_witness(root, w.witness_key, w.log_vkey, w.port, module_clock)
    try:
        server = start_server(
            w.data,
            clock=module_clock,
            extra_args=w.server_args,
            env={  # the operator's own checks out of the way
                "ACCORD_WARRANT_MAX_START_SKEW": "1d",
                "ACCORD_WARRANT_MAX_DISCLOSURE_DELAY": "2000d",
            },
        )
        try:
            auth = Authorities.make(root / "authorities", module_clock)
            auth.publish(server)
            auth.register(server)
            genesis = GENESIS[server.url]
            yield Deployment(
                server,
                auth,
                root,
                make_manifest(w.log_vkey, [w.witness_vkey], approver_set=genesis),
                make_manifest(
                    w.log_vkey,
                    [w.witness_vkey],
                    approver_set=genesis,
                    matching_floors=STRICT_FLOORS,
                    max_disclosure_delay_s=STRICT_DISCLOSURE_DELAY_S,
                    max_start_skew_s=STRICT_START_SKEW_S,
                ),
            )
        finally:
            server.stop()
    finally:
        witness.kill()
        witness.wait()


def _refusals(client: AccordClient) -> list[str]:
    result = client.access.sync()
    assert result.accepted == [] and client.access.active_warrants() == []
    return [r.code for r in result.refused]


def _accepts(client: AccordClient, warrant_id: str) -> None:
    result = client.access.sync()
    assert result.accepted == [warrant_id], result.refused


def test_without_a_manifest_the_device_reports_what_it_enforces(deployment: Deployment) -> None:
    """Insecure development mode: the configured approver set with the default delays, the
    default floors; without a configured set, no bounds at all (lawful access is refused)."""
    server, auth, root = deployment.server, deployment.auth, deployment.root
    dev = account(root, server, "dev")
    unset = account(root, server, "unset", approver_set=None)
    try:
        bounds = dev.lawful_access_bounds()
        assert bounds == LawfulAccessBounds(
            approver_genesis_set=GENESIS[server.url],
            max_disclosure_delay_s=DEFAULT_MAX_DISCLOSURE_DELAY_S,
            max_start_skew_s=DEFAULT_MAX_START_SKEW_S,
        )
        assert dev.matching_floors() == DEFAULT_MATCHING_FLOORS
        # One day beyond the reported delay is refused; the reported delay itself is not.
        late = auth.warrant("dev", disclose_after_s=bounds.max_disclosure_delay_s + DAY)
        auth.submit(server, late)
        assert "disclosure_too_late" in _refusals(dev)
        at = auth.warrant("dev", disclose_after_s=bounds.max_disclosure_delay_s)
        _accepts(dev, auth.submit(server, at).warrant_id)

        with pytest.raises(ConfigurationError) as unconfigured:
            unset.lawful_access_bounds()
        assert unconfigured.value.code == "approver_set_required"
        auth.submit(server, auth.warrant("unset"))
        assert "approver_set_required" in _refusals(unset)
    finally:
        dev.close()
        unset.close()
