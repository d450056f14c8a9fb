"""The witness HTTP interface: ``POST /add-checkpoint`` (C2SP tlog-witness)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from accord.errors import AccordError, TooLarge
from accord.protocols.translog.note import CosignatureSigner, Verifier
from accord.wire.problems import PROBLEM_CONTENT_TYPE, problem_body
from accord.witness.request import MAX_ADD_CHECKPOINT_BYTES
from accord.witness.service import OldSizeMismatch, Witness, WitnessConfig, logs_from_vkeys
from accord.witness.state import SqliteWitnessStateStore

SIZE_CONTENT_TYPE = "text/x.tlog.size"


def create_witness_app(
    *,
    cosigner: CosignatureSigner,
    logs: Mapping[str, Sequence[Verifier]] | Sequence[str | Verifier],
    state_dir: Path,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """A witness for ``logs`` (origin -> log keys, or log vkeys named after their origin),
    cosigning with ``cosigner`` and keeping its state under ``state_dir``."""
    log_map = logs if isinstance(logs, Mapping) else logs_from_vkeys(logs)
    witness = Witness(
        WitnessConfig(cosigner=cosigner, logs=log_map),
        SqliteWitnessStateStore(Path(state_dir), clock=clock),
        clock=clock,
    )
    app = FastAPI(title="Accord witness", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.witness = witness

    @app.post("/add-checkpoint")
    async def add_checkpoint(request: Request) -> Response:
        try:
            body = await _read_body(request)
            lines = await run_in_threadpool(witness.add_checkpoint, body)
        except OldSizeMismatch as exc:
            # Exactly text/x.tlog.size (no charset parameter), as tlog-witness requires.
            return Response(
                f"{exc.current_size}\n".encode("ascii"),
                status_code=409,
                headers={"content-type": SIZE_CONTENT_TYPE},
            )
        except AccordError as exc:
            return JSONResponse(
                problem_body(exc.http_status, exc.code, exc.message),
                status_code=exc.http_status,
                media_type=PROBLEM_CONTENT_TYPE,
            )
        return PlainTextResponse(lines)

    return app


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (
        not declared.isdigit() or int(declared) > MAX_ADD_CHECKPOINT_BYTES
    ):
        raise TooLarge("request body exceeds the size limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ADD_CHECKPOINT_BYTES:
            raise TooLarge("request body exceeds the size limit")
        chunks.append(chunk)
    return b"".join(chunks)
