"""`create_app()`: the FastAPI application of one server process.

It builds the services (`server.assembly`), adds the middleware and the error answers
(`server.problems`), and includes one router per feature (`server.routes`). Routes are thin;
the work is in the services. Layers above the server add their own pages through `mounts`
(`accord server` mounts the reviewers' console: `accord.console.mount_console`).
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from accord.server.assembly import Services, build_services
from accord.server.config import ServerConfig
from accord.server.middleware import BodyLimitMiddleware, ObservabilityMiddleware, is_streamed
from accord.server.notify import Notifier
from accord.server.openapi import describe_api
from accord.server.problems import install_error_handlers
from accord.server.routes import install_routes

Mount = Callable[[FastAPI, Services], None]

# FastAPI wraps a request body's model as `Annotated[Model, Body(alias=<parameter name>)]`; a
# wire model builds its schema on first use (`WireModel`: defer_build, which keeps the command
# line's start-up cheap), and pydantic then warns that the alias has no effect there. It has
# none: FastAPI reads the body by that name itself. Only this warning is silenced.
warnings.filterwarnings(
    "ignore",
    message=r"The 'alias' attribute with value '\w+' was provided to the `Field\(\)` function",
)


def create_app(
    config: ServerConfig, *, notifier: Notifier | None = None, mounts: Sequence[Mount] = ()
) -> FastAPI:
    services = build_services(config, notifier=notifier)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await services.aclose()

    app = FastAPI(
        title="Accord",
        version="1",
        description="End-to-end encrypted messaging relay. The server sees ciphertext only.",
        lifespan=lifespan,
    )
    app.state.services = services
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=config.max_request_bytes, is_streamed=is_streamed
    )
    app.add_middleware(ObservabilityMiddleware, metrics=services.metrics)
    install_error_handlers(app, services.metrics)
    install_routes(app)
    for mount in mounts:
        mount(app, services)
    describe_api(app)
    return app
