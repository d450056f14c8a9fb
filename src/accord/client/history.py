"""The conversation as this device stored it: messages received and sent, and which received
ones its user has been shown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from accord.client.received import ReceivedAttachment, ReceivedMessage
from accord.client.store import LocalStore
from accord.wire.messaging import Content


@dataclass(frozen=True)
class StoredMessage:
    """A message in the local store: `seq` orders the store; `outgoing` if this account sent
    it (from this device, or from another of its devices when the account is known)."""

    seq: int
    outgoing: bool
    message: ReceivedMessage

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": "out" if self.outgoing else "in",
            **self.message.to_json(),
            "to": self.message.to,
        }


def stored_conversation(
    store: LocalStore,
    *,
    unshown_only: bool = False,
    me: str | None = None,
    name: str | None = None,
    group: str | None = None,
    limit: int | None = None,
) -> list[StoredMessage]:
    """Stored messages, oldest first: received and not yet shown (`unshown_only`), or the
    conversation with account `name` (seen as account `me`) or in `group`."""
    found = []
    for seq, record in store.stored_messages(unshown_only=unshown_only):
        stored = _from_record(seq, record, me)
        m = stored.message
        if group is not None and m.group != group:
            continue
        if name is not None and (m.group is not None or name not in {m.sender, m.to}):
            continue
        if name is not None and me is not None and me not in {m.sender, m.to}:
            continue
        found.append(stored)
    return found[-limit:] if limit else found


def _from_record(seq: int, record: dict[str, Any], me: str | None) -> StoredMessage:
    if record.get("direction") == "out":
        content = Content.model_validate(record["content"])
        return StoredMessage(
            seq,
            True,
            ReceivedMessage(
                id=content.message_id,
                sender=content.sender.account,
                sender_device=content.sender.device_id,
                group=content.to.group,
                to=content.to.account,
                text=content.text,
                sent_at=content.sent_at,
                attachments=tuple(
                    ReceivedAttachment(name=a.name, size=a.size, sha256="", path="")
                    for a in content.attachments
                ),
            ),
        )
    shown = record["message"]
    evidence = record.get("evidence") or {}
    sent_at = datetime.fromisoformat(shown["sent_at"]).timestamp()
    return StoredMessage(
        seq,
        me is not None and shown["from"] == me,  # sent from another device of this account
        ReceivedMessage(
            id=shown["id"],
            sender=shown["from"],
            sender_device=str(record.get("sender_device", "")),
            group=shown["group"],
            to=(evidence.get("to") or {}).get("account"),
            text=shown["text"],
            sent_at=round(sent_at * 1000),
            attachments=tuple(
                ReceivedAttachment(
                    name=a["name"], size=a["size"], sha256=a["sha256"], path=a["path"]
                )
                for a in shown["attachments"]
            ),
        ),
    )
