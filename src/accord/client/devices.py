"""Device sets through key transparency (docs/protocol/transparency.md §8, K9-K11).

An account's devices are never taken from a list the server writes: the client fetches the
account's map search and history at a checkpoint it accepted, replays the history from the
state it pinned before (or from genesis) through the map's rules, checks the result against the
map, and pins it. The set it encrypts to is then the account's complete, current set.

K10 Owner monitoring: on every receive (and `accord account devices`) the device replays its own
    account's history since it last looked and warns about every device it did not add, and
    about this device's removal.
K11 Contact monitoring: when a contact's device set changes from the one pinned, a notice is
    kept for the user and the send that found it stops (`contact_changed`), so the user is told
    before the next message goes; a contact the user verified stays blocked until verified
    again (`accord contact verify NAME`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from accord.client.context import ClientContext
from accord.client.log_trust import ProofEncoding, decode_proof
from accord.client.store import PinnedDevice
from accord.clock import now_ms
from accord.errors import InvalidInput, NotFound, ProtocolError, VerificationError
from accord.primitives.encoding import b64decode, b64encode
from accord.protocols.key_transparency import (
    AccountState,
    ProvenChange,
    map_root,
    parse_account_state,
    parse_map_head,
    safety_code,
    verify_account,
)
from accord.protocols.translog.note import Checkpoint
from accord.protocols.translog.prefix_tree import HASH_BYTES, SearchProof, SearchResult
from accord.wire.messaging import DeviceRef
from accord.wire.transparency import AccountProof, HistoryChange, HistoryPage, MapSearch

MAX_HISTORY_PAGES = 64
_PIN_PREFIX = "kt:"
_NOTICES = "kt-notices"


@dataclass(frozen=True)
class ContactPin:
    """What this device accepted about an account (K11): its state; whether its user verified
    the safety code for that state; whether a change (a device added or re-keyed) has not been
    shown to the user yet (`blocked`), and whether the contact was verified before that change
    (`reverify`: sending stays blocked until the user verifies again)."""

    state: AccountState
    verified: bool = False
    blocked: bool = False
    reverify: bool = False


class ContactChanged(VerificationError):
    """A contact's device set changed since this device last used it (K11)."""

    code = "contact_changed"


def _decode_search(search: MapSearch) -> SearchProof:
    def h(value: str) -> bytes:
        return b64decode(value, max_bytes=HASH_BYTES, what="map proof")

    return SearchProof(
        result=SearchResult(search.result),
        depth=search.depth,
        elements=tuple(h(e) for e in search.elements),
        leaf_key=h(search.leaf_key) if search.leaf_key else None,
        leaf_commitment=h(search.leaf_commitment) if search.leaf_commitment else None,
    )


def _decode_changes(changes: Sequence[HistoryChange]) -> list[ProvenChange]:
    return [
        ProvenChange(
            version=c.version,
            index=c.index,
            entry=b64decode(c.entry, max_bytes=90_000, what="log entry"),
            proof=tuple(decode_proof(c.proof, ProofEncoding.BASE64)),
        )
        for c in changes
    ]


