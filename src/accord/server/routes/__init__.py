"""The HTTP API, one router per feature. A route parses, calls a service, and maps the result;
the services (one level up) hold the logic and know nothing of HTTP."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

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


def install_routes(app: FastAPI) -> None:
    """Every router, in `ROUTERS`' order, behind the plain routes that answer the log's proofs
    before FastAPI's routing (`log.PLAIN_ROUTES`; they take only well-formed queries and leave
    the rest, and the OpenAPI document, to the log's router)."""
    for router in ROUTERS:
        app.include_router(router)
    app.router.routes[0:0] = log.PLAIN_ROUTES
