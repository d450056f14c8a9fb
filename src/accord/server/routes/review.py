"""The review API for scripts (docs/console.md): reviewer accounts (operator), the report queue,
actions, exports and the audit trail, and private-matching threshold events (the same actions and
exports as reports). Reviewers act by session token; the operator token acts as an admin
reviewer. Every view of an event is audited.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from accord.server.deps import CurrentReviewer, Operator, ServicesDep
from accord.wire.matching import (
    EventActionRequest,
    ReviewEventDetail,
    ReviewEventList,
    ReviewEventSummary,
)
from accord.wire.reports import (
    AccountOverview,
    Appeal,
    AppealDecision,
    AppealList,
    AuditTrail,
    ReportDetail,
    ReportList,
    ReviewActionRequest,
    ReviewerCreate,
    ReviewerLogin,
    ReviewerToken,
)

ReportIdPath = Annotated[str, Path(pattern=r"^r_[A-Za-z0-9_-]{16,32}$")]
EventIdPath = Annotated[str, Path(pattern=r"^e_[A-Za-z0-9_-]{16,32}$")]
NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter()


# --- operator ---------------------------------------------------------------------------


@router.post("/v1/reviewers", status_code=201)
async def create_reviewer(
    req: ReviewerCreate, _op: Operator, services: ServicesDep
) -> dict[str, str]:
    await services.review.create_reviewer(req.name, req.password, req.role)
    return {"name": req.name, "role": req.role}


# --- reviewers: reports -----------------------------------------------------------------


@router.post("/v1/review/login")
async def login(req: ReviewerLogin, request: Request, services: ServicesDep) -> ReviewerToken:
    address = request.client.host if request.client else ""
    session = await services.review.login(req.name, req.password, address=address)
    return ReviewerToken(token=session.token, role=session.role, expires_at=session.expires_at)


@router.get("/v1/review/reports")
async def list_reports(
    _who: CurrentReviewer,
    services: ServicesDep,
    status: Annotated[
        Literal["open", "dismissed", "warned", "suspended", "escalated"] | None, Query()
    ] = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> ReportList:
    return await services.review.list_reports(
        status=status, account=account, limit=limit, before=before
    )


@router.get("/v1/review/reports/{report_id}")
async def get_report(
    report_id: ReportIdPath, _who: CurrentReviewer, services: ServicesDep
) -> ReportDetail:
    return await services.review.report(report_id)


@router.get("/v1/review/accounts/{account}")
async def account_overview(
    account: Annotated[str, Path(max_length=64)], _who: CurrentReviewer, services: ServicesDep
) -> AccountOverview:
    return await services.review.account_overview(account)


@router.post("/v1/review/reports/{report_id}/actions")
async def act(
    report_id: ReportIdPath, req: ReviewActionRequest, who: CurrentReviewer, services: ServicesDep
) -> ReportDetail:
    return await services.review.act(report_id, who.name, req.action, req.note, role=who.role)


@router.get("/v1/review/appeals")
async def list_appeals(
    _who: CurrentReviewer,
    services: ServicesDep,
    status: Annotated[Literal["open", "upheld", "lifted"] | None, Query()] = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
) -> AppealList:
    return await services.review.appeals(status=status, account=account)


@router.post("/v1/review/appeals/{appeal_id}/decision")
async def decide_appeal(
    appeal_id: Annotated[int, Path(ge=1, le=2**62)],
    req: AppealDecision,
    who: CurrentReviewer,
    services: ServicesDep,
) -> Appeal:
    return await services.review.decide_appeal(
        appeal_id, who.name, req.decision, req.note, role=who.role
    )


@router.get("/v1/review/reports/{report_id}/attachments/{index}")
async def reveal(
    report_id: ReportIdPath,
    index: Annotated[int, Path(ge=0, le=10_000)],
    who: CurrentReviewer,
    services: ServicesDep,
) -> Response:
    media_type, data = await services.review.reveal_attachment(report_id, index, who.name)
    return Response(data, media_type=media_type, headers=NO_STORE)


@router.get("/v1/review/reports/{report_id}/export")
async def export(
    report_id: ReportIdPath,
    who: CurrentReviewer,
    services: ServicesDep,
    format: Annotated[Literal["xml", "json"], Query()] = "xml",  # noqa: A002
) -> Response:
    media_type, body = await services.review.export(report_id, format, who.name)
    return _export(report_id, format, media_type, body)


@router.get("/v1/review/audit")
async def audit(
    _who: CurrentReviewer,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> AuditTrail:
    return await services.review.audit_trail(limit=limit, after=after)


# --- reviewers: private-matching threshold events -----------------------------------------


@router.get("/v1/review/events")
async def list_events(
    _who: CurrentReviewer,
    services: ServicesDep,
    account: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> ReviewEventList:
    return await services.matching.list_events(account=account, limit=limit, before=before)


@router.get("/v1/review/events/{event_id}")
async def get_event(
    event_id: EventIdPath, who: CurrentReviewer, services: ServicesDep
) -> ReviewEventDetail:
    detail = await services.matching.event(event_id)
    await services.review.record_view(who.name, "view_match_event", event_id)
    return detail


@router.get("/v1/review/events/{event_id}/images/{index}")
async def event_image(
    event_id: EventIdPath,
    index: Annotated[int, Path(ge=0, le=1024)],
    who: CurrentReviewer,
    services: ServicesDep,
) -> Response:
    png = await services.matching.derivative_png(event_id, index)
    await services.review.record_view(who.name, "view_match_image", f"{event_id}/{index}")
    return Response(png, media_type="image/png", headers=NO_STORE)


@router.post("/v1/review/events/{event_id}/actions")
async def act_on_event(
    event_id: EventIdPath, req: EventActionRequest, who: CurrentReviewer, services: ServicesDep
) -> ReviewEventSummary:
    await services.review.act_on_event(event_id, who.name, req.action, req.note, role=who.role)
    return await services.matching.event_summary(event_id)


@router.get("/v1/review/events/{event_id}/export")
async def export_event(
    event_id: EventIdPath,
    who: CurrentReviewer,
    services: ServicesDep,
    format: Annotated[Literal["xml", "json"], Query()] = "xml",  # noqa: A002
) -> Response:
    media_type, body = await services.review.export_event(event_id, format, who.name)
    return _export(event_id, format, media_type, body)


def _export(case_id: str, fmt: str, media_type: str, body: bytes) -> Response:
    name = f"{case_id}-cybertipline.zip" if fmt == "xml" else f"{case_id}.json"
    disposition = f'attachment; filename="{name}"'
    return Response(body, media_type=media_type, headers={"Content-Disposition": disposition})
