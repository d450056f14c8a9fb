"""The review queue for scripts: a reviewer (or the operator) over `/v1/review/...`."""

from __future__ import annotations

from typing import Any

import httpx

from accord.client.api import ServerApi
from accord.wire.reports import (
    AccountOverview,
    AuditTrail,
    ReportDetail,
    ReportList,
    ReviewerToken,
)


class ReviewerApi:
    """A logged-in reviewer. `ReviewerApi.login(...)` with a name and password, or
    `ReviewerApi(server, token)` with the operator token."""

    def __init__(
        self, server: str, token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.api = ServerApi(server, token=lambda _refresh: token, transport=transport)

    @classmethod
    def login(cls, server: str, name: str, password: str) -> ReviewerApi:
        anonymous = ServerApi(server)
        try:
            token = anonymous.call(
                ReviewerToken,
                "POST",
                "/v1/review/login",
                json={"name": name, "password": password},
                auth=False,
            )
        finally:
            anonymous.close()
        return cls(server, token.token)

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> ReviewerApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def reports(self, *, status: str | None = None, account: str | None = None) -> ReportList:
        params: dict[str, Any] = {}
        if status:
            params["status"] = status
        if account:
            params["account"] = account
        return self.api.call(ReportList, "GET", "/v1/review/reports", params=params)

    def report(self, report_id: str) -> ReportDetail:
        return self.api.call(ReportDetail, "GET", f"/v1/review/reports/{report_id}")

    def account(self, name: str) -> AccountOverview:
        return self.api.call(AccountOverview, "GET", f"/v1/review/accounts/{name}")

    def act(self, report_id: str, action: str, note: str = "") -> ReportDetail:
        return self.api.call(
            ReportDetail,
            "POST",
            f"/v1/review/reports/{report_id}/actions",
            json={"action": action, "note": note},
        )

    def reveal(self, report_id: str, index: int) -> bytes:
        return self.api.request_raw(
            "GET", f"/v1/review/reports/{report_id}/attachments/{index}"
        ).content

    def export(self, report_id: str, fmt: str = "xml") -> bytes:
        return self.api.request_raw(
            "GET", f"/v1/review/reports/{report_id}/export", params={"format": fmt}
        ).content

    def audit(self, *, limit: int = 1000) -> AuditTrail:
        return self.api.call(AuditTrail, "GET", "/v1/review/audit", params={"limit": limit})
