"""Browser tests: Playwright drives Debian's Chromium against a real server process.

Chromium comes from scripts/install-browser.sh (Playwright's own browser download is not used).
Without /usr/bin/chromium the tests are skipped with the reason, except in CI (CI set), where
they must run and so fail instead.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from accord.client.client import AccordClient
from accord.server.process import ServerProcess
from accord_testing import TEST_KDF_COST

CHROMIUM = Path("/usr/bin/chromium")
PASS = "test passphrase"
REVIEWER = "rita"
REVIEWER_ROLE = "admin"
REPORT_REASON = "sent me an image I did not want"
REPORTED_TEXT = "look at this <b>picture</b>"
PHOTO_SIZE = (96, 72)
PHOTO_SQUARE_PX = 8


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real browser (Chromium) via Playwright")


def _unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing; run scripts/install-browser.sh"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed; pip install -e '.[dev]'"
    return None


def _require_browser() -> None:
    problem = _unavailable()
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI: {problem}")
    pytest.skip(problem)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def checkerboard_png() -> bytes:
    """A small, sharp picture: any blur shows as a loss of contrast between neighbours."""
    img = Image.new("RGB", PHOTO_SIZE)
    px = img.load()
    assert px is not None
    for y in range(PHOTO_SIZE[1]):
        for x in range(PHOTO_SIZE[0]):
            on = (x // PHOTO_SQUARE_PX + y // PHOTO_SQUARE_PX) % 2
            px[x, y] = (230, 40, 40) if on else (20, 20, 200)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


@dataclass(frozen=True)
class ConsoleWorld:
    """A server with one verified report (alice sent bob a picture; bob reported it) and a
    reviewer who may sign in to the console."""

    server: ServerProcess
    report_id: str
    reviewer: str
    password: str
    alice: AccordClient
    photo: bytes
    photo_size: tuple[int, int] = PHOTO_SIZE
    reason: str = REPORT_REASON
    reported_text: str = REPORTED_TEXT

    @property
    def console(self) -> str:
        return f"{self.server.url}/console"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    _require_browser()
    root = tmp_path_factory.mktemp("console")
    server = ServerProcess(root / "server")
    server.start()
    alice = bob = None
    try:
        alice = AccordClient.create_account(
            root / "a", server.url, "alice", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        bob = AccordClient.create_account(
            root / "b", server.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        photo = checkerboard_png()
        (root / "photo.png").write_bytes(photo)
        alice.send("bob", "hello bob")
        alice.send("bob", REPORTED_TEXT, [root / "photo.png"])
        received = bob.receive().messages
        assert [m.text for m in received] == ["hello bob", REPORTED_TEXT]
        report_id = bob.report(received[1].id, reason=REPORT_REASON, context=1)
        password = secrets.token_urlsafe(18)
        created = httpx.post(
            f"{server.url}/v1/reviewers",
            json={"name": REVIEWER, "password": password, "role": REVIEWER_ROLE},
            headers={"Authorization": f"Bearer {server.admin_token()}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        yield ConsoleWorld(
            server=server,
            report_id=report_id,
            reviewer=REVIEWER,
            password=password,
            photo=photo,
            alice=alice,
        )
    finally:
        for client in (alice, bob):
            if client is not None:
                client.close()
        server.stop()
