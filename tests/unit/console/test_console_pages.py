"""The reviewers' console pages over in-memory review and matching services (no database, no
browser).

The browser tests (tests/browser/) drive the same pages on the real server; these cover every
rejection: sessions, CSRF on each form, reveal grants, form limits, errors as HTML pages, and
the audit entries for threshold events.
"""

from __future__ import annotations

import base64
import io
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from accord.console import (
    LOGIN_COOKIE,
    MAX_FORM_BYTES,
    SECURITY_HEADERS,
    SESSION_COOKIE,
    format_size,
    register_console,
    reveal_grant,
)
from accord.errors import (
    AuthenticationError,
    Conflict,
    InvalidInput,
    LoginBusy,
    LoginThrottled,
    NotFound,
)
from accord.wire.matching import (
    EventImage,
    MatchingParamsModel,
    ReviewEventDetail,
    ReviewEventList,
    ReviewEventSummary,
    TableSummary,
)
from accord.wire.messaging import DeviceRef
from accord.wire.reports import (
    AccountOverview,
    AuditEntry,
    AuditTrail,
    ReportDetail,
    ReportList,
    ReportSummary,
    ReviewedAttachment,
    ReviewedMessage,
)

PASSWORD = "correct horse battery staple"
REPORT = "r_" + "A" * 20
OTHER_REPORT = "r_" + "B" * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"full image bytes"
PDF = b"%PDF-1.4 document"
EVENT = "e_" + "A" * 22
OTHER_EVENT = "e_" + "B" * 22


@dataclass(frozen=True)
class Session:
    token: str
    csrf_token: str
    reviewer: str
    role: str
    expires_at: int


def _attachment(index: int, name: str, media_type: str, **kw: Any) -> ReviewedAttachment:
    values: dict[str, Any] = {
        "index": index,
        "name": name,
        "media_type": media_type,
        "size": 1234,
        "sha256": "00" * 32,
        "available": True,
        "viewed": False,
    }
    if "md5" in ReviewedAttachment.model_fields:
        values["md5"] = "00" * 16
    values.update(kw)
    return ReviewedAttachment(**values)


def _detail(report_id: str, status: str, created_at: int, text: str) -> ReportDetail:
    items = [
        ReviewedMessage(
            message_id="m" * 20,
            sender="mallory",
            sender_device="DEVICE01",
            conversation="@bob",
            sent_at=created_at - 2000,
            accepted_at=created_at - 1900,
            text="earlier context",
            reported=False,
            attachments=[],
        ),
        ReviewedMessage(
            message_id="n" * 20,
            sender="mallory",
            sender_device="DEVICE01",
            conversation="@bob",
            sent_at=created_at - 1000,
            accepted_at=created_at - 900,
            text=text,
            reported=True,
            attachments=[
                _attachment(0, "photo.png", "image/png"),
                _attachment(1, "notes.pdf", "application/pdf"),
            ],
        ),
    ]
    return ReportDetail(
        report_id=report_id,
        status=status,
        reported_account="mallory",
        reporter="bob",
        conversation="@bob",
        reason="threats <b>bold</b>",
        created_at=created_at,
        updated_at=created_at,
        messages=len(items),
        attachments=2,
        verified_sender=DeviceRef(account="mallory", device_id="DEVICE01"),
        items=items,
    )


