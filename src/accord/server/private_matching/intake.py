"""Voucher intake (docs/protocol/private-matching.md, D1-D4): `check_send` runs before a
message is stored. It parses each voucher strictly (exact size, magic, valid points), checks
table version, account binding, the blob it travels with and replays, and refuses anything
wrong with a 4xx. It never opens a voucher: whether a voucher opens must not change what the
sender sees, or a modified client could probe the bank. It then takes the vouchers out of the
request, so recipients never receive them. `observe_send` queues them durably once the message
has committed, and wakes the worker. Nothing queued or kept names the message, its recipients
or its time: a retried send is recognised by the message already being stored, not by a link
from the voucher."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from pydantic import ValidationError
from sqlalchemy import Connection, select

from accord.clock import SYSTEM_CLOCK, Clock
from accord.errors import (
    Conflict,
    InvalidInput,
    ProtocolError,
    UnsupportedVersion,
)
from accord.primitives.encoding import b64decode
from accord.protocols.private_matching.voucher import (
    HEADER_BYTES,
    VOUCHER_MAGIC,
)
from accord.server.messaging import AuthedDevice
from accord.server.private_matching.tables import MatchingTables
from accord.storage.db import Database
from accord.storage.private_matching import ensure_account_row, insert_ignore
from accord.storage.schema import (
    blobs,
    messages,
    pm_queue,
    pm_seen_vouchers,
)
from accord.wire.matching import (
    MAX_VOUCHER_BYTES,
    MAX_VOUCHERS_PER_MESSAGE,
    VOUCHERS_EXTENSION,
    VoucherItem,
    matching_account_id,
)
from accord.wire.messaging import SendAccepted, SendRequest

#: Vouchers checked by `check_send` wait here until the message commits.
_STASH_TTL_S = 300.0
_STASH_MAX = 10_000


def parse_voucher_items_unverified(raw: Any) -> list[tuple[str, bytes]]:
    """The `vouchers` extension as (blob id, voucher bytes) pairs; sizes and shapes only."""
    if not isinstance(raw, list):
        raise InvalidInput("vouchers must be a list", code="invalid_voucher")
    if not 1 <= len(raw) <= MAX_VOUCHERS_PER_MESSAGE:
        raise InvalidInput(
            f"a message carries 1..{MAX_VOUCHERS_PER_MESSAGE} vouchers", code="invalid_voucher"
        )
    out = []
    for item in raw:
        try:
            parsed = VoucherItem.model_validate(item)
        except ValidationError:
            raise InvalidInput("malformed voucher entry", code="invalid_voucher") from None
        try:
            data = b64decode(parsed.voucher, max_bytes=MAX_VOUCHER_BYTES, what="voucher")
        except InvalidInput as exc:
            raise InvalidInput(exc.message, code="invalid_voucher") from None
        out.append((parsed.blob_id, data))
    if len({b for b, _ in out}) != len(out):
        raise InvalidInput("two vouchers for one attachment", code="invalid_voucher")
    return out


def voucher_table_digest_unverified(data: bytes) -> bytes:
    """The table digest named in a voucher's header, before anything is checked."""
    if len(data) < HEADER_BYTES or data[:3] != VOUCHER_MAGIC[:3]:
        raise InvalidInput("not a safety voucher", code="invalid_voucher")
    return data[len(VOUCHER_MAGIC) : len(VOUCHER_MAGIC) + 32]


@dataclass(frozen=True)
class _CheckedVoucher:
    blob_id: str
    voucher_id: bytes
    data: bytes


