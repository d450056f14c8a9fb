"""Prometheus metrics (`GET /metrics`) and the server's log format. Neither carries user
content: metrics are counts and timings by route template; log records never hold bodies, tokens
or keys (the access record is written by `server.middleware`). A logged exception keeps its
traceback (where it happened) but not its message, which may quote what a request held (an SQL
error quotes its parameters, a parser its input)."""

from __future__ import annotations

import json
import logging
import traceback
from types import TracebackType
from typing import Any, TypeAlias

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """One registry per app (several apps in one test process must not share one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "accord_http_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "accord_http_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.messages = Counter(
            "accord_messages_accepted", "messages accepted for delivery", registry=self.registry
        )
        self.deliveries = Counter(
            "accord_deliveries_queued", "per-device copies queued", registry=self.registry
        )
        self.limited = Counter(
            "accord_sends_refused",
            "sends refused by overload protection",
            ["reason"],
            registry=self.registry,
        )
        self.blobs_collected = Counter(
            "accord_blobs_collected",
            "attachment blobs removed by housekeeping, by reason (unsent, delivered, suspended)",
            ["reason"],
            registry=self.registry,
        )
        self.blob_bytes_collected = Counter(
            "accord_blob_bytes_collected",
            "bytes of attachment blobs removed by housekeeping, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.websockets = Gauge(
            "accord_websockets_open", "open WebSocket connections", registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


ExcInfo: TypeAlias = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)


def redacted_traceback(exc_info: ExcInfo) -> str:
    """A traceback as Python prints it (chained exceptions included), with each exception's
    type but not its message."""
    exc = exc_info[1]
    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    parts = []
    for e in reversed(chain):
        stack = traceback.extract_tb(e.__traceback__)
        kind = type(e)
        parts.append(
            "Traceback (most recent call last):\n"
            + "".join(stack.format())
            + f"{kind.__module__}.{kind.__qualname__} (message withheld)"
        )
    return "\n\nThe exception above led to the one below.\n\n".join(parts)


class TextFormatter(logging.Formatter):
    """`time level logger message`, and a redacted traceback for a logged exception."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        # Never reuse a traceback another handler's formatter cached on the record (with the
        # message): format it here, and leave the record as it was.
        cached = record.exc_text
        record.exc_text = None
        try:
            return super().format(record)
        finally:
            record.exc_text = cached

    def formatException(self, ei: Any) -> str:  # noqa: N802 (logging's name)
        return redacted_traceback(ei)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra={"fields": ...}`;
    for a logged exception, its type (`error`) and a redacted traceback."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            out["error"] = record.exc_info[0].__name__  # the type only: messages may carry data
            out["traceback"] = redacted_traceback(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def configure_logging(log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        level = logging.INFO
    else:
        handler.setFormatter(TextFormatter())
        level = logging.WARNING
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
