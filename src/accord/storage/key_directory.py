"""Durable state of the key-transparency map (docs/protocol/transparency.md §8).

The map is a function of the log: `kt_accounts` holds each account's current `AccountState`
(its search key is the primary key), `kt_versions` where each version's change sits in the log,
and `kt_state` how many log entries the map has taken in. They are written in the same
transaction as the log entries that change them (`TransparencyLogStore.append_batch(also=...)`),
so the map never runs ahead of or behind the log. The prefix tree itself is rebuilt in memory
from `kt_accounts` at start (`PrefixTree.from_items`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from accord.protocols.key_transparency import (
    AccountState,
    AppliedChange,
    parse_account_state,
    search_key,
)
from accord.storage.translog import kt_accounts, kt_state, kt_versions

_STATE_ID = 1
MAX_HISTORY_PER_READ = 1000
"""Most versions of one account returned by one `history` call."""

_LOAD_CHUNK = 10_000


class KeyDirectoryStore:
    """The `kt_*` tables (defined in `accord.storage.translog`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._ensure_state_row()

    def _ensure_state_row(self) -> None:
        with self._engine.begin() as conn:
            if conn.execute(select(kt_state.c.id)).first() is not None:
                return
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(kt_state).values(id=_STATE_ID, applied_size=0))
        except IntegrityError:
            pass  # another process made it first

    def applied_size(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(kt_state.c.applied_size)).scalar_one())

    def load_states(self, accounts: Iterable[str]) -> dict[str, AccountState]:
        names = sorted(set(accounts))
        if not names:
            return {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(kt_accounts.c.state).where(kt_accounts.c.account.in_(names))
            ).scalars()
            states = [parse_account_state(bytes(r)) for r in rows]
        return {s.account: s for s in states}

    def state(self, account: str) -> AccountState | None:
        return self.load_states([account]).get(account)

    def commitments(self) -> Iterator[tuple[bytes, bytes]]:
        """(search key, commitment) of every account, for rebuilding the prefix tree."""
        last = b""
        while True:
            with self._engine.connect() as conn:
                rows = conn.execute(
                    select(kt_accounts.c.search_key, kt_accounts.c.state)
                    .where(kt_accounts.c.search_key > last)
                    .order_by(kt_accounts.c.search_key)
                    .limit(_LOAD_CHUNK)
                ).all()
            if not rows:
                return
            for key, state in rows:
                yield bytes(key), hashlib.sha256(bytes(state)).digest()
            last = bytes(rows[-1][0])

    def write(self, conn: Connection, changes: Sequence[AppliedChange], applied_size: int) -> None:
        """Record `changes` (in log order) and the new applied size, inside the caller's
        transaction."""
        latest: dict[str, AccountState] = {}
        for change in changes:
            latest[change.state.account] = change.state
        if latest:
            conn.execute(delete(kt_accounts).where(kt_accounts.c.account.in_(sorted(latest))))
            conn.execute(
                insert(kt_accounts),
                [
                    {
                        "search_key": search_key(s.account),
                        "account": s.account,
                        "state": s.to_bytes(),
                    }
                    for s in latest.values()
                ],
            )
            conn.execute(
                insert(kt_versions),
                [
                    {"account": c.state.account, "version": c.state.version, "idx": c.index}
                    for c in changes
                ],
            )
        conn.execute(
            update(kt_state).where(kt_state.c.id == _STATE_ID).values(applied_size=applied_size)
        )

    def history(self, account: str, since: int, before_index: int) -> list[tuple[int, int]]:
        """(version, log index) of the account's changes after version `since` that lie before
        log index `before_index`, in order; at most `MAX_HISTORY_PER_READ`."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(kt_versions.c.version, kt_versions.c.idx)
                .where(
                    kt_versions.c.account == account,
                    kt_versions.c.version > since,
                    kt_versions.c.idx < before_index,
                )
                .order_by(kt_versions.c.version)
                .limit(MAX_HISTORY_PER_READ)
            ).all()
        return [(int(v), int(i)) for v, i in rows]
