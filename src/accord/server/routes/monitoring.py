"""Health check and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from accord.server.deps import Operator, ServicesDep

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()


@router.get("/v1/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(_op: Operator, services: ServicesDep) -> Response:
    """Counts only, but counts say how busy whom is: for the operator (its bearer token)."""
    return Response(services.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)
