"""Reporting abuse (docs/protocol/franking.md, step 6): a received message, and some of the
earlier ones in its conversation, revealed to the provider with their franking openings."""

from __future__ import annotations

from accord.client.context import ClientContext
from accord.errors import InvalidInput
from accord.wire.reports import MAX_REPORT_CONTEXT, ReportedMessage, ReportFiled, ReportRequest

MAX_REASON_CHARS = 2000


def file_report(ctx: ClientContext, message_id: str, *, reason: str = "", context: int = 0) -> str:
    """Reveal a received message, and up to `context` earlier received messages of the same
    conversation, with their franking openings; returns the report id."""
    if not 0 <= context <= MAX_REPORT_CONTEXT:
        raise InvalidInput(f"--context is between 0 and {MAX_REPORT_CONTEXT}")
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidInput(f"a reason has at most {MAX_REASON_CHARS} characters")
    received = [
        ReportedMessage.model_validate(r["evidence"])
        for r in ctx.store.messages()
        if r.get("direction") == "in" and r.get("evidence")
    ]
    found = [i for i, m in enumerate(received) if m.content.message_id == message_id]
    if not found:
        raise InvalidInput(f"no received message {message_id} on this device")
    reported = received[found[-1]]

    def same_conversation(m: ReportedMessage) -> bool:
        if m.to != reported.to:
            return False
        return reported.to.group is not None or m.sender.account == reported.sender.account

    earlier = [m for m in received[: found[-1]] if same_conversation(m)]
    request = ReportRequest(
        reason=reason,
        message=reported,
        context=earlier[len(earlier) - context :] if context else [],
    )
    filed = ctx.api.call(ReportFiled, "POST", "/v1/reports", json=request.model_dump())
    return filed.report_id
