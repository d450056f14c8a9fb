"""Errors on the wire: RFC 9457 problem details, with Accord's stable `code`.

Every refused request is answered with `Content-Type: application/problem+json` and

    {"type": "urn:accord:problem:<code>", "title": <the HTTP status phrase>, "status": <status>,
     "detail": <what went wrong, never the input>, "code": <code>, "message": <detail>}

`type` is a stable URN per code (not meant to be fetched); `code` and `message` are extension
members (`message` repeats `detail` for clients written before problem details).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:accord:problem:"


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        "message": detail,
        **extra,
    }


def problem_detail(body: Any) -> tuple[str, str]:
    """(code, detail) of an error body: a problem document, or the older {"code","message"}."""
    if not isinstance(body, dict):
        return "", ""
    detail = body.get("detail", body.get("message", ""))
    return str(body.get("code", "")), str(detail)
