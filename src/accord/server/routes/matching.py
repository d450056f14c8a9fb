"""Private threshold matching (docs/protocol/private-matching.md): the current table and table
files for anyone; publishing a table (a background job, followed by id) and the status for the
operator. Threshold events are in routes/review.py."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import FileResponse

from accord.server.deps import Operator, ServicesDep
from accord.wire.matching import MatchingStatus, PublishJob, PublishTableRequest, TableInfo

router = APIRouter()


@router.get("/v1/matching/table")
async def current_table(services: ServicesDep) -> TableInfo:
    return await to_thread.run_sync(services.matching.table_info)


@router.get("/v1/matching/tables/{digest}")
async def table_file(
    digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")], services: ServicesDep
) -> FileResponse:
    path = await to_thread.run_sync(services.matching.table_file, digest)
    return FileResponse(path, media_type="application/octet-stream")


@router.get("/v1/matching/tables/{digest}/delta")
async def table_delta(
    digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    base: Annotated[str, Query(alias="from", pattern=r"^[0-9a-f]{64}$")],
    services: ServicesDep,
) -> FileResponse:
    """The delta that turns table `from` into table `digest` (404 `table_delta_not_found` if
    that table was not built from that one)."""
    path = await to_thread.run_sync(services.matching.table_delta, digest, base)
    return FileResponse(path, media_type="application/octet-stream")


@router.post("/v1/matching/tables", status_code=202)
async def publish_table(
    req: PublishTableRequest, _op: Operator, services: ServicesDep, response: Response
) -> PublishJob:
    """Start building and publishing a table; follow it at the Location answered."""
    job = await to_thread.run_sync(services.matching.start_publish, req)
    response.headers["Location"] = f"/v1/matching/jobs/{job.job_id}"
    return job


@router.get("/v1/matching/jobs/{job_id}")
async def publish_job(
    job_id: Annotated[str, Path(pattern=r"^j_[A-Za-z0-9_-]{16,32}$")],
    _op: Operator,
    services: ServicesDep,
) -> PublishJob:
    return services.matching.publish_job(job_id)


@router.get("/v1/matching/status")
async def matching_status(_op: Operator, services: ServicesDep) -> MatchingStatus:
    return await to_thread.run_sync(services.matching.status)
