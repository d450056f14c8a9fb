"""`create_app()`: the FastAPI application. Routes are thin; the work is in services."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.console import register_console
from accord.errors import AccordError, AuthenticationError, InvalidInput, RateLimited
from accord.server.access import AccessService, register_access_routes
from accord.server.blobs import FileBlobStore
from accord.server.detection import DetectionService, register_detection_routes
from accord.server.limits import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_SEND_BURST,
    DEFAULT_SEND_RATE_PER_S,
    SendLimiter,
)
from accord.server.messaging import AuthedDevice, MessagingService, StaleDevicesError
from accord.server.notify import LocalNotifier, Notifier, RedisNotifier
from accord.server.observability import Metrics, ObservabilityMiddleware
from accord.server.private_matching import (
    PrivateMatchingService,
    register_private_matching_routes,
)
from accord.server.reports import ReportService, ReviewVault
from accord.server.review import ReviewService
from accord.server.review_api import register_review_routes
from accord.server.translog import DEFAULT_LOG_ORIGIN, LogService, register_log_routes
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.wire.common import MAX_REQUEST_BYTES
from accord.wire.messaging import (
    AccountCreated,
    AckRequest,
    AckResult,
    ApproveLinkRequest,
    BlobCreated,
    Challenge,
    ChallengeRequest,
    ClaimedKeys,
    ClaimKeysRequest,
    CreateAccountRequest,
    DeviceList,
    DeviceRecord,
    Envelope,
    EnvelopeBatch,
    KeyCount,
    LinkCreated,
    LinkRequest,
    PendingLink,
    PublishKeysRequest,
    SendAccepted,
    SendRequest,
    SignedGroupState,
    Token,
    TokenRequest,
)

log = logging.getLogger("accord.server")
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

DEFAULT_MAX_ATTACHMENT_BYTES = 100 * 1000 * 1000
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name)
WS_BATCH = 100
# Unacknowledged envelopes per socket before pushing pauses; with WS_BATCH it stays within the
# service's fetch limit (500).
WS_MAX_IN_FLIGHT = 400


@dataclass
class ServerConfig:
    data_dir: FsPath
    db_url: str | None = None
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    log_origin: str = DEFAULT_LOG_ORIGIN
    witnesses: list[str] = field(default_factory=list)
    # Scale-out and overload (docs/deployment.md): Redis for wake-ups and shared rate limits
    # across processes; per-account send rate (0 turns it off); per-device queue limit.
    redis_url: str | None = None
    send_rate_per_s: float = DEFAULT_SEND_RATE_PER_S
    send_burst: int = DEFAULT_SEND_BURST
    max_queue: int = DEFAULT_MAX_QUEUE
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.data_dir)


def ensure_admin_token(data_dir: FsPath) -> str:
    """Create DATA_DIR/admin-token (mode 0600) on first start; return the token."""
    path = data_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return path.read_text().strip()


class BodyLimitMiddleware:
    """Reject request bodies over the limit with 413 before any route parses them.

    Routes that stream (blob uploads, files to hash, bank imports) enforce their own, larger
    limits, so they pass through.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, is_streamed: Callable[[str], bool]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.is_streamed = is_streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_streamed(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                await _send_error(send, 400, "invalid_request", "bad Content-Length")
                return
            if too_big:
                await _send_error(send, 413, "too_large", "request body too large")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await _send_error(send, 413, "too_large", "request body too large")
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _is_streamed(path: str) -> bool:
    return path.startswith(("/v1/blobs", "/v1/hash")) or (
        path.startswith("/v1/banks/") and path.endswith("/import")
    )


def error_response(exc: AccordError) -> JSONResponse:
    if isinstance(exc, StaleDevicesError):
        return JSONResponse(exc.body.model_dump(mode="json"), status_code=exc.http_status)
    headers = {}
    if isinstance(exc, RateLimited):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"code": exc.code, "message": exc.message}, status_code=exc.http_status, headers=headers
    )


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return JSONResponse({"code": "invalid_json", "message": "body is not valid JSON"}, 400)
    for e in errors:
        loc = tuple(e.get("loc", ()))
        if loc[-1:] == ("v",) and loc[:1] == ("body",) and len(loc) == 2:
            return JSONResponse(
                {"code": "unsupported_version", "message": "unsupported wire version"}, 400
            )
    first = errors[0] if errors else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    # Never echo the offending input: it may be a key or a ciphertext.
    return JSONResponse(
        {"code": "invalid_request", "message": f"{where}: {first.get('msg', 'invalid')}"}, 400
    )


