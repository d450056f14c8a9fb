"""The transparency log, read-only and public: anyone may audit it
(docs/protocol/transparency.md). Besides Accord's own JSON routes, the log is served as C2SP
tlog-tiles under the prefix ``/v1/log``: ``checkpoint``, ``tile/<L>/<N>[.p/<W>]`` and
``tile/entries/<N>[.p/<W>]``."""

from __future__ import annotations

import binascii
import gzip
import re
from collections.abc import Awaitable, Callable
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from accord.protocols.translog.tiles import MAX_TILE_PATH_CHARS, TilePath, parse_tile_path
from accord.server.deps import ServicesDep
from accord.server.translog import EntriesPage, LogInfo, LogService, Proof

MAX_LOG_INDEX = 2**62
LogIndex = Annotated[int, Query(ge=0, le=MAX_LOG_INDEX)]
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
    services: ServicesDep, index: LogIndex, size: Annotated[int, Query(ge=1, le=MAX_LOG_INDEX)]
) -> Proof:
    return await services.log.inclusion_async(index, size)


@router.get("/v1/log/proof/consistency")
async def consistency(services: ServicesDep, old: LogIndex, new: LogIndex) -> Proof:
    return await services.log.consistency_async(old, new)


# --- the proof routes without FastAPI's machinery ------------------------------------------
#
# Clients fetch an inclusion proof for every key bundle they use, so these two GETs are the
# log's hottest routes. FastAPI's routing, dependency injection, validation and response model
# cost about as much CPU as the proof itself (docs/benchmarks.md, "Inclusion proofs over
# HTTP"), so a plain route answers them first: only a well-formed query
# (`name=<digits>&name=<digits>`, within the limits above) is taken; anything else, however
# odd, falls through to the FastAPI routes above, which answer it, refusals included, exactly
# as before and describe the routes in the OpenAPI document. Errors raised here
# (`InvalidInput` for a size the log has not reached) reach the application's error handlers
# like any route's.

ProofReader = Callable[[LogService, int, int], Awaitable[list[bytes]]]
_JSON_HEADERS = [(b"content-type", b"application/json")]


def proof_json(proof: list[bytes]) -> bytes:
    """``{"proof":["<base64>",...]}``, the bytes the `Proof` model serialises to (base64
    needs no escaping in JSON)."""
    if not proof:
        return b'{"proof":[]}'
    encoded = [binascii.b2a_base64(h, newline=False) for h in proof]
    return b'{"proof":["' + b'","'.join(encoded) + b'"]}'


class PlainProofRoute(BaseRoute):
    """``GET <path>?<first>=<int>&<second>=<int>`` (either order) answered as plain ASGI."""

    def __init__(
        self, path: str, names: tuple[str, str], minimums: tuple[int, int], read: ProofReader
    ) -> None:
        self.path = self.path_format = path
        self.names = names
        self.minimums = minimums
        self.read = read
        first, second = (re.escape(n.encode()) for n in names)
        digits = rb"([0-9]{1,19})"
        self._forward = re.compile(first + b"=" + digits + b"&" + second + b"=" + digits)
        self._reverse = re.compile(second + b"=" + digits + b"&" + first + b"=" + digits)

    def parse_query(self, query: bytes) -> tuple[int, int] | None:
        """The two values, or None for a query this route leaves to the FastAPI route."""
        if (found := self._forward.fullmatch(query)) is not None:
            values = int(found[1]), int(found[2])
        elif (found := self._reverse.fullmatch(query)) is not None:
            values = int(found[2]), int(found[1])
        else:
            return None
        for value, minimum in zip(values, self.minimums, strict=True):
            if not minimum <= value <= MAX_LOG_INDEX:
                return None
        return values

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] == "GET"
            and scope["path"] == self.path  # under a root path, the FastAPI route answers
            and self.parse_query(scope["query_string"]) is not None
        ):
            return Match.FULL, {"route": self}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        values = self.parse_query(scope["query_string"])
        if values is None:  # pragma: no cover - `matches` took only parsable queries
            raise AssertionError("route handled without a match")
        body = proof_json(await self.read(scope["app"].state.services.log, *values))
        headers = [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


PLAIN_ROUTES: tuple[BaseRoute, ...] = (
    PlainProofRoute(
        "/v1/log/proof/inclusion",
        ("index", "size"),
        (0, 1),
        LogService.inclusion_hashes_async,
    ),
    PlainProofRoute(
        "/v1/log/proof/consistency",
        ("old", "new"),
        (0, 0),
        LogService.consistency_hashes_async,
    ),
)
"""Matched before every router (`accord.server.routes.install_routes`)."""
