"""Operator access to a server's hash banks and matching (admin-token authenticated)."""

from __future__ import annotations

from typing import Any

import httpx

from accord.client.api import ServerApi
from accord.errors import InvalidInput
from accord.protocols.detection.banks import BankEntry

ENTRIES_PER_REQUEST = 5000


class OperatorApi:
    def __init__(
        self, server: str, admin_token: str, *, transport: httpx.BaseTransport | None = None
    ) -> None:
        if not admin_token:
            raise InvalidInput("an operator command needs --admin-token or ACCORD_ADMIN_TOKEN")
        self.api = ServerApi(server, token=lambda _refresh: admin_token, transport=transport)

    def close(self) -> None:
        self.api.close()

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