@dataclass
class AppState:
    config: ServerConfig
    db: Database
    service: MessagingService
    blobs: FileBlobStore
    notifier: Notifier
    admin_token: str
    reports: ReportService
    review: ReviewService
    metrics: Metrics | None = None
    matching: PrivateMatchingService | None = None


def create_app(config: ServerConfig, *, notifier: Notifier | None = None) -> FastAPI:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database_url)
    upgrade_to_head(engine)
    db = Database(engine)
    if notifier is None:
        notifier = RedisNotifier(config.redis_url) if config.redis_url else LocalNotifier()
    limiter = SendLimiter(
        rate_per_s=config.send_rate_per_s, burst=config.send_burst, redis_url=config.redis_url
    )
    metrics = Metrics()
    translog = LogService(engine, config.data_dir, config.log_origin, witnesses=config.witnesses)
    service = MessagingService(
        db, translog, notify=notifier.publish, limiter=limiter, max_queue=config.max_queue
    )
    service.send_observers.append(_count_accepted(metrics))
    blobs = FileBlobStore(config.data_dir / "blobs")
    vault = ReviewVault(config.data_dir)
    state = AppState(
        config=config,
        db=db,
        service=service,
        blobs=blobs,
        notifier=notifier,
        admin_token=ensure_admin_token(config.data_dir),
        reports=ReportService(
            db,
            service.franking,
            blobs,
            vault,
            max_attachment_bytes=config.max_attachment_bytes,
        ),
        review=ReviewService(db, vault, service),
    )
    detection = DetectionService(engine, config.data_dir / "bank-index")
    matching = PrivateMatchingService(db, translog, detection, config.data_dir)
    matching.attach(service)
    state.matching = matching
    access = AccessService(db, translog, service, config.data_dir)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        matching.close()
        access.close()
        await limiter.close()
        close = getattr(notifier, "close", None)
        if close is not None:
            close()
        db.dispose()

    app = FastAPI(
        title="Accord",
        version="1",
        description="End-to-end encrypted messaging relay. The server sees ciphertext only.",
        lifespan=lifespan,
    )
    app.state.accord = state
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=config.max_request_bytes,
        is_streamed=_is_streamed,
    )
    app.add_middleware(ObservabilityMiddleware, metrics=metrics)
    state.metrics = metrics

    @app.exception_handler(AccordError)
    async def _accord_error(_req: Request, exc: AccordError) -> JSONResponse:
        if isinstance(exc, RateLimited):
            metrics.limited.labels(exc.code).inc()
        return error_response(exc)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"code": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)},
            status_code=exc.status_code,
        )

    @app.exception_handler(OperationalError)
    async def _database_unavailable(_req: Request, _exc: OperationalError) -> JSONResponse:
        # The database is restarting or unreachable: nothing was committed; retry shortly.
        log.warning("database unavailable")
        return JSONResponse(
            {"code": "unavailable", "message": "the database is unavailable; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s", type(exc).__name__)
        return JSONResponse({"code": "internal", "message": "internal error"}, 500)

    register_routes(app, state)
    register_review_routes(
        app,
        db=db,
        reports=state.reports,
        review=state.review,
        current_device=current_device,
        require_operator=require_operator,
        admin_token=state.admin_token,
    )
    register_console(app, state.review, matching)
    register_log_routes(app, translog)
    register_access_routes(
        app, access, current_device=current_device, require_operator=require_operator
    )
    register_detection_routes(app, detection, Depends(require_operator))
    register_private_matching_routes(
        app,
        matching,
        operator=Depends(require_operator),
        review=state.review,
        admin_token=state.admin_token,
    )
    return app


def _count_accepted(metrics: Metrics) -> Callable[..., Awaitable[None]]:
    async def observe(_dev: AuthedDevice, _req: Any, accepted: Any) -> None:
        metrics.messages.inc()
        metrics.deliveries.inc(accepted.devices)

    return observe


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.startswith("Bearer "):
        raise AuthenticationError()
    return authorization[len("Bearer ") :].strip()


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.accord
    return state


async def current_device(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> AuthedDevice:
    """The device behind the bearer token; 401 otherwise."""
    return await app_state(request).service.authenticate(_bearer(authorization))


async def require_operator(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Operator commands authenticate with the token in DATA_DIR/admin-token."""
    token = _bearer(authorization)
    if not hmac.compare_digest(token.encode(), app_state(request).admin_token.encode()):
        raise AuthenticationError("operator token required")


Device = Annotated[AuthedDevice, Depends(current_device)]
Operator = Annotated[None, Depends(require_operator)]


def register_routes(app: FastAPI, state: AppState) -> None:
    service = state.service

    @app.get("/v1/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/accounts", status_code=201)
    async def create_account(req: CreateAccountRequest) -> AccountCreated:
        record = await service.create_account(req)
        return AccountCreated(account=record.keys.account, device_id=record.keys.device_id)

    @app.get("/v1/accounts/{account}/devices")
    async def account_devices(account: str, _dev: Device) -> DeviceList:
        return await service.device_list(account)

    @app.post("/v1/auth/challenge")
    async def auth_challenge(req: ChallengeRequest) -> Challenge:
        return await service.issue_challenge(req.account, req.device_id)

    @app.post("/v1/auth/token")
    async def auth_token(req: TokenRequest) -> Token:
        return await service.issue_token(req.account, req.device_id, req.challenge, req.signature)

    @app.post("/v1/link-requests", status_code=201)
    async def create_link(req: LinkRequest) -> LinkCreated:
        return await service.create_link(req)

    @app.get("/v1/link-requests/{request_id}")
    async def get_link(request_id: str, dev: Device) -> PendingLink:
        return await service.get_link(dev, request_id)

    @app.post("/v1/link-requests/{request_id}/approve")
    async def approve_link(request_id: str, req: ApproveLinkRequest, dev: Device) -> DeviceRecord:
        return await service.approve_link(dev, request_id, req)

    @app.post("/v1/keys")
    async def publish_keys(req: PublishKeysRequest, dev: Device) -> KeyCount:
        return await service.publish_keys(dev, req)

    @app.get("/v1/keys/count")
    async def key_count(dev: Device) -> KeyCount:
        return await service.key_count(dev)

    @app.post("/v1/keys/claim")
    async def claim_keys(req: ClaimKeysRequest, dev: Device) -> ClaimedKeys:
        return await service.claim_keys(dev, req)

    @app.put("/v1/groups/{name}")
    async def put_group(name: str, req: SignedGroupState, dev: Device) -> SignedGroupState:
        if req.state.group != name:
            raise InvalidInput("group name in path and body differ")
        return await service.put_group(dev, req)

    @app.get("/v1/groups/{name}")
    async def get_group(name: str, dev: Device) -> SignedGroupState:
        return await service.get_group(dev, name)

    @app.post("/v1/messages", status_code=201)
    async def send(req: SendRequest, dev: Device) -> SendAccepted:
        return await service.send(dev, req)

    @app.get("/v1/messages")
    async def fetch(
        dev: Device,
        after: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> EnvelopeBatch:
        return await service.fetch(dev, after=after, limit=limit)

    @app.get("/v1/messages/{delivery_id}")
    async def get_message(
        delivery_id: Annotated[int, Path(ge=1, le=2**62)], dev: Device
    ) -> Envelope:
        return await service.get_envelope(dev, delivery_id)

    @app.post("/v1/messages/ack")
    async def ack(req: AckRequest, dev: Device) -> AckResult:
        return await service.ack(dev, req.ids)

    @app.delete("/v1/messages/{delivery_id}", status_code=204)
    async def delete_message(
        delivery_id: Annotated[int, Path(ge=1, le=2**62)], dev: Device
    ) -> Response:
        await service.ack(dev, [delivery_id])
        return Response(status_code=204)

    @app.put("/v1/blobs", status_code=201)
    async def upload_blob(
        request: Request,
        dev: Device,
        content_length: Annotated[int | None, Header()] = None,
        x_accord_blob_sha256: Annotated[str | None, Header()] = None,
    ) -> BlobCreated:
        """Stream an encrypted blob; size and SHA-256 must be declared up front."""
        if content_length is None:
            raise InvalidInput("Content-Length required", code="length_required")
        try:
            expected = base64.b64decode(x_accord_blob_sha256 or "", validate=True)
        except (binascii.Error, ValueError):
            expected = b""
        if len(expected) != 32:
            raise InvalidInput("X-Accord-Blob-SHA256 must be a base64 SHA-256 digest")
        limit = state.config.max_attachment_bytes + 64
        try:
            blob_id, size = await state.blobs.save(
                request.stream(),
                declared_size=content_length,
                expected_sha256=expected,
                max_bytes=limit,
            )
        except ClientDisconnect:
            raise InvalidInput("upload truncated", code="blob_size_mismatch") from None
        await service.record_blob(dev, blob_id, size)
        return BlobCreated(blob_id=blob_id, size=size)

    @app.get("/v1/blobs/{blob_id}")
    async def download_blob(blob_id: str, _dev: Device) -> FileResponse:
        path = state.blobs.path(blob_id)
        return FileResponse(path, media_type="application/octet-stream")

    @app.websocket("/v1/ws")
    async def websocket(ws: WebSocket) -> None:
        try:
            dev = await service.authenticate(_bearer(ws.headers.get("authorization")))
        except AccordError:
            await ws.close(code=4401)
            return
        await ws.accept()
        await serve_socket(ws, dev, state)


async def serve_socket(ws: WebSocket, dev: AuthedDevice, state: AppState) -> None:
    """Push the device's queue as it grows; take acknowledgements on the same socket.

    Frames from the server: {"type": "envelopes", "envelopes": [...]}. Frames from the device:
    {"type": "ack", "ids": [...]}. Nothing is deleted until acknowledged, so a dropped socket
    loses nothing: the next connection (or an HTTP fetch) sees the same rows again.
    """
    service = state.service
    wake = state.notifier.subscribe(dev.device_pk)
    if state.metrics is not None:
        state.metrics.websockets.inc()

    # Envelopes pushed on this socket and not yet acknowledged. Each round reads the queue from
    # its start and pushes what is not in flight: on PostgreSQL a row with a lower id can commit
    # after one with a higher id was pushed, so a cursor by id would skip it until the next
    # connection.
    inflight: set[int] = set()

    async def read_acks() -> None:
        while True:
            frame = await ws.receive_json()
            if isinstance(frame, dict) and frame.get("type") == "ack":
                ids = [i for i in frame.get("ids", []) if isinstance(i, int)][:1000]
                if ids:
                    with contextlib.suppress(AccordError):
                        await service.ack(dev, ids)
                    inflight.difference_update(ids)
                    wake.set()  # room in flight again

    reader = asyncio.create_task(read_acks())
    try:
        while not reader.done():
            wake.clear()
            fresh: list[Envelope] = []
            more = False
            if len(inflight) < WS_MAX_IN_FLIGHT:
                batch = await service.fetch(dev, after=0, limit=len(inflight) + WS_BATCH)
                fresh = [e for e in batch.envelopes if e.id not in inflight]
                more = batch.more
            if fresh:
                inflight.update(e.id for e in fresh)
                await ws.send_text(
                    json.dumps(
                        {
                            "type": "envelopes",
                            "envelopes": [e.model_dump(mode="json") for e in fresh],
                        }
                    )
                )
                if more:
                    continue
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait(
                {waiter, reader},
                timeout=state.notifier.poll_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        reader.cancel()
        state.notifier.unsubscribe(dev.device_pk, wake)
        if state.metrics is not None:
            state.metrics.websockets.dec()
        with contextlib.suppress(BaseException):
            await reader