@dataclass
class InMemoryReview:
    """Stands in for accord.server.review.ReviewService, recording what the console asks."""

    sessions: dict[str, Session] = field(default_factory=dict)
    reports: dict[str, ReportDetail] = field(default_factory=dict)
    suspended: bool = False
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.reports[REPORT] = _detail(REPORT, "open", 2_000_000_000_000, "<script>x()</script>")
        self.reports[OTHER_REPORT] = _detail(OTHER_REPORT, "warned", 1_000_000_000_000, "older")

    def _log(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    async def login(self, name: str, password: str, *, address: str = "") -> Session:
        self._log("login", name, address)
        if name == "locked":
            raise LoginThrottled(retry_after_s=60)
        if name == "busy":
            raise LoginBusy()
        if name != "rita" or password != PASSWORD:
            raise AuthenticationError("wrong name or password")
        session = Session(
            token=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            reviewer=name,
            role="reviewer",
            expires_at=int(time.time() * 1000) + 3_600_000,
        )
        self.sessions[session.token] = session
        return session

    async def session(self, token: str) -> Session:
        found = self.sessions.get(token)
        if found is None or found.expires_at < time.time() * 1000:
            raise AuthenticationError("session expired; log in again")
        return found

    async def logout(self, token: str) -> None:
        self._log("logout", token)
        self.sessions.pop(token, None)

    async def list_reports(
        self,
        *,
        status: str | None = None,
        account: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> ReportList:
        self._log("list_reports", status, account, limit, before)
        found = [
            ReportSummary(**r.model_dump(exclude={"verified_sender", "items"}))
            for r in sorted(self.reports.values(), key=lambda r: -r.created_at)
            if (status is None or r.status == status)
            and (account is None or r.reported_account == account)
            and (before is None or r.created_at < before)
        ]
        return ReportList(reports=found[:limit])

    async def report(self, report_id: str) -> ReportDetail:
        self._log("report", report_id)
        if report_id not in self.reports:
            raise NotFound("no such report")
        return self.reports[report_id]

    async def account_overview(self, account: str) -> AccountOverview:
        return AccountOverview(
            account=account,
            created_at=900_000_000_000,
            suspended=self.suspended,
            devices=1,
            reports=len(self.reports),
            warnings=0,
        )

    async def attachment_preview(self, report_id: str, index: int) -> tuple[str, bytes]:
        self._log("attachment_preview", report_id, index)
        await self.report(report_id)
        return "image/png", b"\x89PNG blurred"

    async def reveal_attachment(self, report_id: str, index: int, actor: str) -> tuple[str, bytes]:
        self._log("reveal_attachment", report_id, index, actor)
        await self.report(report_id)
        if index == 0:
            return "image/png", PNG
        if index == 1:
            return "application/pdf", PDF
        raise NotFound("no such attachment")

    async def act(
        self, report_id: str, actor: str, action: str, note: str = "", *, role: str = "reviewer"
    ) -> ReportDetail:
        self._log("act", report_id, actor, action, note)
        detail = await self.report(report_id)
        status = {
            "dismiss": "dismissed",
            "warn": "warned",
            "suspend": "suspended",
            "unsuspend": "open",
            "escalate": "escalated",
            "reopen": "open",
        }[action]
        if action in ("suspend", "unsuspend"):
            self.suspended = action == "suspend"
        self.reports[report_id] = detail.model_copy(update={"status": status})
        return self.reports[report_id]

    async def record_view(self, actor: str, action: str, target: str) -> None:
        self._log("record_view", actor, action, target)

    async def audit_trail(self, *, limit: int = 100, after: int = 0) -> AuditTrail:
        self._log("audit_trail", limit, after)
        return AuditTrail(entries=[e for e in self.audit if e.seq > after][:limit])

    async def export(self, report_id: str, fmt: str, actor: str) -> tuple[str, bytes]:
        self._log("export", report_id, fmt, actor)
        detail = await self.report(report_id)
        if detail.status != "escalated":
            raise Conflict("only an escalated case is exported")
        if fmt == "xml":
            return "application/xml", b"<report><fileViewedByEsp>true</fileViewedByEsp></report>"
        return "application/json", b"{}"


def _derivative(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (64, 64), shade).save(out, format="PNG")
    return out.getvalue()


def _event(event_id: str, account: str, created_at: int, images: int) -> ReviewEventDetail:
    summary = ReviewEventSummary(
        event_id=event_id,
        kind="threshold",
        status="open",
        account=account,
        device_id="DEVICE01",
        epoch=0,
        table_version=1,
        images=images,
        discarded_band_collisions=0,
        created_at=created_at,
        log_index=7,
    )
    return ReviewEventDetail(
        event=summary,
        images=[
            EventImage(
                index=i,
                voucher_id=f"{i:064x}",
                bank="standins",
                entry_id=100 + i,
                label=f"label <{i}>",
                distance=2 * i,
                pdq=f"{i:064x}",
                derivative_png=base64.b64encode(_derivative(40 * i)).decode(),
            )
            for i in range(images)
        ],
    )


@dataclass
class InMemoryMatching:
    """Stands in for accord.server.private_matching.PrivateMatchingService's review side."""

    events: dict[str, ReviewEventDetail] = field(default_factory=dict)
    calls: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events[EVENT] = _event(EVENT, "mallory", 2_000_000_000_000, 3)
        self.events[OTHER_EVENT] = _event(OTHER_EVENT, "trent", 1_000_000_000_000, 2)

    def called(self, name: str) -> list[tuple[Any, ...]]:
        return [args for n, args in self.calls if n == name]

    async def list_events(
        self, *, account: str | None = None, limit: int = 50, before: int | None = None
    ) -> ReviewEventList:
        self.calls.append(("list_events", (account, limit, before)))
        found = [
            e.event
            for e in sorted(self.events.values(), key=lambda e: -e.event.created_at)
            if (account is None or e.event.account == account)
            and (before is None or e.event.created_at < before)
        ]
        return ReviewEventList(events=found[:limit])

    async def event(self, event_id: str) -> ReviewEventDetail:
        self.calls.append(("event", (event_id,)))
        if event_id not in self.events:
            raise NotFound()
        return self.events[event_id]

    async def derivative_png(self, event_id: str, index: int) -> bytes:
        self.calls.append(("derivative_png", (event_id, index)))
        images = (await self.event(event_id)).images
        if not 0 <= index < len(images):
            raise NotFound()
        return base64.b64decode(images[index].derivative_png)

    async def table_summary(self, version: int) -> TableSummary:
        if version != 1:
            raise NotFound("no matching table is published")
        return TableSummary(
            table_version=1,
            digest="00" * 32,
            size=1000,
            banked_hashes=12,
            elements=384,
            params=MatchingParamsModel(
                band_count=32,
                band_bits=40,
                threshold=3,
                synthetic_rate_ppm=0,
                detection_dim=256,
                epoch_images=10_000,
            ),
            banks=[{"name": "standins", "version": "1"}],
            published_at=1_000_000_000_000,
            retired_at=None,
            log_index=0,
        )


@pytest.fixture
def review() -> InMemoryReview:
    return InMemoryReview()


@pytest.fixture
def matching() -> InMemoryMatching:
    return InMemoryMatching()


def _client(
    review: InMemoryReview,
    base_url: str = "http://testserver",
    matching: InMemoryMatching | None = None,
) -> TestClient:
    app = FastAPI()
    register_console(app, review, matching or InMemoryMatching())  # type: ignore[arg-type]
    return TestClient(app, base_url=base_url, follow_redirects=False)


@pytest.fixture
def client(review: InMemoryReview, matching: InMemoryMatching) -> TestClient:
    return _client(review, matching=matching)


def _hidden_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def _login(client: TestClient) -> str:
    """Sign in as rita; the session's CSRF token."""
    page = client.get("/console/login")
    r = client.post(
        "/console/login",
        data={"csrf_token": _hidden_token(page.text), "name": "rita", "password": PASSWORD},
    )
    assert r.status_code == 303 and r.headers["location"] == "/console"
    return _hidden_token(client.get("/console").text)


@pytest.fixture
def csrf(client: TestClient) -> str:
    return _login(client)


def _set_cookie_headers(response: Any, name: str) -> list[str]:
    return [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]


def _assert_security_headers(response: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name


# --- sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/console",
        "/console/audit",
        f"/console/reports/{REPORT}",
        f"/console/reports/{REPORT}/attachments/0/preview",
        f"/console/reports/{REPORT}/export.xml",
        "/console/events",
        f"/console/events/{EVENT}",
        f"/console/events/{EVENT}/images/0",
    ],
)
def test_unauthenticated_get_redirects_to_login(client, review, matching, path):
    r = client.get(path)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login"
    _assert_security_headers(r)
    assert not review.called("report") and not review.called("attachment_preview")
    assert not matching.calls and not review.called("record_view")


def test_login_page_sets_a_pre_session_cookie_bound_to_the_form(client):
    r = client.get("/console/login")
    assert r.status_code == 200
    _assert_security_headers(r)
    assert '<html lang="en">' in r.text
    (cookie,) = _set_cookie_headers(r, LOGIN_COOKIE)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Path=/console/login" in cookie and "Secure" not in cookie
    assert cookie.split(";")[0] == f"{LOGIN_COOKIE}={_hidden_token(r.text)}"


@pytest.mark.parametrize("sent", [None, "", "x" * 43])
def test_login_without_the_pre_session_token_is_refused(client, review, sent):
    client.get("/console/login")
    data = {"name": "rita", "password": PASSWORD}
    if sent is not None:
        data["csrf_token"] = sent
    r = client.post("/console/login", data=data)
    assert r.status_code == 403
    assert "text/html" in r.headers["content-type"]
    assert "not accepted" in r.text
    assert not review.called("login")
    assert not _set_cookie_headers(r, SESSION_COOKIE)


def test_login_token_without_its_cookie_is_refused(review):
    """Login CSRF: a token from the attacker's own visit is useless without the cookie."""
    attacker = _client(review)
    token = _hidden_token(attacker.get("/console/login").text)
    victim = _client(review)
    r = victim.post(
        "/console/login", data={"csrf_token": token, "name": "rita", "password": PASSWORD}
    )
    assert r.status_code == 403 and not review.called("login")


def test_wrong_password_shows_the_error_in_text(client):
    token = _hidden_token(client.get("/console/login").text)
    r = client.post(
        "/console/login", data={"csrf_token": token, "name": "rita", "password": "wrong"}
    )
    assert r.status_code == 200
    assert "The name or the password is wrong." in r.text
    assert 'aria-invalid="true"' in r.text
    assert not _set_cookie_headers(r, SESSION_COOKIE)
    assert client.get("/console").status_code == 303


@pytest.mark.parametrize(
    ("name", "status", "retry_after"), [("locked", 429, "60"), ("busy", 503, "1")]
)
def test_a_refused_login_is_an_error_page_with_retry_after(
    client, review, name, status, retry_after
):  # type: ignore[no-untyped-def]
    token = _hidden_token(client.get("/console/login").text)
    r = client.post(
        "/console/login", data={"csrf_token": token, "name": name, "password": "whatever"}
    )
    assert r.status_code == status and r.headers["Retry-After"] == retry_after
    assert not _set_cookie_headers(r, SESSION_COOKIE)
    assert review.called("login")[-1] == (name, "testclient")  # the client's address is passed


def test_empty_fields_are_an_error_in_text(client, review):
    token = _hidden_token(client.get("/console/login").text)
    r = client.post("/console/login", data={"csrf_token": token, "name": "", "password": ""})
    assert "Enter your name and your password." in r.text
    assert not review.called("login")


def test_session_cookie_attributes(client):
    token = _hidden_token(client.get("/console/login").text)
    r = client.post(
        "/console/login", data={"csrf_token": token, "name": "rita", "password": PASSWORD}
    )
    (cookie,) = _set_cookie_headers(r, SESSION_COOKIE)
    assert "HttpOnly" in cookie and "Path=/console" in cookie
    assert "samesite=strict" in cookie.lower() and "Secure" not in cookie
    assert "Max-Age=" in cookie
    _assert_security_headers(r)


def test_session_cookie_is_secure_over_https(review):
    client = _client(review, base_url="https://testserver")
    page = client.get("/console/login")
    assert "Secure" in _set_cookie_headers(page, LOGIN_COOKIE)[0]
    r = client.post(
        "/console/login",
        data={"csrf_token": _hidden_token(page.text), "name": "rita", "password": PASSWORD},
    )
    assert "Secure" in _set_cookie_headers(r, SESSION_COOKIE)[0]


def test_signed_in_login_page_goes_to_the_queue(client, csrf):
    r = client.get("/console/login")
    assert r.status_code == 303 and r.headers["location"] == "/console"


def test_logout_needs_the_csrf_token_and_ends_the_session(client, review, csrf):
    assert client.post("/console/logout", data={}).status_code == 403
    assert client.post("/console/logout", data={"csrf_token": "nope"}).status_code == 403
    assert not review.called("logout")
    r = client.post("/console/logout", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert review.called("logout") and not review.sessions
    assert client.get("/console").status_code == 303


def test_expired_session_sends_back_to_login(client, review, csrf):
    (token,) = review.sessions
    old = review.sessions[token]
    review.sessions[token] = Session(**{**old.__dict__, "expires_at": 1})
    r = client.get("/console")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert r.headers["set-cookie"].startswith(f'{SESSION_COOKIE}=""')


def test_post_without_a_session_goes_to_login_and_does_nothing(review):
    client = _client(review)
    r = client.post(f"/console/reports/{REPORT}/actions", data={"action": "suspend"})
    assert r.status_code == 303 and not review.called("act")


# --- the queue --------------------------------------------------------------------------------


def test_queue_lists_newest_first_with_links(client, review, csrf):
    r = client.get("/console")
    assert r.status_code == 200
    _assert_security_headers(r)
    assert r.text.index(REPORT) < r.text.index(OTHER_REPORT)
    assert f'href="/console/reports/{REPORT}"' in r.text
    assert '<th scope="col">Reported account</th>' in r.text
    assert "threats &lt;b&gt;bold&lt;/b&gt;" in r.text
    assert review.called("list_reports")[-1] == (None, None, 50, None)


def test_queue_filters_reach_the_service(client, review, csrf):
    r = client.get("/console", params={"status": "warned", "account": "mallory"})
    assert r.status_code == 200
    assert review.called("list_reports")[-1] == ("warned", "mallory", 50, None)
    assert OTHER_REPORT in r.text and REPORT not in r.text.replace(OTHER_REPORT, "")
    assert '<option value="warned" selected>' in r.text
    assert 'value="mallory"' in r.text


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "deleted"}, "Choose one of the statuses in the list."),
        ({"account": "Not An Account"}, "An account name has 1 to 64 characters"),
    ],
)
def test_bad_filters_are_errors_in_text(client, review, csrf, params, message):
    before = len(review.called("list_reports"))
    r = client.get("/console", params=params)
    assert r.status_code == 400
    assert message in r.text and 'aria-invalid="true"' in r.text
    assert len(review.called("list_reports")) == before


