"""HTTP access to an Accord server, with errors converted where they enter the client."""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from accord.errors import (
    AccordError,
    AuthenticationError,
    AuthorizationError,
    Conflict,
    DecryptionError,
    InvalidInput,
    NotFound,
    ProtocolError,
    QueueFull,
    RateLimited,
    ServiceError,
    TooLarge,
    UnsupportedVersion,
    VerificationError,
)
from accord.wire.messaging import StaleDevices
from accord.wire.problems import problem_detail

M = TypeVar("M", bound=BaseModel)
TIMEOUT = httpx.Timeout(30.0, connect=10.0)
MAX_RESPONSE_BYTES = 16 << 20


class StaleDevicesResponse(Conflict):
    code = "stale_devices"

    def __init__(self, body: StaleDevices) -> None:
        super().__init__(body.message)
        self.body = body


# The server answers a refused request with a 4xx status and `{"code": ..., "message": ...}`,
# the code taken from the exception tree (src/accord/errors.py). These are the classes a code
# turns back into, for a caller to catch.
_REFUSALS: tuple[type[AccordError], ...] = (
    InvalidInput,
    TooLarge,
    UnsupportedVersion,
    AuthenticationError,
    AuthorizationError,
    NotFound,
    Conflict,
    StaleDevicesResponse,
    RateLimited,
    QueueFull,
    VerificationError,
    DecryptionError,
    ProtocolError,
)


def _most_general_by_status(classes: tuple[type[AccordError], ...]) -> dict[int, type[AccordError]]:
    """For each status, the class all the others with that status derive from, if one does."""
    table: dict[int, type[AccordError]] = {}
    for status in sorted({cls.http_status for cls in classes}):
        same = [cls for cls in classes if cls.http_status == status]
        roots = [cls for cls in same if all(issubclass(other, cls) for other in same)]
        if roots:
            table[status] = roots[0]
    return table


_ERROR_BY_CODE = {cls.code: cls for cls in _REFUSALS}
KT_RULE_CODE_PREFIX = "kt_"
# A refusal with a code of its own ("threshold_not_met", "warrant_replayed", ...) is raised on the
# server as one of these classes, whose status it carries. 422 is shared by three unrelated
# classes, so such a refusal at 422 stays a ServiceError with its code.
_ERROR_BY_STATUS = _most_general_by_status(_REFUSALS)


def _error_from(response: httpx.Response) -> AccordError:
    try:
        body = response.json()
    except ValueError:
        body = None
    code, message = problem_detail(body)
    status = response.status_code
    cls = None
    if 400 <= status < 500:
        cls = _ERROR_BY_CODE.get(code) or _ERROR_BY_STATUS.get(status)
        if cls is None and code.startswith(KT_RULE_CODE_PREFIX):
            cls = VerificationError  # a key-transparency rule the change broke (K8)
    if cls is StaleDevicesResponse:
        try:
            keep = ("code", "message", "missing", "extra")
            fields = {k: body[k] for k in keep if k in body} if isinstance(body, dict) else {}
            return StaleDevicesResponse(StaleDevices.model_validate(fields))
        except ValidationError:
            cls = Conflict
    if cls is not None and issubclass(cls, RateLimited):
        retry = response.headers.get("Retry-After", "1")
        return cls(
            message or None, retry_after_s=int(retry) if retry.isdigit() else 1, code=code or None
        )
    if cls is not None:
        return cls(message or None, code=code or None)
    return ServiceError(
        f"server answered {status}" + (f" ({code})" if code else ""),
        code=code or None,
        status=status,
    )


