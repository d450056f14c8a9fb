"""Operator access to a server's hash banks and matching (admin-token authenticated)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from accord.client.api import ServerApi
from accord.errors import AccordError, InvalidInput
from accord.protocols.detection.banks import BankEntry
from accord.wire.matching import JobError, PublishJob, TableSummary

ENTRIES_PER_REQUEST = 5000
#: How often a table job is asked for its progress.
JOB_POLL_S = 0.5


class OperatorApi:
    def __init__(
        self, server: str, admin_token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not admin_token:
            raise InvalidInput("an operator command needs --admin-token or ACCORD_ADMIN_TOKEN")
        self.api = ServerApi(server, token=lambda _refresh: admin_token, transport=transport)

    def close(self) -> None:
        self.api.close()

    def publish_table(
        self, body: dict[str, Any], progress: Callable[[PublishJob], None] | None = None
    ) -> TableSummary:
        """Start a table build (`POST /v1/matching/tables`, answered 202 with a job) and follow
        the job until the table is published; `progress` sees every state polled. A failed job
        raises its error."""
        job = self.api.call(PublishJob, "POST", "/v1/matching/tables", json=body)
        while True:
            if progress is not None:
                progress(job)
            if job.state == "done" and job.table is not None:
                return job.table
            if job.state == "failed":
                error = job.error or JobError(code="internal", message="the build failed")
                raise AccordError(error.message, code=error.code)
            self.api.sleep(JOB_POLL_S)
            job = self.api.call(PublishJob, "GET", f"/v1/matching/jobs/{job.job_id}")

    def create_bank(self, name: str, threshold: int) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request(
            "POST", "/v1/banks", json={"name": name, "threshold": threshold}
        )
        return result

    def get_bank(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.api.request("GET", f"/v1/banks/{name}")
        return result

    def list_banks(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api.request("GET", "/v1/banks")
        return result

    def import_file(self, name: str, data: bytes, fmt: str) -> int:
        result = self.api.request_raw(
            "POST", f"/v1/banks/{name}/import", content=data, params={"format": fmt}
        )
        return int(result.json()["count"])

    def add_entries(self, name: str, entries: list[BankEntry]) -> int:
        added = 0
        for start in range(0, len(entries), ENTRIES_PER_REQUEST):
            chunk = entries[start : start + ENTRIES_PER_REQUEST]
            body = {
                "entries": [
                    {
                        "signal_type": e.signal_type,
                        "hash": e.hash_text,
                        "source": e.source,
                        "label": e.label,
                        "variant": e.variant,
                    }
                    for e in chunk
                ]
            }
            added += int(self.api.request("POST", f"/v1/banks/{name}/entries", json=body)["count"])
        return added

    def export(self, name: str, fmt: str) -> str:
        return self.api.request_raw("GET", f"/v1/banks/{name}/export", params={"format": fmt}).text

    def match(self, hashes: list[tuple[str, str]], banks: list[str]) -> list[list[dict[str, Any]]]:
        """(signal_type, hex) queries -> per query, the server's matches."""
        body = {"hashes": [{"signal_type": t, "hash": h} for t, h in hashes], "banks": banks}
        result = self.api.request("POST", "/v1/match", json=body)
        return [r["matches"] for r in result["results"]]