class VoucherIntake:
    def __init__(
        self,
        db: Database,
        tables: MatchingTables,
        *,
        on_queued: Callable[[], None],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.tables = tables
        self.clock = clock
        self._on_queued = on_queued
        self._stash: dict[tuple[int, str], tuple[float, list[_CheckedVoucher]]] = {}
        self._stash_lock = threading.Lock()

    async def check_send(self, dev: AuthedDevice, req: SendRequest) -> None:
        raw = req.extensions.get(VOUCHERS_EXTENSION)
        if raw is None:
            return
        items = parse_voucher_items_unverified(raw)
        checked = await to_thread.run_sync(self._check_vouchers, dev, req.message_id, items)
        if checked is None:  # a retry of a message already stored: its vouchers are queued
            req.extensions.pop(VOUCHERS_EXTENSION, None)
            return
        # The server keeps the vouchers; the stored message (what recipients get) has none.
        req.extensions.pop(VOUCHERS_EXTENSION, None)
        now = self.clock.monotonic()
        with self._stash_lock:
            for key in [k for k, (t, _) in self._stash.items() if now - t > _STASH_TTL_S]:
                del self._stash[key]
            if len(self._stash) >= _STASH_MAX:
                raise Conflict("too many sends in progress; try again", code="busy")
            self._stash[(dev.device_pk, req.message_id)] = (now, checked)

    def _check_vouchers(
        self, dev: AuthedDevice, message_id: str, items: list[tuple[str, bytes]]
    ) -> list[_CheckedVoucher] | None:
        """The checked vouchers, or None if this message is already stored (a retry)."""
        with self.db.read() as conn:
            stored = conn.execute(
                select(messages.c.id).where(
                    messages.c.sender_device_pk == dev.device_pk,
                    messages.c.message_id == message_id,
                )
            ).first()
        if stored is not None:
            return None
        account_id = matching_account_id(dev.account)
        tables = self.tables.accepted()
        checked = []
        for blob_id, data in items:
            row = tables.get(voucher_table_digest_unverified(data))
            if row is None:
                raise ProtocolError(
                    "voucher made for another table version", code="voucher_table_version"
                )
            matcher = self.tables.loaded(row).matcher
            try:
                parsed = matcher.check_voucher(account_id=account_id, voucher=data)
            except ProtocolError as exc:
                raise ProtocolError(exc.message, code="voucher_other_account") from None
            except UnsupportedVersion:
                raise
            except InvalidInput as exc:
                raise InvalidInput(exc.message, code="invalid_voucher") from None
            checked.append(_CheckedVoucher(blob_id, parsed.voucher_id, data))
        ids = [c.voucher_id for c in checked]
        if len(set(ids)) != len(ids):
            raise InvalidInput("one voucher twice in a message", code="invalid_voucher")
        account = account_id.decode()
        with self.db.read() as conn:
            owned = set(
                conn.execute(
                    select(blobs.c.blob_id)
                    .where(blobs.c.blob_id.in_([c.blob_id for c in checked]))
                    .where(blobs.c.uploader_device_pk == dev.device_pk)
                ).scalars()
            )
            earlier = [
                r
                for table in (pm_queue, pm_seen_vouchers)
                for r in conn.execute(
                    select(table.c.voucher_id)
                    .where(table.c.matching_account == account)
                    .where(table.c.voucher_id.in_(ids))
                )
            ]
        if len(owned) != len(checked):
            raise InvalidInput(
                "a voucher travels with an attachment this device did not upload",
                code="invalid_voucher",
            )
        if earlier:
            raise ProtocolError("voucher already received", code="voucher_replayed")
        return checked

    async def observe_send(self, dev: AuthedDevice, req: SendRequest, _ok: SendAccepted) -> None:
        with self._stash_lock:
            entry = self._stash.pop((dev.device_pk, req.message_id), None)
        if entry is None:
            return
        account = matching_account_id(dev.account).decode()

        def _tx(conn: Connection) -> None:
            for c in entry[1]:
                insert_ignore(
                    conn,
                    pm_queue,
                    {
                        "matching_account": account,
                        "voucher_id": c.voucher_id,
                        "device_id": dev.device_id,
                        "voucher": c.data,
                    },
                )
            ensure_account_row(conn, account)

        await self.db.transact_async(_tx)
        self._on_queued()
