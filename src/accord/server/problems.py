"""Errors as HTTP answers: each error class has a status and a stable `code`.

Every answer is an RFC 9457 problem document (`accord.wire.problems`: type, title, status,
detail, and the `code`; a stale device list adds the devices missing and extra). Bad input is a
4xx that never echoes the input (it may be a key or a ciphertext); an unavailable database is a
503 to retry; anything unexpected is a 500 that says nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from accord.errors import AccordError, AuthenticationError, RateLimited
from accord.server.messaging import StaleDevicesError
from accord.server.middleware import route_template
from accord.server.observability import Metrics
from accord.wire.problems import PROBLEM_CONTENT_TYPE, problem_body

log = logging.getLogger("accord.server")

HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """An RFC 9457 problem answer."""
    return JSONResponse(
        problem_body(status, code, detail, **extra),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_CONTENT_TYPE,
    )


def error_response(exc: AccordError) -> JSONResponse:
    if isinstance(exc, StaleDevicesError):
        body = exc.body.model_dump(mode="json")
        return problem(
            exc.http_status,
            body["code"],
            body["message"],
            missing=body["missing"],
            extra=body["extra"],
        )
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    return problem(exc.http_status, exc.code, exc.message, headers=headers)


def validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return problem(400, "invalid_json", "body is not valid JSON")
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if loc[-1:] == ("v",) and loc[:1] == ("body",) and len(loc) == 2:
            return problem(400, "unsupported_version", "unsupported wire version")
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    # Never echo the offending input: it may be a key or a ciphertext.
    return problem(400, "invalid_request", f"{where}: {first.get('msg', 'invalid')}")


def install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    @app.exception_handler(AccordError)
    async def _accord_error(_req: Request, exc: AccordError) -> JSONResponse:
        if isinstance(exc, RateLimited):
            metrics.limited.labels(exc.code).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            exc.status_code,
            HTTP_ERROR_CODES.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=exc.headers,  # e.g. Allow on 405 (RFC 9110 section 15.5.6)
        )

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_req: Request, _exc: OperationalError) -> JSONResponse:
        # The database is restarting or unreachable: nothing was committed; retry shortly.
        log.warning("database unavailable")
        return problem(
            503,
            "unavailable",
            "the database is unavailable; retry shortly",
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(req: Request, _exc: Exception) -> JSONResponse:
        # The route template, never the path (paths carry blob ids, which are capabilities);
        # the log's formatter keeps the traceback and drops the exception's message.
        log.exception("unhandled error in %s %s", req.method, route_template(req.scope))
        return problem(500, "internal", "internal error")
