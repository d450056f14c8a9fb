"""Approver sets on a running server: changes need k of the current set, a removed approver
counts for nothing, devices pin and follow the set; a device's own maximum duration holds even
against a provider configured with a longer one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lawful_access_world import Authorities, account, device_refuses, tamper_warrant

from accord.client import authority as au
from accord.client.client import AccordClient
from accord.errors import AuthorizationError
from accord.server.process import ServerProcess
from accord_testing import TestClock, start_server

World = tuple[ServerProcess, Authorities, Path]


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock) -> Iterator[World]:
    """A provider that accepts windows of up to 60 days (devices keep their 30)."""
    root = tmp_path_factory.mktemp("lawful-access-sets")
    server = start_server(
        root / "server", clock=module_clock, env={"ACCORD_WARRANT_MAX_DURATION": "60d"}
    )
    try:
        authorities = Authorities.make(root / "authorities", module_clock)
        authorities.publish(server)
        authorities.register(server)
        yield server, authorities, root
    finally:
        server.stop()


@pytest.fixture(scope="module")
def early(lenient: World) -> Iterator[AccordClient]:
    """An account created (and its approver set pinned) before any change of the set."""
    server, _, root = lenient
    client = account(root, server, "early")
    yield client
    client.close()


def test_duration_above_maximum_refused_by_the_device(lenient: World, early: AccordClient) -> None:
    server, auth, _ = lenient
    signed = auth.warrant("early", end=auth.now() + 40 * 86400, max_duration_s=60 * 86400)
    auth.submit(server, signed)  # this provider's limit is 60 days
    device_refuses(early, "warrant_too_long")


def test_approver_set_change_needs_k_of_the_current_set(
    lenient: World, early: AccordClient
) -> None:
    server, auth, _ = lenient
    v1 = auth.approver_set
    assert early.access.approver_set() == auth.current_set
    unsigned = au.create_approver_set(
        2,
        [auth.keys[n].approver for n in ("commissioner", "judge", "newcomer")],
        replaces=v1,
    )
    for signers, code in (
        (("judge",), "threshold_not_met"),
        (("newcomer", "outsider"), "approver_not_member"),
        (("judge", "judge"), "duplicate_approver"),
    ):
        signed = au.sign_approver_set_with(unsigned, auth.signers(*signers))
        with pytest.raises(AuthorizationError) as info:
            au.publish_approver_set(server.url, server.admin_token(), signed)
        assert info.value.code == code
    auth.publish(
        server,
        ("commissioner", "judge", "newcomer"),
        signed_by=("judge", "oversight"),
        replaces=v1,
    )
    early.access.sync()
    assert early.access.approver_set() == auth.current_set
    assert early.access.approver_set().version == 2  # type: ignore[union-attr]


def test_signature_by_removed_approver_refused(lenient: World, early: AccordClient) -> None:
    server, auth, _ = lenient
    assert auth.current_set.version == 2 and auth.current_set.member("oversight") is None
    old_key = auth.agency
    # The agency key was registered under version 1: it must be registered again.
    with pytest.raises(AuthorizationError) as info:
        auth.submit(server, auth.warrant("early", agency=old_key))
    assert info.value.code == "agency_key_unregistered"
    auth.register(server, signed_by=("judge", "newcomer"))
    removed = auth.warrant("early", signed_by=("oversight", "judge"))
    with pytest.raises(AuthorizationError) as info:
        auth.submit(server, removed)
    assert info.value.code == "approver_not_member"
    # A provider that serves it anyway: the device, now on version 2, refuses it.
    wid = auth.submit(server, auth.warrant("early")).warrant_id
    tamper_warrant(server, wid, signed_warrant=removed)
    device_refuses(early, "approver_not_member")
    # What k members of the current set approve is accepted.
    good = auth.submit(server, auth.warrant("early", signed_by=("newcomer", "judge")))
    assert good.warrant_id in early.access.sync().accepted


def test_configured_approver_set_is_pinned(lenient: World, tmp_path: Path) -> None:
    server, auth, _ = lenient
    configured = account(
        tmp_path, server, "configured", approver_set=auth.current_set.set_hash.hex()
    )
    elsewhere = account(tmp_path, server, "elsewhere", approver_set="ab" * 32)
    try:
        assert configured.access.approver_set() == auth.current_set
        assert elsewhere.access.approver_set() is None  # the server shows another set
        auth.submit(server, auth.warrant("elsewhere", signed_by=("newcomer", "judge")))
        device_refuses(elsewhere, "approver_set_mismatch")
    finally:
        configured.close()
        elsewhere.close()
