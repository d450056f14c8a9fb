"""Durable server state of private threshold matching: `SqlShareStore`.

The store is bound to one open transaction (a `Connection`), so every step of processing one
voucher (its id recorded, its share kept, the threshold reached, the voucher key kept) commits
together or not at all. Tables are in storage/schema.py ("private threshold matching").
"""

from __future__ import annotations

import os
import struct
from typing import Any

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from accord.primitives.shamir import Share, field_element_from_bytes, field_element_to_bytes
from accord.protocols.private_matching.log_entries import CROSSING_NONCE_BYTES
from accord.protocols.private_matching.matcher import ShareStore
from accord.protocols.private_matching.voucher import OpenedShare
from accord.storage.schema import pm_epochs, pm_seen_vouchers, pm_shares


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert one row unless its key exists; True if it was inserted."""
    if conn.dialect.name == "sqlite":
        stmt: Any = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    elif conn.dialect.name == "postgresql":
        stmt = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    else:  # pragma: no cover - other databases
        try:
            with conn.begin_nested():
                conn.execute(insert(table).values(**values))
        except IntegrityError:
            return False
        return True
    return bool(conn.execute(stmt).rowcount)


def _account(account_id: bytes) -> str:
    return account_id.decode("utf-8")


class SqlShareStore(ShareStore):
    """`ShareStore` over the server's database, inside the caller's transaction.

    `message_id` is recorded beside each voucher id (a retried send of the same message is not a
    replay); `now_ms` stamps the rows. `crossed` tells the caller a voucher key was set here.
    """

    def __init__(self, conn: Connection, *, message_id: str, now_ms: int) -> None:
        self.conn = conn
        self.message_id = message_id
        self.now_ms = now_ms
        self.crossed = False

    def record_voucher_id(self, account_id: bytes, voucher_id: bytes) -> bool:
        return insert_ignore(
            self.conn,
            pm_seen_vouchers,
            {
                "matching_account": _account(account_id),
                "voucher_id": voucher_id,
                "message_id": self.message_id,
                "seen_at": self.now_ms,
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
        return None if key is None else bytes(key)

    def set_voucher_key(self, account_id: bytes, epoch: int, key: bytes) -> None:
        self.conn.execute(
            insert(pm_epochs).values(
                matching_account=_account(account_id),
                epoch=epoch,
                voucher_key=key,
                crossed_at=self.now_ms,
                crossing_nonce=os.urandom(CROSSING_NONCE_BYTES),
                log_index=None,
            )
        )
        self.crossed = True