# --- one report -------------------------------------------------------------------------------


def test_report_page_shows_the_verified_sender_and_the_messages(client, csrf):
    r = client.get(f"/console/reports/{REPORT}")
    assert r.status_code == 200
    _assert_security_headers(r)
    page = r.text
    assert "Verified sender" in page
    assert '<span class="account" id="verified-account">mallory</span>' in page
    assert "DEVICE01" in page
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>" not in page
    assert page.index("earlier context") < page.index("Reported message")
    assert 'aria-current="true"' in page
    assert f'src="/console/reports/{REPORT}/attachments/0/preview"' in page
    assert f'src="/console/reports/{REPORT}/attachments/0?' not in page
    assert "Suspend account" in page and "Unsuspend account" not in page
    assert "export.xml" not in page  # only once escalated


def test_unknown_or_malformed_report_is_a_404_page(client, review, csrf):
    r = client.get("/console/reports/r_" + "Z" * 20)
    assert r.status_code == 404 and "no such report" in r.text
    assert "text/html" in r.headers["content-type"]
    _assert_security_headers(r)
    before = len(review.called("report"))
    r = client.get("/console/reports/..%2Fetc")
    assert r.status_code == 404
    assert len(review.called("report")) == before  # never reached the service


def test_preview_is_not_a_view(client, review, csrf):
    r = client.get(f"/console/reports/{REPORT}/attachments/0/preview")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    _assert_security_headers(r)
    assert review.called("attachment_preview") == [(REPORT, 0)]
    assert not review.called("reveal_attachment")


