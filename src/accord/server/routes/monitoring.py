"""Liveness, readiness and Prometheus metrics.

`/livez` answers while the process serves requests; `/readyz` (and `/v1/health`) only when the
database answers a query and, where the server uses Redis, Redis answers a PING: a load
balancer sends traffic to a process only while it can do its work.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from accord.errors import AccordError
from accord.server.deps import Operator, ServicesDep

PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

router = APIRouter()


READY_TIMEOUT_S = 2.0


@router.get("/livez")
async def livez() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz")
@router.get("/v1/health")
async def readyz(services: ServicesDep) -> dict[str, str]:
    """200 when the database (and Redis, if configured) answer; otherwise 503 `not_ready`."""
    try:
        await services.db.read_async(lambda conn: conn.execute(text("SELECT 1")).scalar_one())
    except SQLAlchemyError:
        raise NotReady("the database does not answer") from None
    if services.config.redis_url:
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        client = aioredis.from_url(
            services.config.redis_url,
            socket_timeout=READY_TIMEOUT_S,
            socket_connect_timeout=READY_TIMEOUT_S,
        )
        try:
            await client.ping()
        except (RedisError, OSError):
            raise NotReady("Redis does not answer") from None
        finally:
            await client.aclose()
    return {"status": "ready"}


class NotReady(AccordError):
    http_status = 503
    code = "not_ready"
    default_message = "not ready"


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(_op: Operator, services: ServicesDep) -> Response:
    """Counts only, but counts say how busy whom is: for the operator (its bearer token)."""
    return Response(services.metrics.render(), media_type=PROMETHEUS_CONTENT_TYPE)
