"""The reviewers' console in a real browser, against a real server (docs/console.md).

One reviewer's whole case: sign in with the keyboard, find the report in the queue, see the
verified sender, see only a blurred preview until choosing to view the attachment, suspend the
account, escalate and export. Then the refusals: a form without its CSRF token, a page without a
session. Then accessibility: every control has a name, landmarks, a visible focus outline.

With ACCORD_SCREENSHOTS=1 the queue and report pages are also saved to docs/img/.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from accord.errors import AccordError

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.timeout(300)]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
CONTROLS = "input:not([type=hidden]), select, button, textarea"


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def _screenshot(page: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("ACCORD_SCREENSHOTS") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, DOCS_IMG / name)


def _mean_neighbour_difference(png: bytes, size: tuple[int, int]) -> float:
    """Mean absolute difference between horizontally adjacent grey pixels at `size`."""
    with Image.open(io.BytesIO(png)) as img:
        grey = img.convert("L").resize(size, Image.Resampling.NEAREST)
    values = list(grey.tobytes())
    width = size[0]
    diffs = [abs(values[i] - values[i + 1]) for i in range(len(values) - 1) if (i + 1) % width != 0]
    return sum(diffs) / len(diffs)


def _xml_documents(export: bytes) -> str:
    """The XML of an export: the document itself, or every XML document of a ZIP package."""
    if not export.startswith(b"PK\x03\x04"):
        return export.decode("utf-8")
    with zipfile.ZipFile(io.BytesIO(export)) as package:
        names = [n for n in package.namelist() if n.endswith(".xml")]
        assert names, package.namelist()
        return "\n".join(package.read(n).decode("utf-8") for n in names)


def sign_in_with_keyboard(page: Any, world: Any) -> None:
    page.goto(f"{world.console}/login")
    expect(page).to_have_title(re.compile("Sign in"))
    page.get_by_label("Name").focus()
    page.keyboard.type(world.reviewer)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(world.password)
    page.keyboard.press("Enter")
    page.wait_for_url(world.console)


def test_review_a_report_from_queue_to_export(page, world, tmp_path):
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    sign_in_with_keyboard(page, world)

    # The queue: the report, newest first, with a link to it.
    expect(page.get_by_role("heading", name="Report queue")).to_be_visible()
    row = page.get_by_role("row").filter(has_text=world.report_id)
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("bob")
    expect(row).to_contain_text("open")
    _screenshot(page, tmp_path, "console-queue.png")
    page.get_by_label("Status").select_option("escalated")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No reports match.")).to_be_visible()
    page.get_by_label("Status").select_option("open")
    page.get_by_label("Reported account").fill("alice")
    page.get_by_label("Reported account").press("Enter")
    page.get_by_role("link", name=world.report_id).click()

    # The report: the verified sender, the messages in order, the reported one marked.
    page.wait_for_url(re.compile(rf"/console/reports/{world.report_id}$"))
    verified = page.get_by_role("region", name="Verified sender")
    expect(verified).to_contain_text("alice")
    expect(verified.locator("#verified-device")).to_have_text(re.compile(r"^[A-Za-z0-9_-]{4,32}$"))
    messages = page.locator("ol.messages > li")
    expect(messages).to_have_count(2)
    expect(messages.nth(0)).to_contain_text("hello bob")
    expect(messages.nth(1)).to_contain_text(world.reported_text)  # shown as text, not markup
    expect(messages.nth(1)).to_contain_text("Reported message")
    expect(messages.nth(1)).to_have_attribute("aria-current", "true")
    expect(page.get_by_role("region", name="The report")).to_contain_text(world.reason)
    expect(page.locator("#account-suspended")).to_have_text("No")

    # Before the reveal: a blurred preview, and the file itself never requested.
    file_url = re.compile(rf"/console/reports/{world.report_id}/attachments/0(\?|$)")
    preview = page.get_by_role("img", name=re.compile("Blurred preview of attachment 1"))
    expect(preview).to_be_visible()
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
    )
    expect(page.locator("img.revealed")).to_have_count(0)
    assert not [u for u in requests if file_url.search(u)]
    blurred = page.request.get(world.server.url + preview.get_attribute("src"))
    assert blurred.ok and blurred.headers["content-type"] == "image/png"
    assert blurred.body() != world.photo
    sharp = _mean_neighbour_difference(world.photo, world.photo_size)
    assert _mean_neighbour_difference(blurred.body(), world.photo_size) < sharp / 10
    expect(page.locator("figcaption")).to_contain_text("not viewed by any reviewer yet")
    _screenshot(page, tmp_path, "console-detail.png")

    # The reveal: a POST form, then the page shows the file itself.
    with page.expect_response(file_url) as shown:
        page.get_by_role("button", name=re.compile("^View attachment")).click()
    assert shown.value.status == 200 and shown.value.body() == world.photo
    revealed = page.locator("img.revealed")
    expect(revealed).to_be_visible()
    assert revealed.evaluate("img => img.naturalWidth") == world.photo_size[0]
    page.get_by_role("link", name="Hide attachment 1").click()
    expect(page.locator("img.revealed")).to_have_count(0)
    expect(page.locator("figcaption")).to_contain_text("viewed by a reviewer")

    # Suspend: the account overview says so, the button turns into Unsuspend, alice is cut off.
    page.get_by_label("Note for the audit trail").fill("unsolicited image")
    page.get_by_role("button", name="Suspend account").click()
    expect(page.get_by_role("status")).to_contain_text("Account suspended")
    expect(page.locator("#account-suspended")).to_have_text("Yes, suspended")
    expect(page.get_by_role("button", name="Unsuspend account")).to_be_visible()
    expect(page.get_by_role("button", name="Suspend account", exact=True)).to_have_count(0)
    with pytest.raises(AccordError):
        world.alice.send("bob", "still here?")

    # Escalate, then export the CyberTipline-shaped XML within the same session.
    page.get_by_role("button", name="Escalate").click()
    expect(page.locator("h1 .status")).to_have_text("escalated")
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Export as XML")).click()
    name = download.value.suggested_filename
    assert name in (f"{world.report_id}.xml", f"{world.report_id}.zip")
    xml = _xml_documents(Path(download.value.path()).read_bytes())
    assert re.search(r"<(\w+:)?fileViewedByEsp>\s*true\s*</(\w+:)?fileViewedByEsp>", xml)
    assert "alice" in xml

    # The audit trail has every step, with this reviewer's name.
    page.get_by_role("link", name="Audit trail").click()
    audit = page.get_by_role("table")
    for action in ("login", "view_attachment", "suspend", "escalate", "export_xml"):
        expect(audit.get_by_role("cell", name=action, exact=True).first).to_be_visible()
    expect(audit).to_contain_text("unsolicited image")

    # Sign out: the session is gone.
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{world.console}/login")
    page.goto(world.console)
    page.wait_for_url(f"{world.console}/login")


def test_form_without_csrf_token_is_refused(page, world):
    sign_in_with_keyboard(page, world)
    page.goto(f"{world.console}/reports/{world.report_id}")
    status_before = page.locator("h1 .status").inner_text()
    page.locator("form[action$='/actions'] input[name=csrf_token]").evaluate("el => el.remove()")
    with page.expect_response(re.compile(r"/actions$")) as posted:
        page.get_by_role("button", name="Warn account").click()
    assert posted.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    # Also without the browser's form: a bare POST in the same session.
    bare = page.request.post(
        f"{world.console}/reports/{world.report_id}/actions", form={"action": "dismiss"}
    )
    assert bare.status == 403
    page.goto(f"{world.console}/reports/{world.report_id}")
    expect(page.locator("h1 .status")).to_have_text(status_before)


def test_unauthenticated_pages_redirect_to_login(page, world):
    for path in ("", "/audit", f"/reports/{world.report_id}"):
        response = page.goto(f"{world.console}{path}")
        assert response is not None and response.ok
        assert page.url == f"{world.console}/login"
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    file = page.request.get(
        f"{world.console}/reports/{world.report_id}/attachments/0", max_redirects=0
    )
    assert file.status == 303 and file.headers["location"] == "/console/login"


def test_login_page_headers_and_wrong_password(page, world):
    response = page.goto(f"{world.console}/login")
    assert response is not None
    headers = response.headers
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    page.get_by_label("Name").fill(world.reviewer)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("The name or the password is wrong.")
    expect(page.get_by_label("Password")).to_have_attribute("aria-invalid", "true")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "accord_review" not in cookies


def test_every_control_has_an_accessible_name(page, world):
    page.goto(f"{world.console}/login")
    _check_page_accessibility(page, with_nav=False)
    sign_in_with_keyboard(page, world)
    session = {c["name"]: c for c in page.context.cookies()}["accord_review"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["path"] == "/console"
    for path in ("", f"/reports/{world.report_id}", "/audit", "/events"):
        page.goto(f"{world.console}{path}")
        _check_page_accessibility(page, with_nav=True)
    expect(page.locator("th[scope=col]").first).to_be_visible()


def _check_page_accessibility(page: Any, *, with_nav: bool) -> None:
    assert page.evaluate("document.documentElement.lang") == "en"
    expect(page.get_by_role("main")).to_have_count(1)
    if with_nav:
        expect(page.get_by_role("navigation")).to_have_count(1)
    controls = page.locator(CONTROLS)
    assert controls.count() > 0
    for i in range(controls.count()):
        control = controls.nth(i)
        if not control.is_visible():
            continue
        expect(control).to_have_accessible_name(re.compile(r"\S"))
        named = control.evaluate(
            """el => (el.labels && el.labels.length > 0) || !!el.getAttribute('aria-label')
                     || (el.tagName === 'BUTTON' && el.textContent.trim().length > 0)"""
        )
        assert named, control.evaluate("el => el.outerHTML")
    # Keyboard focus is visible: the first control reached with Tab has an outline.
    page.locator("body").focus()
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("sel => document.activeElement.matches(sel)", CONTROLS):
            break
    else:
        pytest.fail("no form control reachable with Tab")
    outline = page.evaluate(
        "() => { const s = getComputedStyle(document.activeElement);"
        " return [s.outlineStyle, s.outlineWidth]; }"
    )
    assert outline[0] != "none" and outline[1] != "0px", outline
