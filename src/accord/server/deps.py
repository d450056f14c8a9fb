"""What routes depend on, as `Annotated` aliases: who is calling, and the services.

- `CurrentDevice`: the device behind a bearer token (401 otherwise);
- `ActiveDevice`: the same, of an account that is not suspended (403 `account_suspended`):
  a suspension leaves an account reading (fetch, acknowledge, download, notices, device lists,
  group states), appealing, keeping its devices safe (revoking one, topping up one-time keys)
  and what lawful access requires of its devices (docs/console.md §Appeals lists the routes);
- `Operator`: the operator, by the token in DATA_DIR/admin-token;
- `CurrentReviewer`: a reviewer by session token, or the operator acting as an admin;
- `AgencyWarrantId`: the id of the warrant in the path, for the holder of a fresh agency token
  for that warrant (sealed to the agency key the warrant names: see `server.access.agency`);
- `ServicesDep`: every service of the app (`server.assembly.Services`);
- `ClientAddress`: the address the request came from (the peer of the connection; behind a
  reverse proxy, run uvicorn with its forwarded-address support so this is the client's).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Header, Path
from fastapi.requests import HTTPConnection

from accord.errors import AuthenticationError, AuthorizationError
from accord.server.assembly import Services
from accord.server.messaging import AuthedDevice
from accord.server.review import OPERATOR_AS_REVIEWER, ActingReviewer

BEARER = "Bearer "

WarrantIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


# Dependencies are `async def` even where they do not wait: FastAPI runs a plain `def`
# dependency in a worker thread, a thread hop on every request.
async def get_services(conn: HTTPConnection) -> Services:
    services: Services = conn.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def bearer_token(authorization: str | None, message: str | None = None) -> str:
    """The token of an `Authorization: Bearer ...` header; 401 without one."""
    if not authorization or not authorization.startswith(BEARER):
        raise AuthenticationError(message)
    return authorization[len(BEARER) :].strip()


def _is_operator_token(services: Services, token: str) -> bool:
    return hmac.compare_digest(token.encode(), services.admin_token.encode())


async def current_device(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> AuthedDevice:
    """The device behind the bearer token; 401 otherwise."""
    return await services.messaging.authenticate(bearer_token(authorization))


async def active_device(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> AuthedDevice:
    """A device whose account may act: not suspended."""
    dev = await current_device(services, authorization)
    if dev.suspended:
        raise AuthorizationError("account is suspended", code="account_suspended")
    return dev


async def require_operator(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Operator commands authenticate with the token in DATA_DIR/admin-token."""
    if not _is_operator_token(services, bearer_token(authorization)):
        raise AuthenticationError("operator token required")


async def current_reviewer(
    services: ServicesDep, authorization: Annotated[str | None, Header()] = None
) -> ActingReviewer:
    """The acting reviewer: from a reviewer session token, or from the operator token (acting
    as "operator", with the admin role)."""
    token = bearer_token(authorization, "reviewer or operator token required")
    if _is_operator_token(services, token):
        return OPERATOR_AS_REVIEWER
    session = await services.review.session(token)
    return ActingReviewer(name=session.reviewer, role=session.role)


async def agency_warrant_id(
    services: ServicesDep,
    warrant_id: WarrantIdPath,
    authorization: Annotated[str | None, Header()] = None,
) -> bytes:
    """The warrant in the path, if the bearer holds a fresh agency token for it."""
    token = bearer_token(authorization, "agency token required")
    wid = bytes.fromhex(warrant_id)
    services.access.agency.check_token(wid, token)
    return wid


async def client_address(conn: HTTPConnection) -> str:
    return conn.client.host if conn.client else ""


ClientAddress = Annotated[str, Depends(client_address)]
CurrentDevice = Annotated[AuthedDevice, Depends(current_device)]
ActiveDevice = Annotated[AuthedDevice, Depends(active_device)]
Operator = Annotated[None, Depends(require_operator)]
CurrentReviewer = Annotated[ActingReviewer, Depends(current_reviewer)]
AgencyWarrantId = Annotated[bytes, Depends(agency_warrant_id)]
