"""The HTTP API, one router per feature. A route parses, calls a service, and maps the result;
the services (one level up) hold the logic and know nothing of HTTP."""

from __future__ import annotations

from fastapi import APIRouter

from accord.server.routes import (
    access,
    detection,
    log,
    matching,
    messaging,
    monitoring,
    push,
    reports,
    review,
)

# In the order they are matched (no two of them claim the same method and path): the relay's
# hot path first.
ROUTERS: tuple[APIRouter, ...] = (
    messaging.queue_router,
    push.router,
    monitoring.router,
    messaging.router,
    reports.router,
    review.router,
    log.router,
    access.router,
    detection.router,
    matching.router,
)
