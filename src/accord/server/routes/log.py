"""The transparency log, read-only and public: anyone may audit it
(docs/protocol/transparency.md). Besides Accord's own JSON routes, the log is served as C2SP
tlog-tiles under the prefix ``/v1/log``: ``checkpoint``, ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]``."""

from __future__ import annotations

import gzip
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response

from accord.protocols.translog.tiles import MAX_TILE_PATH_CHARS, TilePath, parse_tile_path
from accord.server.deps import ServicesDep
from accord.server.translog import EntriesPage, LogInfo, Proof

LogIndex = Annotated[int, Query(ge=0, le=2**62)]
# tlog-tiles: the checkpoint changes, so caches keep it for seconds at most; a tile's bytes at
# a given path never change once served.
CHECKPOINT_CACHE = "public, max-age=2"
TILE_CACHE = "public, max-age=31536000, immutable"
TILE_CONTENT_TYPE = "application/octet-stream"
BUNDLE_GZIP_LEVEL = 6

router = APIRouter()


@router.get("/v1/log/info")
async def log_info(services: ServicesDep) -> LogInfo:
    return await to_thread.run_sync(services.log.info)


@router.get("/v1/log/checkpoint", response_class=PlainTextResponse)
async def log_checkpoint(services: ServicesDep) -> PlainTextResponse:
    """The signed checkpoint (c2sp.org/tlog-checkpoint), cosigned by the witnesses."""
    note = await to_thread.run_sync(services.log.checkpoint)
    return PlainTextResponse(note, headers={"Cache-Control": CHECKPOINT_CACHE})


@router.get(
    "/v1/log/tile/{tile_path:path}",
    response_class=Response,
    responses={200: {"content": {TILE_CONTENT_TYPE: {}}, "description": "The tile's bytes."}},
)
async def log_tile(
    services: ServicesDep,
    request: Request,
    tile_path: Annotated[str, Path(max_length=MAX_TILE_PATH_CHARS)],
) -> Response:
    """A tlog-tiles tile (``<L>/<N>[.p/<W>]``: its hashes concatenated) or entry bundle
    (``entries/<N>[.p/<W>]``); 400 for a path that is not one, 404 for one beyond the log."""
    tile: TilePath = parse_tile_path(tile_path)
    body = await to_thread.run_sync(services.log.tile, tile)
    headers = {"Cache-Control": TILE_CACHE}
    if tile.is_entries:
        headers["Vary"] = "Accept-Encoding"
        if "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, compresslevel=BUNDLE_GZIP_LEVEL, mtime=0)
            headers["Content-Encoding"] = "gzip"
    return Response(body, media_type=TILE_CONTENT_TYPE, headers=headers)


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