class DeviceDirectory:
    """The devices this device encrypts to and accepts messages from."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx

    # --- pins (sealed in the store: authenticated at rest) ----------------------------------

    def pin(self, account: str) -> ContactPin | None:
        raw = self._ctx.store.get_secret(_PIN_PREFIX + account)
        if raw is None:
            return None
        try:
            obj = json.loads(raw)
            state = parse_account_state(b64decode(obj["state"], max_bytes=1 << 20))
            return ContactPin(
                state, bool(obj["verified"]), bool(obj["blocked"]), bool(obj["reverify"])
            )
        except (ValueError, KeyError, TypeError, InvalidInput):
            raise VerificationError(
                f"the pinned key state of {account} is damaged", code="anchors_tampered"
            ) from None

    def _save_pin(self, pin: ContactPin) -> None:
        raw = json.dumps(
            {
                "state": b64encode(pin.state.to_bytes()),
                "verified": pin.verified,
                "blocked": pin.blocked,
                "reverify": pin.reverify,
            }
        )
        self._ctx.store.put_secret(_PIN_PREFIX + pin.state.account, raw.encode("utf-8"))

    # --- K9 ---------------------------------------------------------------------------------

    def fetch_state(self, account: str, pinned: AccountState | None) -> AccountState | None:
        """K9: the account's complete, current state at a checkpoint this device accepts (None:
        the map proves there is no such account). The checkpoint is kept as the last seen."""
        ctx = self._ctx
        since = pinned.version if pinned else 0
        answer = ctx.api.call(
            AccountProof,
            "GET",
            f"/v1/accounts/{account}/transparency",
            params={"since": since},
        )
        if answer.account != account:
            raise ProtocolError("server answered for another account")
        log_trust = ctx.log_trust
        checkpoint = log_trust.accept_checkpoint(answer.checkpoint)
        root = self._verify_map_head(answer, checkpoint)
        changes = _decode_changes(answer.changes)
        more = answer.more
        pages = 0
        while more:
            pages += 1
            if pages > MAX_HISTORY_PAGES:
                raise ProtocolError("the account's history is too long to check")
            page = ctx.api.call(
                HistoryPage,
                "GET",
                f"/v1/accounts/{account}/transparency",
                params={"since": since + len(changes), "size": checkpoint.size},
            )
            if page.account != account or page.size != checkpoint.size:
                raise ProtocolError("server answered for another account or size")
            changes += _decode_changes(page.changes)
            more = page.more

        def included(entry: bytes, index: int, proof: Sequence[bytes]) -> None:
            try:
                log_trust.verify_inclusion(entry, index, checkpoint, proof)
            except VerificationError:
                raise VerificationError(
                    f"a change of {account} is not in the transparency log",
                    code="unlogged_device",
                ) from None

        return verify_account(
            account, root, _decode_search(answer.search), pinned, changes, verify_included=included
        )

    def _verify_map_head(self, answer: AccountProof, checkpoint: Checkpoint) -> bytes:
        """K5: the map root is the last leaf of the accepted checkpoint."""
        head = answer.map_head
        if checkpoint.size == 0 or head.index != checkpoint.size - 1:
            raise VerificationError(
                "the map head is not the checkpoint's last entry", code="missing_map_head"
            )
        entry = b64decode(head.entry, max_bytes=90_000, what="map head")
        self._ctx.log_trust.verify_inclusion(
            entry, head.index, checkpoint, decode_proof(head.proof, ProofEncoding.BASE64)
        )
        return map_root(parse_map_head(entry))

    # --- refreshing, with monitoring ----------------------------------------------------------

    def refresh(self, accounts: Iterable[str]) -> list[str]:
        """K9 for each account, then K10 (own account) or K11 (contacts); pin the result.
        Returns notices for the user; a contact's change is also kept as a notice and blocks
        the next send to it (`prepare`)."""
        ctx = self._ctx
        me = ctx.identity
        notices: list[str] = []
        for account in sorted(set(accounts)):
            old = self.pin(account)
            state = self.fetch_state(account, old.state if old else None)
            if state is None:
                raise NotFound(f"there is no account {account} (the transparency map says so)")
            if account == me.account_name:
                notices += self._monitor_own(old.state if old else None, state)
                pin = ContactPin(state)
            elif old is not None and self._contact_changed(old.state, state):
                pin = ContactPin(state, False, True, old.verified or old.reverify)
                self._save_pin(pin)
                notice = self._change_notice(account)
                notices.append(notice)
                self._add_notice(notice)
            else:
                pin = ContactPin(
                    state,
                    old.verified if old else False,
                    old.blocked if old else False,
                    old.reverify if old else False,
                )
            self._save_pin(pin)
            ctx.store.replace_devices(
                account,
                [
                    PinnedDevice(account, d.device_id, d.ed25519, d.curve25519)
                    for d in state.devices
                ],
                now_ms(ctx.clock),
            )
        return notices

    def prepare(self, accounts: Iterable[str], *, refresh: bool = False) -> None:
        """Before a send: fetch and verify the accounts not pinned yet (all, if `refresh`), in
        a transaction of its own, then refuse (`ContactChanged`) if a contact changed since the
        user last sent to it (K11): once for a contact not verified, until verified again for
        one that was."""
        names = sorted(set(accounts))
        store = self._ctx.store
        stale = [a for a in names if refresh or not store.pinned_devices(a)]
        if stale:
            with store.transaction():
                self.refresh(stale)
        me = self._ctx.identity.account_name
        blocked = [p for a in names if a != me and (p := self.pin(a)) is not None and p.blocked]
        told = [p.state.account for p in blocked]
        if blocked:  # a write only when there is something to tell (not on every send)
            with store.transaction():
                for pin in blocked:
                    if not pin.reverify:
                        self._save_pin(ContactPin(pin.state, pin.verified, False, False))
        if told:
            raise ContactChanged(
                "; ".join(self._change_notice(a) for a in told)
                + ". Nothing was sent: compare codes with `accord contact verify NAME`"
                + (", then send again" if not self._any_reverify(told) else " --confirm first")
            )

    def _any_reverify(self, accounts: Sequence[str]) -> bool:
        return any((p := self.pin(a)) is not None and p.reverify for a in accounts)

    def _contact_changed(self, old: AccountState, state: AccountState) -> bool:
        """K11: did the contact gain a device (or a device change its keys)?"""
        before = {(d.device_id, d.ed25519, d.curve25519) for d in old.devices}
        return any((d.device_id, d.ed25519, d.curve25519) not in before for d in state.devices)

    def _change_notice(self, account: str) -> str:
        return f"{account}'s devices changed (new safety code: {self.safety_code(account)})"

    def _monitor_own(self, old: AccountState | None, state: AccountState) -> list[str]:
        """K10."""
        me = self._ctx.identity
        if state.device(me.device_id) is None:
            if old is not None and old.device(me.device_id) is not None:
                return [
                    f"this device was removed from your account {me.account_name}; "
                    "if you did not remove it, someone else controls your account"
                ]
            raise VerificationError(
                "this device is missing from its own account's logged devices",
                code="device_not_in_account",
            )
        known = self._ctx.store.known_devices()
        notices = [
            f"a new device {d.device_id} was added to your account {me.account_name}; "
            "if you did not add it, someone else may be reading your messages"
            for d in state.devices
            if d.device_id not in known
        ]
        if old is not None:
            notices += [
                f"device {d.device_id} was removed from your account {me.account_name}"
                for d in old.devices
                if state.device(d.device_id) is None
            ]
        self.remember_own(d.device_id for d in state.devices)
        return notices

    # --- what the rest of the client uses -----------------------------------------------------

    def others(self, accounts: Iterable[str]) -> list[PinnedDevice]:
        """Every pinned device of `accounts` but this one (`prepare` pins them first)."""
        names = sorted(set(accounts))
        store = self._ctx.store
        me = (self._ctx.identity.account_name, self._ctx.identity.device_id)
        return [d for a in names for d in store.pinned_devices(a) if (d.account, d.device_id) != me]

    def pinned(self, account: str, device_id: str) -> PinnedDevice | None:
        """A device as pinned; an unknown one is looked for in a fresh state of its account."""
        store = self._ctx.store
        device = store.pinned_device(account, device_id)
        if device is None:
            self.refresh([account])
            device = store.pinned_device(account, device_id)
        return device

    def unlogged(self, refs: Iterable[DeviceRef]) -> bool:
        """Is any of these devices missing from its account's verified, pinned set?"""
        store = self._ctx.store
        return any(store.pinned_device(r.account, r.device_id) is None for r in refs) or any(
            (p := self.pin(r.account)) is not None and p.state.device(r.device_id) is None
            for r in refs
        )

    def own(self) -> list[PinnedDevice]:
        return self._ctx.store.pinned_devices(self._ctx.identity.account_name)

    def remember_own(self, device_ids: Iterable[str]) -> None:
        """Devices of this account that its user added (here or on another device)."""
        self._ctx.store.add_known_devices(device_ids)

    def check_own(self) -> list[str]:
        """K10: replay this account's history since this device last looked."""
        with self._ctx.store.transaction():
            return self.refresh([self._ctx.identity.account_name])

    # --- safety codes (K11) -------------------------------------------------------------------

    def safety_code(self, account: str) -> str:
        """The code this device's user and `account`'s compare in person."""
        me = self.pin(self._ctx.identity.account_name)
        them = self.pin(account)
        if me is None or them is None:
            raise NotFound(f"no verified key state for {account} yet")
        return safety_code(me.state, them.state)

    def verify_contact(self, account: str, *, confirm: bool) -> tuple[str, bool]:
        """Refresh both accounts, return the safety code and whether the contact is marked
        verified; with `confirm`, mark it verified (its user compared the codes)."""
        store = self._ctx.store
        with store.transaction():
            self.refresh([self._ctx.identity.account_name, account])
            pin = self.pin(account)
            if pin is None:
                raise NotFound(f"no key state for {account}")
            if confirm:
                pin = ContactPin(pin.state, True, False, False)
                self._save_pin(pin)
            return self.safety_code(account), pin.verified

    # --- notices ------------------------------------------------------------------------------

    def _add_notice(self, notice: str) -> None:
        store = self._ctx.store
        raw = store.get_secret(_NOTICES)
        kept: list[str] = json.loads(raw) if raw else []
        store.put_secret(_NOTICES, json.dumps([*kept, notice][-100:]).encode("utf-8"))

    def take_notices(self) -> list[str]:
        """Contact notices kept since they were last taken."""
        store = self._ctx.store
        raw = store.get_secret(_NOTICES)
        if not raw:
            return []
        store.put_secret(_NOTICES, b"[]")
        return [str(n) for n in json.loads(raw)]
