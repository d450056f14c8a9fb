"""Devices file verified reports (docs/protocol/franking.md) and read what review told their
account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from accord.server.deps import ActiveDevice, CurrentDevice, ServicesDep
from accord.wire.reports import NoticeList, ReportFiled, ReportRequest

router = APIRouter()


@router.post("/v1/reports", status_code=201)
async def file_report(req: ReportRequest, dev: ActiveDevice, services: ServicesDep) -> ReportFiled:
    return await services.reports.file_report(dev, req)


@router.get("/v1/notices")
async def notices(
    dev: CurrentDevice, services: ServicesDep, after: Annotated[int, Query(ge=0, le=2**62)] = 0
) -> NoticeList:
    return await services.review.notices(dev.account, after=after)
