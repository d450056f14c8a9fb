"""Reserved names through the real server (docs/console.md): no account or reviewer can be
called `operator`, `system` or the like and so read as the operator or the server.

One server per module and database kind.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from accord.client.client import AccordClient
from accord.errors import AccordError
from accord_testing import TEST_KDF_COST

PASS = "test passphrase"
REVIEWER_PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.timeout(300)


def _operator(server: Any) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token()}"},
        timeout=60,
    )


@pytest.mark.parametrize(
    "name", ["operator", "admin", "system", "accord", "root", "server", "accord-support"]
)
def test_reserved_names_are_refused(server, tmp_path, name):  # type: ignore[no-untyped-def]
    with pytest.raises(AccordError) as refused:
        AccordClient.create_account(tmp_path / "a", server.url, name, PASS, kdf_cost=TEST_KDF_COST)
    assert refused.value.code == "name_reserved"
    with _operator(server) as op:
        answer = op.post("/v1/reviewers", json={"name": name, "password": REVIEWER_PASSWORD})
    assert answer.status_code == 400 and answer.json()["code"] == "name_reserved"
