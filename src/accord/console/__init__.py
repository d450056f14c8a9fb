"""The reviewers' web console under /console (docs/console.md), mounted on the server's app by
`accord server` (`mount_console`).

Plain HTML forms over `ReviewService`: a login page, the report queue, one page per report
(verified sender, the revealed messages, blurred attachment previews with a deliberate reveal,
what is known about the account, the actions), and the audit trail. Over
`PrivateMatchingService`: the private-matching threshold events, each with the bank entries its
images matched and the 64 x 64 derivatives the protocol reveals (every view audited). No
JavaScript.

Sessions live in the `accord_review` cookie (HttpOnly, SameSite=Strict, Path=/console). Every
POST form carries the session's CSRF token; the login form, which has no session yet, is bound to
a pre-session cookie instead (double submit). Every response carries a strict
Content-Security-Policy and `Cache-Control: no-store`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from starlette.exceptions import HTTPException as StarletteHTTPException

from accord.clock import SYSTEM_CLOCK, Clock, now_ms, now_s
from accord.errors import (
    AccordError,
    AuthenticationError,
    AuthorizationError,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
)
from accord.server.review import EVENT_ACTIONS

if TYPE_CHECKING:
    from accord.server.assembly import Services
    from accord.server.private_matching import PrivateMatchingService
    from accord.server.review import ReviewerSession, ReviewService

PREFIX = "/console"
SESSION_COOKIE = "accord_review"
LOGIN_COOKIE = "accord_review_login"
LOGIN_COOKIE_MAX_AGE_S = 3600
REVEAL_GRANT_TTL_S = 120
MAX_FORM_BYTES = 64 * 1024
MAX_FORM_FIELDS = 16
MAX_NOTE_CHARS = 2000
MAX_NAME_CHARS = 64
MAX_PASSWORD_CHARS = 1024
MAX_ATTACHMENT_INDEX = 10_000
QUEUE_PAGE_SIZE = 50
AUDIT_PAGE_SIZE = 100
EVENTS_PAGE_SIZE = 50
#: Highest image index an event page may ask for (as `GET /v1/review/events/{id}/images/{n}`).
MAX_EVENT_IMAGE_INDEX = 1024
#: Side at which a 64 x 64 derivative is drawn on an event page (pixels stay square).
DERIVATIVE_SHOWN_PX = 256

STATUSES = ("open", "dismissed", "warned", "suspended", "escalated")
ACTIONS = ("dismiss", "warn", "suspend", "unsuspend", "escalate", "reopen")
ACTION_DONE = {
    "dismiss": "Report dismissed. The account was not changed.",
    "warn": "Warning sent to the account. The report is closed as warned.",
    "suspend": "Account suspended: it can no longer send messages.",
    "unsuspend": "Account unsuspended. The report is open again.",
    "escalate": "Report escalated. It can now be exported.",
    "reopen": "Report reopened.",
}
EVENT_ACTION_DONE = {
    "confirm": "Match confirmed. The account was not changed.",
    "dismiss": "Event dismissed. The account was not changed.",
    "suspend": "Account suspended: it can no longer send messages.",
    "unsuspend": "Account unsuspended. The event is open again.",
    "escalate": "Event escalated. It can now be exported.",
    "reopen": "Event reopened.",
}
# Shown inline after a reveal; anything else (SVG included) is offered as a download only.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
EXPORT_FORMATS = ("xml", "json")
# The file name's extension for what the service returns (the XML export may be a ZIP of XML
# documents).
EXPORT_EXTENSIONS = {"application/xml": "xml", "application/json": "json", "application/zip": "zip"}

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self'; style-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STALE_FORM = (
    "This form was not accepted: it is out of date or was not sent from this console. "
    "Go back, reload the page and try again."
)

_REPORT_ID = re.compile(r"^r_[A-Za-z0-9_-]{16,32}$")
_EVENT_ID = re.compile(r"^e_[A-Za-z0-9_-]{16,32}$")
_ACCOUNT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_LOGIN_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,64}$")
_STATIC_DIR = Path(__file__).parent / "static"
_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}


# --- rendering ------------------------------------------------------------------------------


def format_ms(ms: int) -> str:
    """A millisecond timestamp as UTC, to the second."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_size(n: int) -> str:
    """A byte count for people, in SI units."""
    if n < 1000:
        return f"{n} bytes"
    value, unit = n / 1000, "kB"
    for larger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, larger
    return f"{value:.1f} {unit}"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = format_ms
    env.filters["size"] = format_size
    return env