MAX_ATTEMPTS = 6
RETRY_STATUSES = (429, 503)


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asks to wait before sending again (429, 503), else None."""
    if response.status_code not in RETRY_STATUSES:
        return None
    value = response.headers.get("Retry-After", "")
    return float(value) if value.isdigit() and int(value) <= 3600 else None


def _verify_for(base_url: str) -> ssl.SSLContext | bool:
    """What httpx verifies the server's certificate with: its default (certifi's CA bundle) for
    an https server. A plain-http server (loopback, development) never uses TLS, so loading the
    bundle (tens of milliseconds, every command) is skipped; the context given instead trusts
    no certificate, so it refuses any TLS connection it might ever be used for."""
    if base_url.lower().startswith("https://"):
        return True
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostname checked, no roots


class ServerApi:
    """One server. `token` supplies a bearer token; on 401 it is refreshed once and retried."""

    def __init__(
        self,
        base_url: str,
        *,
        token: Callable[[bool], str] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry_budget_s: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=TIMEOUT,
            transport=transport,
            verify=_verify_for(self.base_url),
        )
        self.retry_budget_s = retry_budget_s
        """How long one request may wait in all, as the server's Retry-After asks, when it is
        answered 429 (over a rate, a full queue) or 503 (the database restarting): nothing was
        accepted, so the request is sent again. 0: refusals are raised at once."""
        self.sleep = sleep

    def close(self) -> None:
        self._http.close()

    def _headers(self, refresh: bool) -> dict[str, str]:
        if self._token is None:
            return {}
        return {"Authorization": f"Bearer {self._token(refresh)}"}

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        auth: bool = True,
        params: dict[str, Any] | None = None,
    ) -> Any:
        budget = self.retry_budget_s
        refreshed = False
        for _ in range(MAX_ATTEMPTS):
            headers = self._headers(refreshed) if auth else {}
            try:
                response = self._http.request(
                    method, path, json=json, headers=headers, params=params
                )
            except httpx.HTTPError as exc:
                raise ServiceError(f"cannot reach {self.base_url}: {type(exc).__name__}") from None
            if response.status_code == 401 and auth and not refreshed:
                refreshed = True
                continue
            wait = _retry_after(response)
            if wait is not None and wait <= budget:
                budget -= wait
                self.sleep(wait)
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            if response.status_code == 204 or not response.content:
                return None
            if len(response.content) > MAX_RESPONSE_BYTES:
                raise ProtocolError("server response too large")
            try:
                return response.json()
            except ValueError:
                raise ProtocolError("server sent malformed JSON") from None
        raise _error_from(response)  # still refused after every retry the budget allowed

    def request_raw(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """A request whose body or answer is not JSON (uploads, exports)."""
        for attempt in (0, 1):
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=self._headers(attempt == 1),
                )
            except httpx.HTTPError as exc:
                raise ServiceError(f"cannot reach {self.base_url}: {type(exc).__name__}") from None
            if response.status_code == 401 and attempt == 0 and self._token is not None:
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response
        raise AuthenticationError()

    def call(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        data = self.request(method, path, **kwargs)
        try:
            return model.model_validate(data)
        except ValidationError:
            raise ProtocolError(f"server sent a malformed {model.__name__}") from None

    def upload_blob(self, path: Path, sha256: bytes) -> Any:
        size = path.stat().st_size
        for attempt in (0, 1):

            def chunks() -> Iterator[bytes]:
                with path.open("rb") as f:
                    while chunk := f.read(1 << 20):
                        yield chunk

            headers = {
                **self._headers(attempt == 1),
                "Content-Length": str(size),
                "X-Accord-Blob-SHA256": base64.b64encode(sha256).decode(),
                "Content-Type": "application/octet-stream",
            }
            try:
                response = self._http.put("/v1/blobs", content=chunks(), headers=headers)
            except httpx.HTTPError as exc:
                raise ServiceError(f"upload failed: {type(exc).__name__}") from None
            if response.status_code == 401 and attempt == 0:
                continue
            if response.status_code >= 400:
                raise _error_from(response)
            return response.json()
        raise AuthenticationError()

    def download_blob(self, blob_id: str, dest: Path, max_bytes: int) -> None:
        self.download(f"/v1/blobs/{blob_id}", dest, max_bytes)

    def download(self, path: str, dest: Path, max_bytes: int) -> None:
        """Stream a binary answer to a file, refusing more than `max_bytes`."""
        for attempt in (0, 1):
            try:
                with self._http.stream(
                    "GET", path, headers=self._headers(attempt == 1)
                ) as response:
                    if response.status_code == 401 and attempt == 0:
                        continue
                    if response.status_code >= 400:
                        response.read()
                        raise _error_from(response)
                    size = 0
                    with dest.open("wb") as f:
                        for chunk in response.iter_bytes(1 << 20):
                            size += len(chunk)
                            if size > max_bytes:
                                raise ProtocolError("blob larger than announced")
                            f.write(chunk)
                    return
            except httpx.HTTPError as exc:
                raise ServiceError(f"download failed: {type(exc).__name__}") from None
        raise AuthenticationError()
