"""Pairwise Olm sessions (steps 5, 7 and 11): opened with claimed one-time keys, used to encrypt
one copy per device, and to decrypt what a device sent to this one."""

from __future__ import annotations

from collections.abc import Sequence

from accord.client.context import ClientContext
from accord.client.received import EnvelopeRejected
from accord.client.store import DeviceKey, PinnedDevice
from accord.clock import now_ms
from accord.errors import DecryptionError, InvalidInput, ServiceError, VerificationError
from accord.primitives.encoding import b64decode, b64encode
from accord.primitives.olm import OlmCiphertext, OlmSession
from accord.protocols.messaging import verify_one_time_key
from accord.wire.common import MAX_OLM_BODY_BYTES
from accord.wire.messaging import ClaimedKeys, DeviceCopy, OlmBody


class OlmSessions:
    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx

    def encrypt_copies(self, targets: Sequence[PinnedDevice], payload: bytes) -> list[DeviceCopy]:
        """Olm-encrypt `payload` for each target. Ratchet state is committed (by the caller's
        transaction) before the send leaves, so a message key is never used twice even if the
        request is retried or the process dies."""
        sessions = self._open(targets)
        copies = [
            DeviceCopy(
                account=d.account,
                device_id=d.device_id,
                olm=_olm_body(sessions[(d.account, d.device_id)].encrypt(payload)),
            )
            for d in targets
        ]
        self._save(sessions, targets)
        return copies

    def _latest(self, device: PinnedDevice) -> OlmSession | None:
        sessions = self._ctx.store.olm_sessions(device.curve25519)
        if not sessions:
            return None
        return OlmSession.from_pickle(sessions[0][1], self._ctx.store.pickle_key)

    def _open(self, targets: Sequence[PinnedDevice]) -> dict[DeviceKey, OlmSession]:
        """Sessions to every target, claiming one-time keys for those without one."""
        out: dict[DeviceKey, OlmSession] = {}
        missing: list[PinnedDevice] = []
        for dev in targets:
            session = self._latest(dev)
            if session is None:
                missing.append(dev)
            else:
                out[(dev.account, dev.device_id)] = session
        if missing:
            claimed = self._ctx.api.call(
                ClaimedKeys,
                "POST",
                "/v1/keys/claim",
                json={
                    "devices": [{"account": d.account, "device_id": d.device_id} for d in missing]
                },
            )
            by_ref = {(c.device.keys.account, c.device.keys.device_id): c for c in claimed.keys}
            olm = self._ctx.identity.olm
            for dev in missing:
                item = by_ref.get((dev.account, dev.device_id))
                if item is None or item.one_time_key is None:
                    raise ServiceError(f"no one-time key available for a device of {dev.account}")
                keys = item.device.keys
                if (keys.ed25519, keys.curve25519) != (dev.ed25519, dev.curve25519):
                    raise VerificationError("server returned keys that differ from the pinned ones")
                verify_one_time_key(keys, item.one_time_key, item.fallback)
                session = olm.create_outbound_session(dev.curve25519, item.one_time_key.key)
                out[(dev.account, dev.device_id)] = session
        return out

    def _save(self, sessions: dict[DeviceKey, OlmSession], devices: Sequence[PinnedDevice]) -> None:
        curve = {(d.account, d.device_id): d.curve25519 for d in devices}
        store = self._ctx.store
        t = now_ms(self._ctx.clock)
        for key, session in sessions.items():
            store.save_olm_session(
                session.session_id, curve[key], session.pickle(store.pickle_key), t
            )

    def decrypt(self, sender: PinnedDevice, body: OlmBody) -> bytes:
        """Step 11: decrypt with a session this device has with `sender`, or open one from a
        pre-key message. A replayed or corrupted message is rejected."""
        try:
            raw = b64decode(body.body, max_bytes=MAX_OLM_BODY_BYTES)
            message = OlmCiphertext(message_type=body.type, body=raw)
        except InvalidInput:
            raise EnvelopeRejected("malformed ciphertext") from None
        store, identity = self._ctx.store, self._ctx.identity
        t = now_ms(self._ctx.clock)
        for session_id, pickle in store.olm_sessions(sender.curve25519):
            session = OlmSession.from_pickle(pickle, store.pickle_key)
            if message.message_type == 0 and not session.matches(message):
                continue
            try:
                plaintext = session.decrypt(message)
            except DecryptionError:
                if message.message_type == 0:
                    raise EnvelopeRejected("decryption failed (replayed or corrupted)") from None
                continue
            store.save_olm_session(
                session_id, sender.curve25519, session.pickle(store.pickle_key), t
            )
            return plaintext
        if message.message_type != 0:
            raise EnvelopeRejected("decryption failed (replayed or corrupted)")
        try:
            session, plaintext = identity.olm.create_inbound_session(sender.curve25519, message)
        except DecryptionError:
            raise EnvelopeRejected("decryption failed (replayed or corrupted)") from None
        store.save_olm_session(
            session.session_id, sender.curve25519, session.pickle(store.pickle_key), t
        )
        identity.save()
        return plaintext


def _olm_body(ct: OlmCiphertext) -> OlmBody:
    return OlmBody(type=ct.message_type, body=b64encode(ct.body))  # type: ignore[arg-type]