_TEMPLATES = _environment()


def _page(
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    context.setdefault("session", None)
    context.setdefault("title", "Review console")
    context.setdefault("nav", "")
    body = _TEMPLATES.get_template(template).render(prefix=PREFIX, **context)
    return HTMLResponse(body, status_code=status_code, headers=headers)


def error_page(exc: AccordError, session: ReviewerSession | None = None) -> HTMLResponse:
    """The console's page for an error from the service (or from the console's own checks)."""
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    message = STALE_FORM if exc.code == "csrf" else exc.message
    return _page(
        "error.html",
        status_code=exc.http_status,
        headers=headers,
        title=f"Error {exc.http_status}",
        status=exc.http_status,
        message=message,
        session=session,
    )


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _login_redirect() -> RedirectResponse:
    response = _redirect(f"{PREFIX}/login")
    response.delete_cookie(SESSION_COOKIE, path=PREFIX, httponly=True, samesite="strict")
    return response


class ConsoleRoute(APIRoute):
    """Every console route: service errors become HTML pages (a missing or expired session
    sends the browser to the login page), and every response gets the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handle(request)
            except AuthenticationError:
                response = _login_redirect()
            except AccordError as exc:
                response = error_page(exc)
            except RequestValidationError:
                response = error_page(InvalidInput("the request was malformed"))
            except StarletteHTTPException as exc:
                response = error_page(_http_error(exc.status_code))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return route


def _http_error(status: int) -> AccordError:
    if status == 404:
        return NotFound("no such page")
    error = InvalidInput("the request was not accepted")
    error.http_status = status
    return error


# --- requests -------------------------------------------------------------------------------


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body, size- and field-limited; a field sent twice
    is an error."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise TooLarge("the form is too large")
    if not body:
        return {}
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidInput("forms are sent as application/x-www-form-urlencoded")
    try:
        pairs = parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            max_num_fields=MAX_FORM_FIELDS,
            encoding="utf-8",
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidInput("the form could not be read") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise InvalidInput("a form field was sent twice")
        form[name] = value
    return form


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _check_csrf(sent: str | None, expected: str) -> None:
    """`sent` (from the form) must equal `expected`; a 403 page otherwise."""
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise AuthorizationError("form token missing or wrong", code="csrf")


def _report_id(value: str) -> str:
    if not _REPORT_ID.fullmatch(value):
        raise NotFound("no such report")
    return value


def _event_id(value: str) -> str:
    if not _EVENT_ID.fullmatch(value):
        raise NotFound("no such event")
    return value


def _event_image_index(value: int) -> int:
    if not 0 <= value <= MAX_EVENT_IMAGE_INDEX:
        raise NotFound("no such image")
    return value


def _account_error(account: str | None) -> str | None:
    if account is None or _ACCOUNT.fullmatch(account):
        return None
    return "An account name has 1 to 64 characters: lower-case letters, digits, '.', '_' or '-'."


def _attachment_index(value: int) -> int:
    if not 0 <= value <= MAX_ATTACHMENT_INDEX:
        raise NotFound("no such attachment")
    return value


def reveal_grant(session: ReviewerSession, report_id: str, index: int, until_s: int) -> str:
    """A short-lived proof, bound to the session, that its reviewer chose to see one file."""
    key = hmac.new(session.csrf_token.encode(), b"accord console reveal", hashlib.sha256).digest()
    message = f"{report_id}\x00{index}\x00{until_s}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _valid_grant(
    session: ReviewerSession,
    report_id: str,
    index: int,
    until: str | None,
    grant: str | None,
    *,
    now: float,
) -> bool:
    if not until or not grant or not until.isdigit() or len(until) > 12:
        return False
    until_s = int(until)
    if until_s < now or until_s > now + REVEAL_GRANT_TTL_S:
        return False
    expected = reveal_grant(session, report_id, index, until_s)
    return hmac.compare_digest(grant.encode(), expected.encode())


def _queue_url(status: str | None, account: str | None, before: int | None = None) -> str:
    query = {
        k: v
        for k, v in (("status", status), ("account", account), ("before", before))
        if v not in (None, "")
    }
    return f"{PREFIX}?{urlencode(query)}" if query else PREFIX


def _events_url(account: str | None, before: int | None = None) -> str:
    query = {k: v for k, v in (("account", account), ("before", before)) if v not in (None, "")}
    return f"{PREFIX}/events?{urlencode(query)}" if query else f"{PREFIX}/events"


def _download_name(report_id: str, index: int, name: str) -> str:
    """A safe file name for Content-Disposition: the report, the index and the extension."""
    suffix = Path(name).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        suffix = ".bin"
    return f"{report_id}-{index}{suffix}"


# --- routes ---------------------------------------------------------------------------------


def mount_console(app: FastAPI, services: Services) -> None:
    """Serve the console from a server's app: `create_app(config, mounts=[mount_console])`."""
    register_console(app, services.review, services.matching, clock=services.clock)


def register_console(
    app: FastAPI,
    review: ReviewService,
    matching: PrivateMatchingService,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    """Add the console's routes under /console to `app`; reveal grants and cookie lifetimes
    read the time from `clock` (the review service's sessions from its own)."""
    router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)

    async def current_session(request: Request) -> ReviewerSession:
        token = request.cookies.get(SESSION_COOKIE)
        if not token or len(token) > 256:
            raise AuthenticationError()
        return await review.session(token)

    async def acting(
        request: Request, allowed: tuple[str, ...]
    ) -> tuple[ReviewerSession, str, str]:
        """A form posting an action: the reviewer's session (CSRF checked), the action, the note."""
        form = await read_form(request)
        session = await current_session(request)
        _check_csrf(form.get("csrf_token"), session.csrf_token)
        action, note = _action_form(form, allowed)
        return session, action, note

    # --- login and logout ---------------------------------------------------------------

    def login_form(
        request: Request, *, error: str | None = None, name: str = "", status_code: int = 200
    ) -> HTMLResponse:
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not _LOGIN_TOKEN.fullmatch(token):
            token = secrets.token_urlsafe(32)
        response = _page(
            "login.html",
            status_code=status_code,
            title="Sign in",
            csrf_token=token,
            error=error,
            name=name,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            max_age=LOGIN_COOKIE_MAX_AGE_S,
            path=f"{PREFIX}/login",
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        return response

    @router.get("/login")
    async def login_page(request: Request) -> Response:
        try:
            await current_session(request)
        except AuthenticationError:
            return login_form(request)
        return _redirect(PREFIX)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await read_form(request)
        _check_csrf(form.get("csrf_token"), request.cookies.get(LOGIN_COOKIE, ""))
        name = form.get("name", "").strip()
        password = form.get("password", "")
        if not name or not password:
            return login_form(request, error="Enter your name and your password.", name=name)
        try:
            if len(name) > MAX_NAME_CHARS or len(password) > MAX_PASSWORD_CHARS:
                raise AuthenticationError()
            address = request.client.host if request.client else ""
            session = await review.login(name, password, address=address)
        except AuthenticationError:
            return login_form(request, error="The name or the password is wrong.", name=name)
        response = _redirect(PREFIX)
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            max_age=max(0, (session.expires_at - now_ms(clock)) // 1000),
            path=PREFIX,
            secure=_secure(request),
            httponly=True,
            samesite="strict",
        )
        response.delete_cookie(
            LOGIN_COOKIE, path=f"{PREFIX}/login", httponly=True, samesite="strict"
        )
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        form = await read_form(request)
        session = await current_session(request)
        _check_csrf(form.get("csrf_token"), session.csrf_token)
        await review.logout(session.token)
        return _login_redirect()

    # --- the queue ----------------------------------------------------------------------

    @router.get("")
    async def queue(
        request: Request,
        status: str | None = None,
        account: str | None = None,
        before: str | None = None,
    ) -> Response:
        session = await current_session(request)
        errors: dict[str, str] = {}
        status = status or None
        account = (account or "").strip() or None
        if status is not None and status not in STATUSES:
            errors["status"] = "Choose one of the statuses in the list."
        account_error = _account_error(account)
        if account_error is not None:
            errors["account"] = account_error
        before_ms = int(before) if before and before.isdigit() and len(before) < 16 else None
        reports = []
        if not errors:
            found = await review.list_reports(
                status=status, account=account, limit=QUEUE_PAGE_SIZE, before=before_ms
            )
            reports = found.reports
        older = (
            _queue_url(status, account, reports[-1].created_at)
            if len(reports) == QUEUE_PAGE_SIZE
            else None
        )
        return _page(
            "queue.html",
            status_code=400 if errors else 200,
            title="Report queue",
            nav="queue",
            session=session,
            statuses=STATUSES,
            status=status or "",
            account=account or "",
            errors=errors,
            reports=reports,
            older=older,
            newest=_queue_url(status, account) if before_ms is not None else None,
        )

    # --- one report ---------------------------------------------------------------------

    @router.get("/reports/{report_id}")
    async def report_page(
        request: Request,
        report_id: str,
        done: str | None = None,
        shown: str | None = None,
        until: str | None = None,
        grant: str | None = None,
    ) -> Response:
        session = await current_session(request)
        detail = await review.report(_report_id(report_id))
        try:
            overview = await review.account_overview(detail.reported_account)
        except NotFound:
            overview = None
        revealed: dict[int, str] = {}
        if shown is not None and shown.isdigit() and len(shown) < 6:
            index = int(shown)
            if _valid_grant(session, detail.report_id, index, until, grant, now=clock.time()):
                revealed[index] = urlencode({"until": until, "grant": grant})
        return _page(
            "report.html",
            title=f"Report {detail.report_id}",
            session=session,
            report=detail,
            overview=overview,
            revealed=revealed,
            inline_types=INLINE_IMAGE_TYPES,
            done=ACTION_DONE.get(done or ""),
            actions=_available_actions(detail.status, overview, REPORT_ACTION_LABELS),
        )

    @router.get("/reports/{report_id}/attachments/{index}/preview")
    async def attachment_preview(request: Request, report_id: str, index: int) -> Response:
        await current_session(request)
        media_type, data = await review.attachment_preview(
            _report_id(report_id), _attachment_index(index)
        )
        return Response(data, media_type=media_type)

    @router.post("/reports/{report_id}/attachments/{index}/reveal")
    async def reveal_attachment(request: Request, report_id: str, index: int) -> Response:
        form = await read_form(request)
        session = await current_session(request)
        _check_csrf(form.get("csrf_token"), session.csrf_token)
        report_id, index = _report_id(report_id), _attachment_index(index)
        until_s = now_s(clock) + REVEAL_GRANT_TTL_S
        query = urlencode(
            {
                "shown": index,
                "until": until_s,
                "grant": reveal_grant(session, report_id, index, until_s),
            }
        )
        return _redirect(f"{PREFIX}/reports/{report_id}?{query}#attachment-{index}")

    @router.get("/reports/{report_id}/attachments/{index}")
    async def attachment_file(
        request: Request,
        report_id: str,
        index: int,
        until: str | None = None,
        grant: str | None = None,
    ) -> Response:
        """The file itself: only with a fresh reveal grant of this session, and only through
        `reveal_attachment`, which records that this reviewer saw it."""
        session = await current_session(request)
        report_id, index = _report_id(report_id), _attachment_index(index)
        if not _valid_grant(session, report_id, index, until, grant, now=clock.time()):
            raise AuthorizationError("choose \u201cView attachment\u201d on the report first")
        media_type, data = await review.reveal_attachment(report_id, index, session.reviewer)
        if media_type in INLINE_IMAGE_TYPES:
            return Response(data, media_type=media_type)
        detail = await review.report(report_id)
        name = next((a.name for m in detail.items for a in m.attachments if a.index == index), "")
        disposition = f'attachment; filename="{_download_name(report_id, index, name)}"'
        return Response(
            data,
            media_type="application/octet-stream",
            headers={"Content-Disposition": disposition},
        )

    @router.post("/reports/{report_id}/actions")
    async def act(request: Request, report_id: str) -> Response:
        session, action, note = await acting(request, ACTIONS)
        report_id = _report_id(report_id)
        await review.act(report_id, session.reviewer, action, note, role=session.role)
        return _redirect(f"{PREFIX}/reports/{report_id}?{urlencode({'done': action})}")

    @router.get("/reports/{report_id}/export.{fmt}")
    async def export(request: Request, report_id: str, fmt: str) -> Response:
        session = await current_session(request)
        report_id = _report_id(report_id)
        if fmt not in EXPORT_FORMATS:
            raise NotFound("exports are XML or JSON")
        media_type, body = await review.export(report_id, fmt, session.reviewer)
        return _download(report_id, media_type, fmt, body)

    # --- private-matching threshold events --------------------------------------------

    async def record_view(reviewer: str, action: str, target: str) -> None:
        # The same audit entries as GET /v1/review/events/... (register_private_matching_routes).
        await review.record_view(reviewer, action, target)

    @router.get("/events")
    async def events(
        request: Request, account: str | None = None, before: str | None = None
    ) -> Response:
        session = await current_session(request)
        account = (account or "").strip() or None
        error = _account_error(account)
        before_ms = int(before) if before and before.isdigit() and len(before) < 16 else None
        found = []
        if error is None:
            listed = await matching.list_events(
                account=account, limit=EVENTS_PAGE_SIZE, before=before_ms
            )
            found = listed.events
        older = (
            _events_url(account, found[-1].created_at) if len(found) == EVENTS_PAGE_SIZE else None
        )
        return _page(
            "events.html",
            status_code=400 if error else 200,
            title="Threshold events",
            nav="events",
            session=session,
            account=account or "",
            account_error=error,
            events=found,
            older=older,
            newest=_events_url(account) if before_ms is not None else None,
        )

    @router.get("/events/{event_id}")
    async def event_page(request: Request, event_id: str, done: str | None = None) -> Response:
        session = await current_session(request)
        event_id = _event_id(event_id)
        try:
            detail = await matching.event(event_id)
        except NotFound:
            raise NotFound("no such event") from None
        try:
            table = await matching.table_summary(detail.event.table_version)
        except NotFound:
            table = None
        try:
            overview = await review.account_overview(detail.event.account)
        except NotFound:
            overview = None
        await record_view(session.reviewer, "view_match_event", event_id)
        return _page(
            "event.html",
            title=f"Threshold event {event_id}",
            nav="events",
            session=session,
            event=detail.event,
            images=detail.images,
            table=table,
            shown_px=DERIVATIVE_SHOWN_PX,
            done=EVENT_ACTION_DONE.get(done or ""),
            actions=_available_actions(detail.event.status, overview, EVENT_ACTION_LABELS),
        )

    @router.post("/events/{event_id}/actions")
    async def act_on_event(request: Request, event_id: str) -> Response:
        session, action, note = await acting(request, EVENT_ACTIONS)
        event_id = _event_id(event_id)
        await review.act_on_event(event_id, session.reviewer, action, note, role=session.role)
        return _redirect(f"{PREFIX}/events/{event_id}?{urlencode({'done': action})}")

    @router.get("/events/{event_id}/export.{fmt}")
    async def export_event(request: Request, event_id: str, fmt: str) -> Response:
        session = await current_session(request)
        event_id = _event_id(event_id)
        if fmt not in EXPORT_FORMATS:
            raise NotFound("exports are XML or JSON")
        media_type, body = await review.export_event(event_id, fmt, session.reviewer)
        return _download(event_id, media_type, fmt, body)

    @router.get("/events/{event_id}/images/{index}")
    async def event_image(request: Request, event_id: str, index: int) -> Response:
        """One image's 64 x 64 derivative, as the protocol reveals it; each fetch is audited."""
        session = await current_session(request)
        event_id, index = _event_id(event_id), _event_image_index(index)
        try:
            png = await matching.derivative_png(event_id, index)
        except NotFound:
            raise NotFound("no such image") from None
        await record_view(session.reviewer, "view_match_image", f"{event_id}/{index}")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    # --- the audit trail ----------------------------------------------------------------

    @router.get("/audit")
    async def audit(request: Request, after: str | None = None) -> Response:
        session = await current_session(request)
        after_seq = int(after) if after and after.isdigit() and len(after) < 16 else 0
        trail = await review.audit_trail(limit=AUDIT_PAGE_SIZE, after=after_seq)
        entries = trail.entries
        more = (
            f"{PREFIX}/audit?{urlencode({'after': entries[-1].seq})}"
            if len(entries) == AUDIT_PAGE_SIZE
            else None
        )
        return _page(
            "audit.html",
            title="Audit trail",
            nav="audit",
            session=session,
            entries=entries,
            more=more,
            first=f"{PREFIX}/audit" if after_seq else None,
        )

    # --- static files and everything else -----------------------------------------------

    static_files = {
        p.name: p
        for p in (_STATIC_DIR.iterdir() if _STATIC_DIR.is_dir() else ())
        if p.is_file() and p.suffix in _STATIC_TYPES
    }

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        path = static_files.get(name)
        if path is None:
            raise NotFound("no such file")
        return Response(path.read_bytes(), media_type=_STATIC_TYPES[path.suffix])

    @router.api_route("/{rest:path}", methods=["GET", "POST"])
    async def elsewhere(rest: str) -> Response:
        if rest == "":
            return _redirect(PREFIX)
        raise NotFound("no such page")

    app.include_router(router)


REPORT_ACTION_LABELS = (("dismiss", "Dismiss"), ("warn", "Warn account"))
EVENT_ACTION_LABELS = (("confirm", "Confirm match"), ("dismiss", "Dismiss"))


def _available_actions(
    status: str, overview: Any, first: tuple[tuple[str, str], ...]
) -> list[tuple[str, str]]:
    """(action, button label) for a report's or an event's state, in the order the page shows
    them: `first`, then suspend or unsuspend, escalate, reopen."""
    suspended = bool(overview is not None and overview.suspended)
    actions = list(first)
    actions.append(
        ("unsuspend", "Unsuspend account") if suspended else ("suspend", "Suspend account")
    )
    if status != "escalated":
        actions.append(("escalate", "Escalate"))
    if status != "open":
        actions.append(("reopen", "Reopen"))
    return actions


def _action_form(form: dict[str, str], allowed: tuple[str, ...]) -> tuple[str, str]:
    """The action button pressed and the note, checked."""
    action = form.get("action", "")
    note = form.get("note", "").strip()
    if action not in allowed:
        raise InvalidInput("choose one of the action buttons")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidInput(f"a note has at most {MAX_NOTE_CHARS} characters")
    return action, note


def _download(name: str, media_type: str, fmt: str, body: bytes) -> Response:
    extension = EXPORT_EXTENSIONS.get(media_type, fmt)
    return Response(
        body,
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}.{extension}"'},
    )
