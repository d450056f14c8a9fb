"""Durable server state of private threshold matching: `SqlShareStore`.

The store is bound to one open transaction (a `Connection`), so every step of processing one
voucher (its id recorded, its share kept, the threshold reached, the voucher key kept) commits
together or not at all. Tables are in storage/schema.py ("private threshold matching").
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Table, bindparam, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from accord.primitives.shamir import Share, field_element_from_bytes, field_element_to_bytes
from accord.protocols.private_matching.log_entries import CROSSING_NONCE_BYTES
from accord.protocols.private_matching.matcher import ShareStore
from accord.protocols.private_matching.voucher import OpenedShare
from accord.storage.schema import pm_accounts, pm_epochs, pm_seen_vouchers, pm_shares

# Built once per (dialect, table): a voucher's processing runs several of these, and building and
# keying a fresh statement each time cost more than running it.
_INSERT_IGNORE: dict[tuple[str, str], Any] = {}


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert one row unless its key exists; True if it was inserted."""
    dialect = conn.dialect.name
    stmt = _INSERT_IGNORE.get((dialect, table.name))
    if stmt is None:
        if dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing()
        elif dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing()
        else:  # pragma: no cover - other databases
            try:
                with conn.begin_nested():
                    conn.execute(insert(table), values)
            except IntegrityError:
                return False
            return True
        _INSERT_IGNORE[(dialect, table.name)] = stmt
    return bool(conn.execute(stmt, values).rowcount)


def _account(account_id: bytes) -> str:
    return account_id.decode("utf-8")


def ensure_account_row(conn: Connection, matching_account: str) -> None:
    """The account's counters row, created at zero if missing."""
    insert_ignore(
        conn,
        pm_accounts,
        {
            "matching_account": matching_account,
            "account": matching_account,
            "vouchers": 0,
            "rejected": 0,
            "latest_epoch": 0,
        },
    )


def epoch_row_id(account_id: bytes, epoch: int) -> str:
    """How a `pm_epochs` row is named where its voucher key is sealed (associated data)."""
    return f"{_account(account_id)}/{epoch}"


_DROP_SEEN_BEFORE = (
    delete(pm_seen_vouchers)
    .where(pm_seen_vouchers.c.matching_account == bindparam("matching_account"))
    .where(pm_seen_vouchers.c.epoch < bindparam("epoch"))
)


def drop_seen_before(conn: Connection, matching_account: str, epoch: int) -> None:
    """Forget the account's seen voucher ids of key epochs before `epoch`."""
    conn.execute(_DROP_SEEN_BEFORE, {"matching_account": matching_account, "epoch": epoch})


class SqlShareStore(ShareStore):
    """`ShareStore` over the server's database, inside the caller's transaction, for one voucher.

    `epoch` is the key epoch named in the voucher's header, kept beside its id (ids are dropped
    after their epoch); `now_ms` dates a crossing, the one time stored. Nothing here names the
    message a voucher came with. `seal` and `open` protect recovered voucher keys at rest.
    `crossed` tells the caller a voucher key was set here.
    """

    def __init__(
        self,
        conn: Connection,
        *,
        epoch: int,
        now_ms: int,
        seal: Callable[[bytes, str], bytes],
        open_: Callable[[bytes, str], bytes],
    ) -> None:
        self.conn = conn
        self.epoch = epoch
        self.now_ms = now_ms
        self._seal = seal
        self._open = open_
        self.crossed = False

    def record_voucher_id(self, account_id: bytes, voucher_id: bytes) -> bool:
        return insert_ignore(
            self.conn,
            pm_seen_vouchers,
            {
                "matching_account": _account(account_id),
                "voucher_id": voucher_id,
                "epoch": self.epoch,
            },
        )

    def add_share(self, account_id: bytes, share: OpenedShare) -> bool:
        return insert_ignore(
            self.conn,
            pm_shares,
            {
                "matching_account": _account(account_id),
                "epoch": share.epoch,
                "x": field_element_to_bytes(share.share.x),
                "voucher_id": share.voucher_id,
                "header": share.header,
                "y": field_element_to_bytes(share.share.y),
                "tag": struct.pack(f">{len(share.tag)}I", *share.tag),
                "inner_nonce": share.inner_nonce,
                "inner": share.inner_ciphertext,
            },
        )

    def shares(self, account_id: bytes, epoch: int) -> list[OpenedShare]:
        rows = self.conn.execute(
            select(pm_shares)
            .where(pm_shares.c.matching_account == _account(account_id))
            .where(pm_shares.c.epoch == epoch)
            .order_by(pm_shares.c.x)
        ).all()
        out = []
        for r in rows:
            tag = bytes(r.tag)
            out.append(
                OpenedShare(
                    voucher_id=bytes(r.voucher_id),
                    epoch=int(r.epoch),
                    header=bytes(r.header),
                    share=Share(
                        field_element_from_bytes(bytes(r.x)), field_element_from_bytes(bytes(r.y))
                    ),
                    tag=struct.unpack(f">{len(tag) // 4}I", tag),
                    inner_nonce=bytes(r.inner_nonce),
                    inner_ciphertext=bytes(r.inner),
                )
            )
        return out

    def voucher_key(self, account_id: bytes, epoch: int) -> bytes | None:
        key = self.conn.execute(
            select(pm_epochs.c.voucher_key)
            .where(pm_epochs.c.matching_account == _account(account_id))
            .where(pm_epochs.c.epoch == epoch)
        ).scalar()
        return None if key is None else self._open(bytes(key), epoch_row_id(account_id, epoch))

    def set_voucher_key(self, account_id: bytes, epoch: int, key: bytes) -> None:
        self.conn.execute(
            insert(pm_epochs).values(
                matching_account=_account(account_id),
                epoch=epoch,
                voucher_key=self._seal(key, epoch_row_id(account_id, epoch)),
                crossed_at=self.now_ms,
                crossing_nonce=os.urandom(CROSSING_NONCE_BYTES),
                log_index=None,
            )
        )
        self.crossed = True