def test_file_is_not_served_without_a_reveal(client, review, csrf):
    for query in ("", "?until=99999999999&grant=00", f"?until={int(time.time()) + 60}&grant=ab"):
        r = client.get(f"/console/reports/{REPORT}/attachments/0{query}")
        assert r.status_code == 403
    assert not review.called("reveal_attachment")


def test_reveal_needs_the_csrf_token(client, review, csrf):
    url = f"/console/reports/{REPORT}/attachments/0/reveal"
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf_token": csrf[:-1]}).status_code == 403
    assert not review.called("reveal_attachment")


def test_reveal_shows_the_file_and_records_the_reviewer(client, review, csrf):
    r = client.post(f"/console/reports/{REPORT}/attachments/0/reveal", data={"csrf_token": csrf})
    assert r.status_code == 303
    target = r.headers["location"]
    assert target.startswith(f"/console/reports/{REPORT}?shown=0&") and "grant=" in target
    assert not review.called("reveal_attachment")  # the POST grants, the file GET reveals
    page = client.get(target).text
    src = re.search(r'<img class="revealed" src="([^"]+)"', page)
    assert src, "the revealed image is not on the page"
    r = client.get(src.group(1).replace("&amp;", "&"))
    assert r.status_code == 200 and r.content == PNG
    assert r.headers["content-type"] == "image/png"
    _assert_security_headers(r)
    assert review.called("reveal_attachment") == [(REPORT, 0, "rita")]


