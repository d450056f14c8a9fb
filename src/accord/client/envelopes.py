"""Opening a received envelope (steps 10-12): decrypt it, then check every routing fact the
server asserted, the franking commitment and the attachments, before anything is shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from accord.client.attachments import Attachments
from accord.client.context import ClientContext
from accord.client.devices import DeviceDirectory
from accord.client.groups import Groups
from accord.client.received import EnvelopeRejected, ReceivedMessage
from accord.client.sessions import OlmSessions
from accord.client.store import PinnedDevice
from accord.client.vouchers import SafetyVouchers
from accord.errors import DecryptionError, InvalidInput, NotFound, VerificationError
from accord.protocols.franking import verify_commitment
from accord.wire.franking import commitment_bytes, franked_message, franking_key_of, stamp_of
from accord.wire.messaging import (
    Content,
    Conversation,
    DeviceRef,
    Envelope,
    GroupKeyShare,
    MatchingSecretShare,
    decode_payload,
)

# The report models are imported where a received message is kept as evidence (a send needs
# none of them).
if TYPE_CHECKING:
    from accord.wire.reports import ReportedMessage


class EnvelopeOpener:
    def __init__(
        self,
        ctx: ClientContext,
        *,
        devices: DeviceDirectory,
        sessions: OlmSessions,
        groups: Groups,
        attachments: Attachments,
        vouchers: SafetyVouchers,
    ) -> None:
        self._ctx = ctx
        self._vouchers = vouchers
        self._devices = devices
        self._sessions = sessions
        self._groups = groups
        self._attachments = attachments

    def open(self, env: Envelope) -> ReceivedMessage | None:
        """Step 11: decrypt, then check every routing fact the server asserted. Raises
        `EnvelopeRejected` for an envelope to drop; None for one that carried this account's
        matching secret (taken, nothing to show)."""
        sender = self._sender_device(env.sender)
        sender_key = (sender.account, sender.device_id)
        content: Content | None = None
        if env.olm is not None:
            try:
                payload = decode_payload(self._sessions.decrypt(sender, env.olm))
            except DecryptionError:
                raise EnvelopeRejected("malformed payload") from None
            if isinstance(payload, GroupKeyShare):
                if env.to.group is None or payload.group != env.to.group:
                    raise EnvelopeRejected("group key for another conversation")
                if (payload.sender.account, payload.sender.device_id) != sender_key:
                    raise EnvelopeRejected("group key names another sender")
                self._groups.store_key(payload)
            elif isinstance(payload, MatchingSecretShare):
                own = self._ctx.identity.account_name
                if sender.account != own or env.to != Conversation(account=own):
                    raise EnvelopeRejected("matching secret from another account")
                if (payload.sender.account, payload.sender.device_id) != sender_key:
                    raise EnvelopeRejected("matching secret names another sender")
                if env.megolm is not None:
                    raise EnvelopeRejected("malformed envelope")
                try:
                    self._vouchers.adopt(payload)
                except InvalidInput:
                    raise EnvelopeRejected("malformed matching secret") from None
                return None
            else:
                content = payload
        if env.megolm is not None:
            if content is not None or env.to.group is None or env.megolm_session_id is None:
                raise EnvelopeRejected("malformed group envelope")
            content = self._groups.decrypt(env, sender_key)
        if content is None:
            raise EnvelopeRejected("envelope carries no message")
        if content.message_id != env.message_id or content.to != env.to:
            raise EnvelopeRejected("envelope does not match its content")
        if (content.sender.account, content.sender.device_id) != sender_key:
            raise EnvelopeRejected("content names another sender")
        if env.to.group is not None:
            self._groups.check_member(env.to.group, sender.account)
        if self._ctx.store.has_message(sender.account, content.message_id):
            raise EnvelopeRejected("replayed message ignored")
        evidence = check_franking(env, content)
        attachments = self._attachments.fetch_all(content.message_id, content.attachments)
        return ReceivedMessage(
            id=content.message_id,
            sender=sender.account,
            sender_device=sender.device_id,
            group=env.to.group,
            to=env.to.account,
            text=content.text,
            sent_at=content.sent_at,
            attachments=attachments,
            evidence=evidence,
        )

    def _sender_device(self, ref: DeviceRef) -> PinnedDevice:
        try:
            pinned = self._devices.pinned(ref.account, ref.device_id)
        except (VerificationError, NotFound) as exc:
            raise EnvelopeRejected(f"sender's device list did not verify ({exc.code})") from None
        if pinned is None:
            raise EnvelopeRejected("unknown sender device")
        return pinned


def check_franking(env: Envelope, content: Content) -> ReportedMessage:
    """Franking step 4: a message whose commitment does not open could not be reported, so it
    is dropped."""
    try:
        stamp = stamp_of(env.extensions)
        key = franking_key_of(content)
        verify_commitment(key, franked_message(content), commitment_bytes(stamp.commitment))
    except InvalidInput as exc:
        raise EnvelopeRejected(exc.message) from None
    except VerificationError:
        raise EnvelopeRejected("franking commitment does not open") from None
    from accord.wire.reports import ReportedMessage

    return ReportedMessage(
        content=content,
        sender=env.sender,
        to=env.to,
        received_at=env.received_at,
        franking=stamp,
    )
