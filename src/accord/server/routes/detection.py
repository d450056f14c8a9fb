"""Hashing, matching and hash banks for operators: `/v1/hash`, `/v1/match`, `/v1/banks`."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.requests import ClientDisconnect

from accord.errors import InvalidInput, TooLarge
from accord.server.deps import ServicesDep, require_operator
from accord.server.detection import (
    MAX_BANK_IMPORT_BYTES,
    MAX_HASH_UPLOAD_BYTES,
    AddEntriesRequest,
    BankFormat,
    BankName,
    BankRecord,
    CountResult,
    CreateBankRequest,
    EntryIds,
    ExportFormat,
    HashResult,
    MatchRequest,
    MatchResponse,
)

router = APIRouter(dependencies=[Depends(require_operator)])


async def read_body(request: Request, limit: int) -> bytes:
    """The whole request body, refused (413) as soon as it is known to exceed `limit`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"body larger than {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise TooLarge(f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise InvalidInput("upload truncated") from None
    return b"".join(chunks)


@router.post("/v1/hash")
async def hash_upload(request: Request, services: ServicesDep) -> HashResult:
    """File in (raw body), hashes out."""
    data = await read_body(request, MAX_HASH_UPLOAD_BYTES)
    return await to_thread.run_sync(services.detection.hash_bytes, data)


@router.post("/v1/match")
async def match(req: MatchRequest, services: ServicesDep) -> MatchResponse:
    return await to_thread.run_sync(services.detection.match, req)


@router.get("/v1/banks")
async def list_banks(services: ServicesDep) -> list[BankRecord]:
    return await to_thread.run_sync(services.detection.list_banks)


@router.post("/v1/banks", status_code=201)
async def create_bank(req: CreateBankRequest, services: ServicesDep) -> BankRecord:
    return await to_thread.run_sync(services.detection.create_bank, req)


@router.get("/v1/banks/{name}")
async def get_bank(name: BankName, services: ServicesDep) -> BankRecord:
    return await to_thread.run_sync(services.detection.get_bank, name)


@router.post("/v1/banks/{name}/import")
async def import_bank(
    name: BankName,
    request: Request,
    services: ServicesDep,
    format: Annotated[BankFormat, Query()] = "csv",  # noqa: A002
) -> CountResult:
    data = await read_body(request, MAX_BANK_IMPORT_BYTES)
    return await to_thread.run_sync(services.detection.import_bank, name, data, format)


@router.post("/v1/banks/{name}/entries")
async def add_entries(name: BankName, req: AddEntriesRequest, services: ServicesDep) -> CountResult:
    return await to_thread.run_sync(services.detection.add_entries, name, req)


@router.get("/v1/banks/{name}/export")
async def export_bank(
    name: BankName,
    services: ServicesDep,
    format: Annotated[ExportFormat, Query()] = "csv",  # noqa: A002
) -> Response:
    text, media_type = await to_thread.run_sync(services.detection.export_bank, name, format)
    return Response(text, media_type=media_type)


@router.post("/v1/banks/{name}/disable")
async def disable_entries(name: BankName, req: EntryIds, services: ServicesDep) -> CountResult:
    return await to_thread.run_sync(services.detection.set_enabled, name, req, False)


@router.post("/v1/banks/{name}/enable")
async def enable_entries(name: BankName, req: EntryIds, services: ServicesDep) -> CountResult:
    return await to_thread.run_sync(services.detection.set_enabled, name, req, True)