def test_revealed_non_image_is_a_download(client, review, csrf):
    r = client.post(f"/console/reports/{REPORT}/attachments/1/reveal", data={"csrf_token": csrf})
    page = client.get(r.headers["location"]).text
    link = re.search(r'<a href="([^"]+)">Download notes.pdf</a>', page)
    assert link
    r = client.get(link.group(1).replace("&amp;", "&"))
    assert r.content == PDF
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == f'attachment; filename="{REPORT}-1.pdf"'


def test_reveal_grant_is_bound_to_session_attachment_and_time(client, review, csrf):
    (token,) = review.sessions
    session = review.sessions[token]
    other = Session(**{**session.__dict__, "csrf_token": "another session"})
    until = int(time.time()) + 60
    base = f"/console/reports/{REPORT}/attachments"
    wrong_session = reveal_grant(other, REPORT, 0, until)
    assert client.get(f"{base}/0?until={until}&grant={wrong_session}").status_code == 403
    other_index = reveal_grant(session, REPORT, 1, until)
    assert client.get(f"{base}/0?until={until}&grant={other_index}").status_code == 403
    past = int(time.time()) - 1
    expired = reveal_grant(session, REPORT, 0, past)
    assert client.get(f"{base}/0?until={past}&grant={expired}").status_code == 403
    far = int(time.time()) + 10_000
    too_long = reveal_grant(session, REPORT, 0, far)
    assert client.get(f"{base}/0?until={far}&grant={too_long}").status_code == 403
    assert not review.called("reveal_attachment")
    good = reveal_grant(session, REPORT, 0, until)
    assert client.get(f"{base}/0?until={until}&grant={good}").status_code == 200


