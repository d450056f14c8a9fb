"""ASGI middleware: the request body limit, and metrics with one access record per request.

Neither reads or logs user content: the access record names the route template, never the path
(paths carry blob ids, which are capabilities), and never bodies, tokens or keys.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from accord.server.observability import Metrics
from accord.wire.problems import PROBLEM_CONTENT_TYPE, problem_body

access_log = logging.getLogger("accord.access")


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
    body = json.dumps(problem_body(status, code, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def is_streamed(path: str) -> bool:
    """Routes that read their body as a stream, under limits of their own."""
    return path.startswith(("/v1/blobs", "/v1/hash")) or (
        path.startswith("/v1/banks/") and path.endswith("/import")
    )


class ObservabilityMiddleware:
    """Counts and times every HTTP request by its route template; writes one access record."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            template = route_template(scope)
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(scope.get("method", "?"), template, str(status)).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(
                    "request",
                    extra={
                        "fields": {
                            "method": scope.get("method"),
                            "route": template,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                        }
                    },
                )


def route_template(scope: Scope) -> str:
    """The matched route's path template ("/v1/blobs/{blob_id}"), never the path itself."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"
