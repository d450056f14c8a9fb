"""Private-matching threshold events in the console, in a real browser against a real server
(docs/console.md, "Threshold events"; docs/protocol/private-matching.md).

The cheapest real event: the operator banks a few stand-in pictures (drawn here, nothing
abusive) and publishes a table with a threshold of 3 and no synthetic vouchers; mallory's real
client then sends bob the three banked pictures, two of them re-encoded so their hashes are near,
not equal. The server crosses the threshold and a reviewer opens the event in Chromium.

With ACCORD_SCREENSHOTS=1 the event page is also saved to docs/img/console-event.png.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import secrets
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from accord.client.client import AccordClient
from accord.client.operator import OperatorApi
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.hashers import hash_file
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.server.process import ServerProcess
from accord_testing import TEST_KDF_COST, eventually

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
PASS = "test passphrase"
REVIEWER = "rita"
BANK = "standins"
LABEL = "stand-in"
THRESHOLD = 3
PROCESSING_TIMEOUT_S = 60.0


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def stand_in_picture(seed: int) -> Image.Image:
    """A distinct, harmless picture per seed: a gradient with a few coloured shapes."""
    rng = random.Random(seed)
    img = Image.new("RGB", (320, 240))
    draw = ImageDraw.Draw(img)
    for y in range(240):
        draw.line([(0, y), (320, y)], fill=(40 + y // 3, 60 + seed * 30 % 120, 160 - y // 3))
    for _ in range(8):
        x, y = rng.randrange(0, 280), rng.randrange(0, 200)
        w, h = rng.randrange(30, 140), rng.randrange(30, 120)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x, y, x + w, y + h], fill=colour)
    return img


def _encoded(img: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **options)
    return out.getvalue()


@dataclass(frozen=True)
class EventWorld:
    """A server with a published table (threshold 3), a reviewer, and mallory ready to send
    bob the banked pictures (`sent`, with the PDQ distance each has from its bank entry)."""

    server: ServerProcess
    password: str
    mallory: AccordClient
    sent: list[Path]
    distances: list[int]

    @property
    def console(self) -> str:
        return f"{self.server.url}/console"


def _admin(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.url,
        headers={"Authorization": f"Bearer {server.admin_token()}"},
        timeout=30,
    )


@pytest.fixture(scope="module")
def event_world(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EventWorld]:
    root = tmp_path_factory.mktemp("events")
    server = ServerProcess(root / "server")
    server.start()
    mallory = None
    try:
        banked, sent = [], []
        for i in range(THRESHOLD):
            picture = stand_in_picture(i)
            banked.append(root / f"banked-{i}.png")
            banked[-1].write_bytes(_encoded(picture, "PNG"))
            # The first one as banked; the others re-encoded (and one resized): near duplicates.
            if i == 0:
                data = _encoded(picture, "PNG")
            else:
                shown = picture if i == 1 else picture.resize((288, 216))
                data = _encoded(shown, "JPEG", quality=70)
            sent.append(root / f"sent-{i}.{'png' if i == 0 else 'jpg'}")
            sent[-1].write_bytes(data)
        distances = [
            _distance(hash_file(b).pdq.hash.value, hash_file(s).pdq.hash.value)  # type: ignore[union-attr]
            for b, s in zip(banked, sent, strict=True)
        ]
        op = OperatorApi(server.url, server.admin_token())
        try:
            op.create_bank(BANK, 31)
            op.add_entries(
                BANK,
                [
                    BankEntry(signal_type="pdq", hash=hash_file(p).pdq.hash, label=LABEL)  # type: ignore[union-attr]
                    for p in banked
                ],
            )
            op.publish_table({"banks": [BANK], "threshold": THRESHOLD, "synthetic_rate_ppm": 0})
        finally:
            op.close()
        password = secrets.token_urlsafe(18)
        with _admin(server) as admin:
            created = admin.post(
                "/v1/reviewers", json={"name": REVIEWER, "password": password, "role": "reviewer"}
            )
            assert created.status_code == 201, created.text
        mallory = AccordClient.create_account(
            root / "m", server.url, "mallory", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        # A small threshold without synthetic vouchers keeps the world small; a client accepts
        # such a table only with floors its user lowered.
        mallory.vouchers.use_floors(
            replace(DEFAULT_MATCHING_FLOORS, min_threshold=THRESHOLD, min_synthetic_rate_ppm=0)
        )
        AccordClient.create_account(
            root / "b", server.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        ).close()
        yield EventWorld(
            server=server, password=password, mallory=mallory, sent=sent, distances=distances
        )
    finally:
        if mallory is not None:
            mallory.close()
        server.stop()


def _distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def _wait_for_event(server: ServerProcess) -> None:
    """Until the server has processed every voucher and logged the crossing."""
    with _admin(server) as admin:

        def crossed() -> bool:
            status = admin.get("/v1/matching/status").json()
            return bool(
                status["events"] and not status["queued"] and not status["crossings_unlogged"]
            )

        eventually(crossed, "the threshold event", timeout_s=PROCESSING_TIMEOUT_S)


def _sign_in(page: Any, world: EventWorld) -> None:
    page.goto(f"{world.console}/login")
    page.get_by_label("Name").fill(REVIEWER)
    page.get_by_label("Password").fill(world.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(world.console)


def test_a_threshold_event_from_crossing_to_review(page, event_world, tmp_path):
    world = event_world
    _sign_in(page, world)

    # Before anything crosses: the list is empty and says so.
    page.get_by_role("link", name="Threshold events").click()
    page.wait_for_url(f"{world.console}/events")
    expect(page.get_by_role("heading", name="Threshold events", level=1)).to_be_visible()
    expect(page.get_by_text("No threshold events yet.")).to_be_visible()

    # mallory sends bob the three banked pictures; the server crosses the threshold.
    world.mallory.send("bob", "pictures", world.sent)
    _wait_for_event(world.server)

    page.reload()
    row = page.get_by_role("row").filter(has_text="mallory")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("threshold")
    expect(row.get_by_role("cell").nth(3)).to_have_text(str(THRESHOLD))
    expect(row).to_contain_text("open")
    event_id = row.get_by_role("link").inner_text()
    assert re.fullmatch(r"e_[A-Za-z0-9_-]{16,32}", event_id)

    # The account filter, from the keyboard.
    page.get_by_label("Account").fill("bob")
    page.get_by_label("Account").press("Enter")
    expect(page.get_by_text("No threshold events for this account.")).to_be_visible()
    page.get_by_label("Account").fill("mallory")
    page.get_by_label("Account").press("Enter")
    link = page.get_by_role("link", name=event_id)
    link.focus()
    page.keyboard.press("Enter")

    # The event: who, when, the threshold, and each image with its bank entry and distance.
    page.wait_for_url(re.compile(rf"/console/events/{event_id}$"))
    expect(page.locator("#event-account")).to_have_text("mallory")
    expect(page.locator("#event-threshold")).to_contain_text(f"{THRESHOLD} distinct matching")
    expect(page.get_by_role("heading", name=re.compile("^Content warning"))).to_be_visible()
    figures = page.locator("figure.derivative")
    expect(figures).to_have_count(THRESHOLD)
    shown = sorted(
        int(re.sub(r"\D", "", figures.nth(i).locator(".distance").inner_text()))
        for i in range(THRESHOLD)
    )
    assert shown == sorted(world.distances) and shown[0] == 0 and shown[-1] > 0
    for i in range(THRESHOLD):
        expect(figures.nth(i)).to_contain_text(BANK)
        expect(figures.nth(i)).to_contain_text(LABEL)
        image = figures.nth(i).get_by_role("img", name=re.compile(f"^Matched image {i + 1}: 64"))
        expect(image).to_be_visible()
        page.wait_for_function(
            "img => img.complete && img.naturalWidth === 64 && img.naturalHeight === 64",
            arg=image.element_handle(),
        )
        assert image.evaluate("img => getComputedStyle(img).imageRendering") == "pixelated"
        assert image.evaluate("img => img.clientWidth") == 256
    _screenshot(page, tmp_path, "console-event.png")

    # The image route: a 64 x 64 grayscale PNG, never cached, with the console's headers.
    response = page.request.get(f"{world.console}/events/{event_id}/images/0")
    assert response.ok and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"].startswith("default-src 'self'")
    assert response.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(response.body())) as img:
        assert img.size == (64, 64) and img.mode == "L"
    missing = page.request.get(f"{world.console}/events/{event_id}/images/{THRESHOLD}")
    assert missing.status == 404

    # Every view is in the audit trail under the reviewer's name.
    page.get_by_role("link", name="Audit trail").click()
    audit = page.get_by_role("table")
    expect(audit.get_by_role("cell", name="view_match_event", exact=True).first).to_be_visible()
    images = audit.get_by_role("row").filter(has_text="view_match_image")
    assert images.count() >= THRESHOLD + 1
    expect(audit.get_by_role("link", name=f"{event_id}/0").first).to_be_visible()

    # The event gets a report's actions: confirm, then escalate and export the package.
    page.goto(f"{world.console}/events/{event_id}")
    expect(page.get_by_role("heading", name="Export")).to_have_count(0)
    page.get_by_label("Note for the audit trail").fill("matches the stand-ins")
    page.get_by_role("button", name="Confirm match").click()
    expect(page.get_by_role("status")).to_contain_text("Match confirmed")
    expect(page.locator("h1 .status")).to_have_text("confirmed")
    expect(page.get_by_role("button", name="Reopen")).to_be_visible()
    page.get_by_role("button", name="Escalate").click()
    expect(page.locator("h1 .status")).to_have_text("escalated")
    expect(page.get_by_role("button", name="Escalate")).to_have_count(0)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Export as XML")).click()
    assert download.value.suggested_filename == f"{event_id}.zip"
    with zipfile.ZipFile(download.value.path()) as package:
        assert package.namelist() == ["report.xml", "case.json"]
        case = json.loads(package.read("case.json"))
    assert case["event_id"] == event_id and case["reported_account"]["account"] == "mallory"
    assert sorted(i["distance_bits"] for i in case["images"]) == sorted(world.distances)
    page.get_by_role("link", name="Audit trail").click()
    audit = page.get_by_role("table")
    for action in ("confirm", "escalate", "export_xml"):
        row = audit.get_by_role("row").filter(has_text=action).filter(has_text=event_id)
        expect(row.first).to_contain_text(REVIEWER)


def test_event_pages_need_a_session(page, event_world):
    world = event_world
    for path in ("/events", "/events/e_AAAAAAAAAAAAAAAAAAAAAA"):
        response = page.goto(f"{world.console}{path}")
        assert response is not None and response.ok
        assert page.url == f"{world.console}/login"
    image = page.request.get(
        f"{world.console}/events/e_AAAAAAAAAAAAAAAAAAAAAA/images/0", max_redirects=0
    )
    assert image.status == 303 and image.headers["location"] == "/console/login"


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ACCORD_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG / name)