# --- actions ----------------------------------------------------------------------------------


def test_action_without_csrf_is_refused(client, review, csrf):
    url = f"/console/reports/{REPORT}/actions"
    r = client.post(url, data={"action": "suspend"})
    assert r.status_code == 403 and "text/html" in r.headers["content-type"]
    _assert_security_headers(r)
    r = client.post(url, data={"action": "suspend", "csrf_token": "forged"})
    assert r.status_code == 403
    assert not review.called("act") and not review.suspended


def test_suspend_then_unsuspend(client, review, csrf):
    url = f"/console/reports/{REPORT}/actions"
    r = client.post(url, data={"action": "suspend", "note": " spam ", "csrf_token": csrf})
    assert r.status_code == 303
    assert r.headers["location"] == f"/console/reports/{REPORT}?done=suspend"
    assert review.called("act") == [(REPORT, "rita", "suspend", "spam")]
    page = client.get(r.headers["location"]).text
    assert "Account suspended" in page
    assert '<dd id="account-suspended" class="suspended">Yes, suspended</dd>' in page
    assert 'value="unsuspend"' in page and 'value="suspend"' not in page
    client.post(url, data={"action": "unsuspend", "csrf_token": csrf})
    assert not review.suspended


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"action": "delete"}, "choose one of the action buttons"),
        ({"action": "warn", "note": "x" * 2001}, "a note has at most 2000 characters"),
    ],
)
def test_bad_action_forms_are_errors_in_text(client, review, csrf, data, message):
    r = client.post(f"/console/reports/{REPORT}/actions", data={**data, "csrf_token": csrf})
    assert r.status_code == 400 and message in r.text
    assert not review.called("act")


def test_export_only_when_escalated(client, review, csrf):
    r = client.get(f"/console/reports/{REPORT}/export.xml")
    assert r.status_code == 409 and "only an escalated case is exported" in r.text
    client.post(
        f"/console/reports/{REPORT}/actions", data={"action": "escalate", "csrf_token": csrf}
    )
    page = client.get(f"/console/reports/{REPORT}").text
    assert f'href="/console/reports/{REPORT}/export.xml"' in page
    assert f'href="/console/reports/{REPORT}/export.json"' in page
    assert 'value="escalate"' not in page and 'value="reopen"' in page
    r = client.get(f"/console/reports/{REPORT}/export.xml")
    assert r.status_code == 200 and b"<fileViewedByEsp>true" in r.content
    assert r.headers["content-type"].startswith("application/xml")
    assert r.headers["content-disposition"] == f'attachment; filename="{REPORT}.xml"'
    assert review.called("export")[-1] == (REPORT, "xml", "rita")
    assert client.get(f"/console/reports/{REPORT}/export.csv").status_code == 404


# --- the audit trail, errors, limits ----------------------------------------------------------


def test_audit_page_lists_entries(client, review, csrf):
    review.audit = [
        AuditEntry(
            seq=i,
            at=2_000_000_000_000 + i,
            actor="rita",
            action="suspend",
            target=REPORT,
            note=f"note <{i}>",
            chain=f"{i:064x}",
        )
        for i in range(1, 4)
    ]
    r = client.get("/console/audit")
    assert r.status_code == 200
    assert r.text.count("<tr>") == 4  # the header row and three entries
    assert "note &lt;2&gt;" in r.text
    assert f'href="/console/reports/{REPORT}"' in r.text
    assert review.called("audit_trail")[-1] == (100, 0)
    client.get("/console/audit", params={"after": "2"})
    assert review.called("audit_trail")[-1] == (100, 2)


