"""Server refusals become the client's exceptions by their stable code (client/api.py)."""

from __future__ import annotations

import httpx
import pytest

from accord.client.api import ServerApi, StaleDevicesResponse
from accord.errors import (
    AccordError,
    AuthorizationError,
    Conflict,
    InvalidInput,
    NotFound,
    QueueFull,
    RateLimited,
    ServiceError,
    TooLarge,
    UnsupportedVersion,
    VerificationError,
)


def _raised(status: int, body: object, headers: dict[str, str] | None = None) -> AccordError:
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers=headers)

    api = ServerApi("http://server.test", transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(AccordError) as info:
            api.request("GET", "/v1/anything", auth=False)
    finally:
        api.close()
    return info.value


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "invalid_input", InvalidInput),
        (400, "unsupported_version", UnsupportedVersion),
        (404, "not_found", NotFound),
        (409, "conflict", Conflict),
        (413, "too_large", TooLarge),
        (422, "verification_failed", VerificationError),
    ],
)
def test_a_known_code_names_its_class(status: int, code: str, cls: type[AccordError]) -> None:
    error = _raised(status, {"code": code, "message": "refused"})
    assert type(error) is cls and error.code == code and error.message == "refused"


def test_a_refusal_with_its_own_code_keeps_it_under_its_status_class() -> None:
    error = _raised(403, {"code": "threshold_not_met", "message": "2 of 3 needed"})
    assert type(error) is AuthorizationError and error.code == "threshold_not_met"


def test_rate_limits_carry_their_retry_time() -> None:
    limited = _raised(429, {"code": "rate_limited", "message": "slow"}, {"Retry-After": "7"})
    assert type(limited) is RateLimited and limited.retry_after_s == 7  # type: ignore[attr-defined]
    full = _raised(429, {"code": "queue_full", "message": "full"}, {"Retry-After": "x"})
    assert type(full) is QueueFull and full.retry_after_s == 1  # type: ignore[attr-defined]


def test_stale_devices_carry_the_servers_answer() -> None:
    body = {"code": "stale_devices", "message": "devices changed", "missing": [], "extra": []}
    error = _raised(409, body)
    assert isinstance(error, StaleDevicesResponse)
    malformed = _raised(409, {"code": "stale_devices", "message": "devices changed", "x": 1})
    assert type(malformed) is Conflict and malformed.code == "stale_devices"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"code": "not_found", "message": "a server error is never a refusal"}),
        (503, {"code": "unavailable", "message": "retry shortly"}),
        (405, {"code": "method_not_allowed", "message": "no"}),
    ],
)
def test_anything_else_is_a_service_error(status: int, body: object) -> None:
    error = _raised(status, body)
    assert type(error) is ServiceError and error.status == status  # type: ignore[attr-defined]


def test_a_refusal_without_a_code_is_classed_by_its_status() -> None:
    error = _raised(400, ["not", "an", "object"])
    assert type(error) is InvalidInput and error.code == "invalid_input"
