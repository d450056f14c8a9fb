"""The OpenAPI document, made to say what the server really does.

FastAPI's generated document promises a 422 validation error on every route and declares no
authentication (the server reads its bearer tokens itself). Here:
- every operation declares its refusals as RFC 9457 problem documents
  (`application/problem+json`, schema `Problem`, `accord.wire.problems`): 400 for bad input,
  401/403 where a token is needed, and a `default` for the rest (404, 409, 413, 429, 503...);
  the promised 422 goes (a 422 here means a signature or proof did not verify);
- the three bearer tokens are security schemes (`device`, `operator`, `reviewer`), and each
  operation names the one its route depends on;
- the routes that read their body as a stream (uploads) declare it as octet-stream;
- the WebSocket (`/v1/ws`) is described as a GET answered by the upgrade (101).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from accord.server.deps import (
    active_device,
    current_device,
    current_reviewer,
    require_operator,
)
from accord.wire.problems import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details, with the stable `code` of the refusal.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "urn:accord:problem:<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What went wrong; never the input."},
        "code": {"type": "string", "description": "Stable: what a program acts on."},
        "message": {"type": "string", "description": "The detail again (older clients)."},
    },
}

SECURITY_SCHEMES = {
    "device": {
        "type": "http",
        "scheme": "bearer",
        "description": "A device's token from POST /v1/auth/token (after its signed challenge).",
    },
    "operator": {
        "type": "http",
        "scheme": "bearer",
        "description": "The operator's token (DATA_DIR/admin-token).",
    },
    "reviewer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A reviewer's session token from POST /v1/review/login (or the operator).",
    },
}

_SCHEME_OF = {
    current_device: "device",
    active_device: "device",
    require_operator: "operator",
    current_reviewer: "reviewer",
}

STREAMED_UPLOADS = {
    ("put", "/v1/blobs"),
    ("post", "/v1/hash"),
    ("post", "/v1/banks/{name}/import"),
}

WEBSOCKET_PATH = "/v1/ws"
WEBSOCKET_OPERATION: dict[str, Any] = {
    "summary": "A device's queue, pushed over a WebSocket (RFC 6455)",
    "description": (
        "Upgrade with the device's bearer token. The server sends "
        '{"type": "envelopes", "envelopes": [Envelope...]} as the queue grows; the device '
        'answers {"type": "ack", "ids": [...]} once each envelope is stored. Nothing is '
        "deleted before it is acknowledged. A bad token closes the socket with code 4401."
    ),
    "security": [{"device": []}],
    "responses": {"101": {"description": "Switching to the WebSocket protocol."}},
}


def _schemes(dependant: Dependant) -> set[str]:
    found = set()
    for dep in dependant.dependencies:
        if dep.call in _SCHEME_OF:
            found.add(_SCHEME_OF[dep.call])
        found |= _schemes(dep)
    return found


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def describe_api(app: FastAPI) -> None:
    """Install the honest document as `app.openapi()`."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
        components["securitySchemes"] = SECURITY_SCHEMES
        for schema in ("HTTPValidationError", "ValidationError"):
            components["schemas"].pop(schema, None)
        routes = {
            (method.lower(), context.path_format): context.original_route
            for context in iter_route_contexts(app.routes)
            if isinstance(context.original_route, APIRoute)
            for method in context.original_route.methods or ()
        }
        for path, operations in doc.get("paths", {}).items():
            for method, operation in operations.items():
                route = routes.get((method, path))
                schemes = sorted(_schemes(route.dependant)) if route else []
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                responses["400"] = _problem("Malformed input or out of limits.")
                if schemes:
                    operation["security"] = [{s: []} for s in schemes]
                    responses["401"] = _problem("No valid token.")
                    responses["403"] = _problem("Not allowed (e.g. a suspended account).")
                responses["default"] = _problem(
                    "Any other refusal: 404, 409, 413, 422 (did not verify), 429 or 503 with "
                    "Retry-After."
                )
                if (method, path) in STREAMED_UPLOADS:
                    operation["requestBody"] = {
                        "required": True,
                        "content": {
                            "application/octet-stream": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    }
        doc["paths"][WEBSOCKET_PATH] = {
            "get": {
                **WEBSOCKET_OPERATION,
                "responses": {
                    **WEBSOCKET_OPERATION["responses"],
                    "default": _problem("A request that is not a WebSocket upgrade: 404."),
                },
            }
        }
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