@pytest.mark.parametrize(
    ("error", "status"),
    [(InvalidInput("bad"), 400), (NotFound("gone"), 404), (Conflict("state"), 409)],
)
def test_service_errors_become_html_pages(client, review, csrf, error, status):
    async def failing(*_a: Any, **_k: Any) -> None:
        raise error

    review.list_reports = failing  # type: ignore[method-assign]
    r = client.get("/console")
    assert r.status_code == status
    assert "text/html" in r.headers["content-type"]
    assert error.message in r.text
    _assert_security_headers(r)


def test_oversized_form_is_refused(client, review, csrf):
    r = client.post(
        f"/console/reports/{REPORT}/actions",
        data={"action": "warn", "csrf_token": csrf, "note": "x" * (MAX_FORM_BYTES + 1)},
    )
    assert r.status_code == 413 and not review.called("act")


def test_form_field_sent_twice_is_refused(client, review, csrf):
    body = f"csrf_token={csrf}&action=warn&action=suspend"
    r = client.post(
        f"/console/reports/{REPORT}/actions",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and not review.called("act")


def test_form_must_be_urlencoded(client, review, csrf):
    r = client.post(
        f"/console/reports/{REPORT}/actions",
        json={"csrf_token": csrf, "action": "warn"},
    )
    assert r.status_code == 400 and not review.called("act")


def test_unknown_console_path_is_an_html_404(client):
    r = client.get("/console/nothing/here")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    _assert_security_headers(r)
    r = client.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console"


def test_stylesheet_is_served_with_the_same_headers(client):
    r = client.get("/console/static/console.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert ":focus-visible" in r.text
    _assert_security_headers(r)
    assert client.get("/console/static/..%2F__init__.py").status_code == 404


def test_format_size():
    assert [format_size(n) for n in (0, 999, 1000, 1_234_567, 3 * 10**9)] == [
        "0 bytes",
        "999 bytes",
        "1.0 kB",
        "1.2 MB",
        "3.0 GB",
    ]


def test_export_file_name_follows_what_the_service_returns(client, review, csrf):
    """The XML export may be a ZIP package of XML documents; the download says so."""

    async def package(report_id: str, fmt: str, actor: str) -> tuple[str, bytes]:
        return "application/zip", b"PK\x03\x04"

    review.export = package  # type: ignore[method-assign]
    r = client.get(f"/console/reports/{REPORT}/export.xml")
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="{REPORT}.zip"'


# --- threshold events -------------------------------------------------------------------------


def test_nav_links_to_threshold_events(client, csrf):
    page = client.get("/console").text
    assert '<a href="/console/events">Threshold events</a>' in page
    page = client.get("/console/events").text
    assert '<a href="/console/events" aria-current="page">Threshold events</a>' in page


def test_events_list_newest_first_with_links(client, review, matching, csrf):
    r = client.get("/console/events")
    assert r.status_code == 200
    _assert_security_headers(r)
    assert r.text.index(EVENT) < r.text.index(OTHER_EVENT)
    assert f'href="/console/events/{EVENT}"' in r.text
    row = re.search(rf"<tr>\s*<th scope=\"row\"><a [^>]+>{EVENT}</a></th>(.*?)</tr>", r.text, re.S)
    assert row, "no row for the event"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    assert cells[0] == "2033-05-18 03:33:20 UTC"
    assert cells[1:4] == ["mallory", "threshold", "3"]
    assert "open" in cells[4]
    assert matching.called("list_events") == [(None, 50, None)]
    assert not review.called("record_view")  # the list shows no image: nothing to record


def test_events_filter_by_account(client, matching, csrf):
    r = client.get("/console/events", params={"account": " trent "})
    assert r.status_code == 200
    assert matching.called("list_events")[-1] == ("trent", 50, None)
    assert OTHER_EVENT in r.text and EVENT not in r.text
    assert 'value="trent"' in r.text and "Clear filter" in r.text
    r = client.get("/console/events", params={"account": "nobody"})
    assert "No threshold events for this account." in r.text


def test_events_empty_state(client, matching, csrf):
    matching.events.clear()
    r = client.get("/console/events")
    assert r.status_code == 200 and "No threshold events yet." in r.text


def test_events_bad_account_filter_is_an_error_in_text(client, matching, csrf):
    r = client.get("/console/events", params={"account": "Not An Account"})
    assert r.status_code == 400
    assert "An account name has 1 to 64 characters" in r.text
    assert 'aria-invalid="true"' in r.text and 'aria-describedby="account-error"' in r.text
    assert not matching.called("list_events")


def test_events_pager(client, matching, csrf):
    for i in range(60):
        event_id = f"e_{i:022d}"
        matching.events[event_id] = _event(event_id, "mallory", 3_000_000_000_000 + i, 1)
    page = client.get("/console/events").text
    assert 'href="/console/events?before=3000000000010">Older events</a>' in page
    client.get("/console/events", params={"before": "3000000000010"})
    assert matching.called("list_events")[-1] == (None, 50, 3_000_000_000_010)


def test_event_page_shows_the_images_and_records_the_view(client, review, matching, csrf):
    r = client.get(f"/console/events/{EVENT}")
    assert r.status_code == 200
    _assert_security_headers(r)
    page = r.text
    assert '<dd id="event-account">mallory</dd>' in page
    assert "3 distinct matching images (table version 1)" in page
    assert "2033-05-18 03:33:20 UTC" in page and "entry 7" in page
    assert "Content warning" in page
    for i in range(3):
        assert f'src="/console/events/{EVENT}/images/{i}"' in page
        assert f"<dd>{100 + i}</dd>" in page
        assert f'<dd class="distance">{2 * i} bits</dd>' in page
    assert "label &lt;1&gt;" in page and "label <1>" not in page
    assert page.count("<img ") == 3 and 'alt="Matched image 1: 64 by 64 grayscale' in page
    assert "data:" not in page  # the images come from the image route, never inline
    assert review.called("record_view") == [("rita", "view_match_event", EVENT)]
    assert not matching.called("derivative_png")


def test_event_page_without_its_table_says_so(client, matching, csrf):
    detail = matching.events[EVENT]
    changed = detail.event.model_copy(update={"table_version": 9})
    matching.events[EVENT] = detail.model_copy(update={"event": changed})
    page = client.get(f"/console/events/{EVENT}").text
    assert "unknown (table version 9 is no longer known)" in page


def test_event_image_is_served_uncached_and_audited(client, review, matching, csrf):
    r = client.get(f"/console/events/{EVENT}/images/2")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/png"
    _assert_security_headers(r)
    assert r.headers["cache-control"] == "no-store"
    with Image.open(io.BytesIO(r.content)) as img:
        assert img.size == (64, 64) and img.mode == "L"
    assert matching.called("derivative_png") == [(EVENT, 2)]
    assert review.called("record_view") == [("rita", "view_match_image", f"{EVENT}/2")]


@pytest.mark.parametrize(
    "path",
    [
        "/console/events/e_" + "Z" * 22,
        f"/console/events/e_{'Z' * 22}/images/0",
        f"/console/events/{EVENT}/images/3",
        f"/console/events/{EVENT}/images/1025",
        f"/console/events/{EVENT}/images/-1",
    ],
)
def test_unknown_event_or_image_is_a_404_page(client, review, path, csrf):
    r = client.get(path)
    assert r.status_code == 404
    assert "text/html" in r.headers["content-type"]
    assert "no such event" in r.text or "no such image" in r.text
    _assert_security_headers(r)
    assert not review.called("record_view")


def test_malformed_event_id_never_reaches_the_service(client, review, matching, csrf):
    for path in (
        "/console/events/r_" + "A" * 20,
        "/console/events/e_short",
        "/console/events/..%2Fx",
    ):
        r = client.get(path)
        assert r.status_code == 404, path
    assert not matching.called("event") and not review.called("record_view")
    r = client.get(f"/console/events/{EVENT}/images/one")
    assert r.status_code == 400 and not matching.called("derivative_png")


def test_audit_page_links_event_targets(client, review, csrf):
    review.audit = [
        AuditEntry(
            seq=1,
            at=2_000_000_000_000,
            actor="rita",
            action="view_match_image",
            target=f"{EVENT}/0",
            note="",
            chain="00" * 32,
        )
    ]
    page = client.get("/console/audit").text
    assert f'<a href="/console/events/{EVENT}">{EVENT}/0</a>' in page


def test_stylesheet_draws_derivatives_with_square_pixels(client):
    css = client.get("/console/static/console.css").text
    assert "image-rendering: pixelated" in css
