"""The transparency log, read-only and public: anyone may audit it
(docs/protocol/transparency.md)."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from accord.server.deps import ServicesDep
from accord.server.translog import EntriesPage, LogInfo, Proof

LogIndex = Annotated[int, Query(ge=0, le=2**62)]

router = APIRouter()


@router.get("/v1/log/info")
async def log_info(services: ServicesDep) -> LogInfo:
    return await to_thread.run_sync(services.log.info)


@router.get("/v1/log/checkpoint", response_class=PlainTextResponse)
async def log_checkpoint(services: ServicesDep) -> PlainTextResponse:
    return PlainTextResponse(await to_thread.run_sync(services.log.checkpoint))


@router.get("/v1/log/entries")
async def log_entries(services: ServicesDep, start: LogIndex = 0, end: LogIndex = 0) -> EntriesPage:
    return await to_thread.run_sync(services.log.entries_page, start, end)


@router.get("/v1/log/proof/inclusion")
async def inclusion(
    services: ServicesDep, index: LogIndex, size: Annotated[int, Query(ge=1, le=2**62)]
) -> Proof:
    return await services.log.inclusion_async(index, size)


@router.get("/v1/log/proof/consistency")
async def consistency(services: ServicesDep, old: LogIndex, new: LogIndex) -> Proof:
    return await services.log.consistency_async(old, new)
