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
from lawful_access_world import (
    GENESIS,
    Authorities,
    account,
    witnessed_deployment,
)

from accord.cli.demo_matching import make_picture
from accord.client.client import AccordClient
from accord.errors import ConfigurationError, VerificationError
from accord.protocols.access.warrant import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
)
from accord.protocols.manifest import (
    DEFAULT_MAX_DISCLOSURE_DELAY_S as MANIFEST_DISCLOSURE_DELAY_S,
)
from accord.protocols.manifest import (
    DEFAULT_MAX_START_SKEW_S as MANIFEST_START_SKEW_S,
)
from accord.protocols.manifest import LawfulAccessBounds
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.server.process import ServerProcess
from accord_testing import TestClock
from matching_testing import bank_and_publish

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
    lax = {  # the operator's own checks out of the way
        "ACCORD_WARRANT_MAX_START_SKEW": "1d",
        "ACCORD_WARRANT_MAX_DISCLOSURE_DELAY": "2000d",
    }
    with witnessed_deployment(root, module_clock, lax) as d:
        yield Deployment(
            d.server,
            d.auth,
            root,
            d.manifest(),
            d.manifest(
                matching_floors=STRICT_FLOORS,
                max_disclosure_delay_s=STRICT_DISCLOSURE_DELAY_S,
                max_start_skew_s=STRICT_START_SKEW_S,
            ),
        )


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


def test_the_manifests_bounds_not_the_defaults_are_applied(deployment: Deployment) -> None:
    server, auth, root = deployment.server, deployment.auth, deployment.root
    lenient = account(root, server, "lenient", manifest=deployment.default_manifest)
    strict = account(root, server, "strict", manifest=deployment.strict_manifest)
    try:
        assert lenient.lawful_access_bounds() == LawfulAccessBounds(
            approver_genesis_set=GENESIS[server.url],
            max_disclosure_delay_s=MANIFEST_DISCLOSURE_DELAY_S,
            max_start_skew_s=MANIFEST_START_SKEW_S,
        )
        assert strict.lawful_access_bounds() == LawfulAccessBounds(
            approver_genesis_set=GENESIS[server.url],
            max_disclosure_delay_s=STRICT_DISCLOSURE_DELAY_S,
            max_start_skew_s=STRICT_START_SKEW_S,
        )
        assert STRICT_DISCLOSURE_DELAY_S < MANIFEST_DISCLOSURE_DELAY_S
        assert STRICT_START_SKEW_S < MANIFEST_START_SKEW_S

        # Disclosure 60 days after the window: within the default bound, beyond the strict one.
        for target in ("lenient", "strict"):
            auth.submit(server, auth.warrant(target, disclose_after_s=60 * DAY))
        lenient_result = lenient.access.sync()
        assert len(lenient_result.accepted) == 1, lenient_result.refused
        assert "disclosure_too_late" in _refusals(strict)

        # A window starting half an hour before it was logged: within the default skew (1 h),
        # beyond the strict one (10 min); the witness's cosignature dates the logging.
        start = auth.now() - 1800
        for target in ("lenient", "strict"):
            late_start = auth.warrant(
                target, start=start, end=auth.now() + 3600, disclose_after_s=7 * DAY
            )
            auth.submit(server, late_start)
        lenient_result = lenient.access.sync()
        assert len(lenient_result.accepted) == 1, lenient_result.refused
        assert "warrant_retroactive" in _refusals(strict)
    finally:
        lenient.close()
        strict.close()


def test_the_manifests_floors_not_the_defaults_are_applied(
    deployment: Deployment, tmp_path: Path
) -> None:
    server, root = deployment.server, deployment.root
    lenient = account(root, server, "lenient-m", manifest=deployment.default_manifest)
    strict = account(root, server, "strict-m", manifest=deployment.strict_manifest)
    account(root, server, "bob-m").close()
    pictures = [make_picture(tmp_path / f"p{i}.png", 700 + i) for i in range(3)]
    try:
        assert lenient.matching_floors() == DEFAULT_MATCHING_FLOORS
        assert strict.matching_floors() == STRICT_FLOORS
        # A table at the default floors (threshold 12): the strict deployment's floor is 16.
        table = bank_and_publish(server, "bounds-bank", pictures[:1])
        assert table["params"]["threshold"] == DEFAULT_MATCHING_FLOORS.min_threshold
        lenient.send("bob-m", "a photo", [pictures[1]])
        with pytest.raises(VerificationError) as refused:
            strict.send("bob-m", "a photo", [pictures[2]])
        assert refused.value.code == "matching_params_below_floor"
        assert "threshold 12 (floor 16)" in refused.value.message
        # At the strict floor both send.
        bank_and_publish(server, "bounds-bank-16", pictures[:1], threshold=16)
        strict.send("bob-m", "a photo", [pictures[2]])
        lenient.send("bob-m", "another photo", [pictures[1]])
    finally:
        lenient.close()
        strict.close()
