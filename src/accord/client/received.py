"""What receiving gives back: the messages that verified, and one line for each that did not."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

# The report models are imported where a message is opened or reported: a send needs none.
if TYPE_CHECKING:
    from accord.wire.reports import ReportedMessage


@dataclass(frozen=True)
class ReceivedAttachment:
    name: str
    size: int
    sha256: str
    path: str


@dataclass(frozen=True)
class ReceivedMessage:
    id: str
    sender: str
    sender_device: str
    group: str | None
    to: str | None
    text: str
    sent_at: int
    attachments: tuple[ReceivedAttachment, ...] = ()
    # The message as it can be reported: content with its franking key, and the server's tag.
    evidence: ReportedMessage | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender,
            "group": self.group,
            "text": self.text,
            "sent_at": datetime.fromtimestamp(self.sent_at / 1000, UTC).isoformat(
                timespec="milliseconds"
            ),
            "attachments": [
                {"name": a.name, "size": a.size, "sha256": a.sha256, "path": a.path}
                for a in self.attachments
            ],
        }


@dataclass
class ReceiveResult:
    messages: list[ReceivedMessage] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one line each, no content
    notices: list[str] = field(default_factory=list)  # e.g. a device this one did not add


class EnvelopeRejected(Exception):
    """This envelope is dropped (and acknowledged) for the reason given, which names no
    content. Raised while an envelope is opened; never leaves the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
