"""Devices file verified reports (docs/protocol/franking.md) and read what review told their
account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from accord.server.deps import ActiveDevice, CurrentDevice, ServicesDep
from accord.wire.reports import (
    Appeal,
    AppealList,
    AppealRequest,
    NoticeList,
    ReportFiled,
    ReportRequest,
)

router = APIRouter()


@router.post(
    "/v1/reports",
    status_code=201,
    responses={200: {"model": ReportFiled, "description": "Already filed: the report on file"}},
)
async def file_report(
    req: ReportRequest, dev: ActiveDevice, services: ServicesDep, response: Response
) -> ReportFiled:
    """201 with a new report; 200 naming the report already filed about the same message."""
    filed = await services.reports.file_report(dev, req)
    if filed.existing:
        response.status_code = 200
    return filed


@router.get("/v1/notices")
async def notices(
    dev: CurrentDevice, services: ServicesDep, after: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> NoticeList:
    return await services.review.notices(dev.account, after=after)


@router.post("/v1/appeals", status_code=201)
async def file_appeal(req: AppealRequest, dev: CurrentDevice, services: ServicesDep) -> Appeal:
    """A suspended account's appeal (it may still read and appeal, nothing else)."""
    return await services.review.file_appeal(dev.account, req.text)


@router.get("/v1/appeals")
async def my_appeals(dev: CurrentDevice, services: ServicesDep) -> AppealList:
    return await services.review.appeals(account=dev.account)
