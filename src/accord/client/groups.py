"""Groups (step 9): membership as signed, versioned states that only move forward, and the
Megolm sessions that encrypt to the members."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from accord.client.context import ClientContext
from accord.client.devices import DeviceDirectory
from accord.client.received import EnvelopeRejected
from accord.client.store import DeviceKey
from accord.client.user_input import account_names, user_input
from accord.errors import DecryptionError, InvalidInput, NotFound, ProtocolError, VerificationError
from accord.primitives.encoding import b64decode
from accord.primitives.olm import MegolmInbound, MegolmOutbound
from accord.protocols.messaging import group_state_payload, verify_group_state
from accord.wire.common import MAX_OLM_BODY_BYTES
from accord.wire.messaging import (
    GROUP_NOT_FOUND_CODE,
    Content,
    Conversation,
    DeviceKeys,
    Envelope,
    GroupKeyShare,
    GroupState,
    SignedGroupState,
    decode_payload,
)

MEGOLM_ROTATE_AFTER_MESSAGES = 1000


class Groups:
    def __init__(self, ctx: ClientContext, devices: DeviceDirectory) -> None:
        self._ctx = ctx
        self._devices = devices

    # --- membership ---------------------------------------------------------------------------

    def create(self, group: str, members: Sequence[str]) -> GroupState:
        me = self._ctx.identity.account_name
        names = [me] + [m for m in dict.fromkeys(members) if m != me]
        with user_input():
            state = GroupState(group=group, version=1, admins=[me], members=names)
        return self._publish(state)

    def change_members(
        self, group: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> GroupState:
        with user_input():
            Conversation(group=group)
        add, remove = account_names(add), account_names(remove)
        with self.answers_for(group):
            current = self.state(group, refresh=True)
        outsiders = [m for m in remove if m not in current.members]
        if outsiders:
            raise InvalidInput(
                f"not a member of {group}: {', '.join(outsiders)}", code="not_a_member"
            )
        already = [m for m in add if m in current.members]
        if already:
            raise InvalidInput(
                f"already a member of {group}: {', '.join(already)}", code="already_a_member"
            )
        members = [m for m in current.members if m not in set(remove)]
        members += [m for m in add if m not in members]
        admins = [a for a in current.admins if a in members] or [self._ctx.identity.account_name]
        with user_input():
            state = GroupState(
                group=group, version=current.version + 1, admins=admins, members=members
            )
        return self._publish(state)

    def _publish(self, state: GroupState) -> GroupState:
        ctx = self._ctx
        signed = SignedGroupState(
            state=state,
            signer=ctx.identity.ref,
            signature=ctx.identity.sign(group_state_payload(state)),
        )
        ctx.api.call(SignedGroupState, "PUT", f"/v1/groups/{state.group}", json=signed.model_dump())
        with ctx.store.transaction():
            ctx.store.save_group_state(state.group, state.version, state.model_dump_json())
        return state

    def state(self, group: str, *, refresh: bool = False) -> GroupState:
        """The group's membership, verified against the state this device already holds."""
        store = self._ctx.store
        known_json = store.group_state(group)
        known = GroupState.model_validate_json(known_json) if known_json else None
        if known is not None and not refresh:
            return known
        signed = self._ctx.api.call(SignedGroupState, "GET", f"/v1/groups/{group}")
        state = signed.state
        if state.group != group:
            raise ProtocolError("server answered for another group")
        if known is not None and state.version == known.version:
            if state != known:
                raise VerificationError("two different group states with one version")
            return known
        if known is not None and state.version < known.version:
            raise VerificationError("the server rolled back the group state")
        signer = self._devices.pinned(signed.signer.account, signed.signer.device_id)
        if signer is None:
            raise VerificationError("group state signed by an unknown device")
        verify_group_state(
            state,
            signed.signer.account,
            DeviceKeys(
                account=signer.account,
                device_id=signer.device_id,
                ed25519=signer.ed25519,
                curve25519=signer.curve25519,
                signature="-",
            ),
            signed.signature,
            known,
        )
        store.save_group_state(group, state.version, state.model_dump_json())
        return state

    @contextmanager
    def answers_for(self, group: str) -> Iterator[None]:
        """The server's one 404 for a group, told apart by what this device holds: a group it
        was in, so it has been removed since, or one it never belonged to."""
        try:
            yield
        except NotFound as exc:
            if exc.code != GROUP_NOT_FOUND_CODE:
                raise
            if self._ctx.store.group_state(group) is None:
                raise NotFound(
                    f"no group {group} that you belong to", code=GROUP_NOT_FOUND_CODE
                ) from None
            raise NotFound(
                f"you are no longer a member of {group}", code="no_longer_a_member"
            ) from None

    def check_member(self, group: str, account: str) -> None:
        """Step 11: a group message's sender is a member (looked up again once if not)."""
        try:
            state = self.state(group)
            if account not in state.members:
                state = self.state(group, refresh=True)
        except (VerificationError, NotFound, ProtocolError):
            raise EnvelopeRejected("group state did not verify") from None
        if account not in state.members:
            raise EnvelopeRejected("sender is not a member of the group")

    # --- Megolm sessions ----------------------------------------------------------------------

    def outbound_session(
        self, group: str, current: set[DeviceKey]
    ) -> tuple[MegolmOutbound, set[DeviceKey]]:
        """This device's session for the group, and the devices that have its key; a fresh one
        if any device left or it has encrypted enough messages."""
        store = self._ctx.store
        saved = store.outbound_group(group)
        if saved is not None:
            pickle, shared = saved
            outbound = MegolmOutbound.from_pickle(pickle, store.pickle_key)
            if shared <= current and outbound.message_index < MEGOLM_ROTATE_AFTER_MESSAGES:
                return outbound, shared
        return MegolmOutbound(), set()

    def save_outbound_session(
        self, group: str, outbound: MegolmOutbound, shared: set[DeviceKey]
    ) -> None:
        store = self._ctx.store
        store.save_outbound_group(group, outbound.pickle(store.pickle_key), shared)

    def store_key(self, share: GroupKeyShare) -> None:
        """Keep a group session key another device shared (over Olm) with this one."""
        try:
            inbound = MegolmInbound.from_session_key(share.session_key)
        except DecryptionError:
            raise EnvelopeRejected("malformed group key") from None
        if inbound.session_id != share.session_id:
            raise EnvelopeRejected("group key does not match its id")
        store = self._ctx.store
        existing = store.inbound_group(share.session_id)
        if existing is not None:
            if (existing["sender_account"], existing["sender_device"]) != (
                share.sender.account,
                share.sender.device_id,
            ):
                raise EnvelopeRejected("group key id reused by another sender")
            return
        store.save_inbound_group(
            share.session_id,
            share.group,
            (share.sender.account, share.sender.device_id),
            inbound.pickle(store.pickle_key),
        )

    def decrypt(self, env: Envelope, sender_key: DeviceKey) -> Content:
        """Step 11 for a group message: the session must be the sender's, for this group, and
        each message index is accepted once."""
        assert env.megolm is not None and env.megolm_session_id is not None
        store = self._ctx.store
        row = store.inbound_group(env.megolm_session_id)
        if row is None:
            raise EnvelopeRejected("no group key for this message")
        if (row["sender_account"], row["sender_device"]) != sender_key or row[
            "grp"
        ] != env.to.group:
            raise EnvelopeRejected("group session belongs to another sender or group")
        inbound = MegolmInbound.from_pickle(row["pickle"], store.pickle_key)
        try:
            result = inbound.decrypt(b64decode(env.megolm, max_bytes=MAX_OLM_BODY_BYTES))
            payload = decode_payload(result.plaintext)
        except (DecryptionError, InvalidInput):
            raise EnvelopeRejected("decryption failed (corrupted)") from None
        if not store.mark_megolm_index(env.megolm_session_id, result.message_index):
            raise EnvelopeRejected("replayed group message ignored")
        if not isinstance(payload, Content):
            raise EnvelopeRejected("malformed group payload")
        return payload
