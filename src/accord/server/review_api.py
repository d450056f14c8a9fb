"""HTTP routes for reports (devices), reviewer accounts (operator) and the review queue for
scripts (reviewers or the operator). Thin: the work is in server/reports.py and server/review.py.

Routes are defined inside `register_review_routes` with local dependency aliases, so this module
does not use postponed annotations (FastAPI must see the real objects).
"""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Path, Query
from fastapi.responses import Response
from sqlalchemy import Connection, select

from accord.errors import AuthenticationError
from accord.server.messaging import AuthedDevice
from accord.server.reports import ReportService
from accord.server.review import ReviewService
from accord.storage.db import Database
from accord.storage.schema import account_notices, accounts
from accord.wire.reports import (
    AccountOverview,
    AuditTrail,
    Notice,
    NoticeList,
    ReportDetail,
    ReportFiled,
    ReportList,
    ReportRequest,
    ReviewActionRequest,
    ReviewerCreate,
    ReviewerLogin,
    ReviewerToken,
)

ReportIdPath = Annotated[str, Path(pattern=r"^r_[A-Za-z0-9_-]{16,32}$")]


def reviewer_dependency(
    review: ReviewService, admin_token: str
) -> Callable[..., Awaitable[tuple[str, str]]]:
    """A FastAPI dependency giving the acting reviewer's name and role: from a reviewer session
    token, or from the operator token (acting as "operator", with the admin role)."""

    async def current_reviewer(
        authorization: Annotated[str | None, Header()] = None,
    ) -> tuple[str, str]:
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationError("reviewer or operator token required")
        token = authorization[len("Bearer ") :].strip()
        if hmac.compare_digest(token.encode(), admin_token.encode()):
            return "operator", "admin"
        session = await review.session(token)
        return session.reviewer, session.role

    return current_reviewer


def register_review_routes(
    app: FastAPI,
    *,
    db: Database,
    reports: ReportService,
    review: ReviewService,
    current_device: Callable[..., Awaitable[AuthedDevice]],
    require_operator: Callable[..., Awaitable[None]],
    admin_token: str,
) -> None:
    Device = Annotated[AuthedDevice, Depends(current_device)]
    Operator = Annotated[None, Depends(require_operator)]

    Reviewer = Annotated[tuple[str, str], Depends(reviewer_dependency(review, admin_token))]

    # --- devices ------------------------------------------------------------------------

    @app.post("/v1/reports", status_code=201)
    async def file_report(req: ReportRequest, dev: Device) -> ReportFiled:
        return await reports.file_report(dev, req)

    @app.get("/v1/notices")
    async def notices(dev: Device, after: Annotated[int, Query(ge=0, le=2**62)] = 0) -> NoticeList:
        def _rd(conn: Connection) -> Any:
            return conn.execute(
                select(account_notices)
                .join(accounts, accounts.c.id == account_notices.c.account_id)
                .where(accounts.c.name == dev.account, account_notices.c.id > after)
                .order_by(account_notices.c.id)
                .limit(100)
            ).all()

        rows = await db.read_async(_rd)
        return NoticeList(
            notices=[
                Notice(id=r.id, kind=r.kind, text=r.text, created_at=r.created_at) for r in rows
            ]
        )

    # --- operator -----------------------------------------------------------------------

    @app.post("/v1/reviewers", status_code=201)
    async def create_reviewer(req: ReviewerCreate, _op: Operator) -> dict[str, str]:
        await review.create_reviewer(req.name, req.password, req.role)
        return {"name": req.name, "role": req.role}

    # --- reviewers ----------------------------------------------------------------------

    @app.post("/v1/review/login")
    async def login(req: ReviewerLogin) -> ReviewerToken:
        session = await review.login(req.name, req.password)
        return ReviewerToken(token=session.token, role=session.role, expires_at=session.expires_at)

    @app.get("/v1/review/reports")
    async def list_reports(
        _who: Reviewer,
        status: Annotated[
            Literal["open", "dismissed", "warned", "suspended", "escalated"] | None, Query()
        ] = None,
        account: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    ) -> ReportList:
        return await review.list_reports(status=status, account=account, limit=limit, before=before)

    @app.get("/v1/review/reports/{report_id}")
    async def get_report(report_id: ReportIdPath, _who: Reviewer) -> ReportDetail:
        return await review.report(report_id)

    @app.get("/v1/review/accounts/{account}")
    async def account_overview(
        account: Annotated[str, Path(max_length=64)], _who: Reviewer
    ) -> AccountOverview:
        return await review.account_overview(account)

    @app.post("/v1/review/reports/{report_id}/actions")
    async def act(report_id: ReportIdPath, req: ReviewActionRequest, who: Reviewer) -> ReportDetail:
        return await review.act(report_id, who[0], req.action, req.note, role=who[1])

    @app.get("/v1/review/reports/{report_id}/attachments/{index}")
    async def reveal(
        report_id: ReportIdPath, index: Annotated[int, Path(ge=0, le=10_000)], who: Reviewer
    ) -> Response:
        media_type, data = await review.reveal_attachment(report_id, index, who[0])
        return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})

    @app.get("/v1/review/reports/{report_id}/export")
    async def export(
        report_id: ReportIdPath,
        who: Reviewer,
        format: Annotated[Literal["xml", "json"], Query()] = "xml",  # noqa: A002
    ) -> Response:
        media_type, body = await review.export(report_id, format, who[0])
        name = f"{report_id}-cybertipline.zip" if format == "xml" else f"{report_id}.json"
        disposition = f'attachment; filename="{name}"'
        return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})

    @app.get("/v1/review/audit")
    async def audit(
        _who: Reviewer,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    ) -> AuditTrail:
        return await review.audit_trail(limit=limit, after=after)
