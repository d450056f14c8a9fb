"""The provider's lawful-access entries in the transparency log: publishing them exactly once
(across server processes), finding them by kind, and proving them against a checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.errors import Conflict
from accord.primitives.encoding import b64encode
from accord.protocols.access.log_entries import parse_access_entry
from accord.server.translog import LogService
from accord.storage.db import Database, inserted_id
from accord.storage.schema import access_log_index
from accord.wire.access import MAX_ENTRIES_PER_PAGE, AccessEntries, LoggedEntry, ProvenEntry

KIND_APPROVER_SET = "approver_set"
KIND_AGENCY_KEY = "agency_key"
KIND_COMMITMENT = "commitment"
KIND_DISCLOSURE = "disclosure"
KIND_RECORD_COUNT = "record_count"
KIND_EXTENSION = "extension"
MAX_PARSED_ENTRIES_CACHED = 10_000


class AccessLedger:
    def __init__(self, db: Database, log: LogService, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.log = log
        self.clock = clock
        self._parsed: dict[int, Any] = {}  # log index -> parsed entry (entries never change)

    def entry(self, index: int) -> bytes:
        return self.log.store.entries(index, index + 1)[0]

    def parsed_entry(self, index: int) -> Any:
        entry = self._parsed.get(index)
        if entry is None:
            entry = parse_access_entry(self.entry(index))
            if len(self._parsed) > MAX_PARSED_ENTRIES_CACHED:
                self._parsed.clear()
            self._parsed[index] = entry
        return entry

    def checkpoint(self) -> tuple[str, int]:
        """The signed checkpoint note and the tree size it commits to."""
        note = self.log.checkpoint()
        return note, int(note.split("\n", 2)[1])

    def proven(self, index: int, size: int) -> ProvenEntry:
        return ProvenEntry(
            index=index,
            entry=b64encode(self.entry(index)),
            proof=[h.hex() for h in self.log.store.inclusion_proof(index, size)],
        )

    def consistency(self, since: int, size: int) -> list[str]:
        if 0 < since < size:
            return [h.hex() for h in self.log.store.consistency_proof(since, size)]
        return []

    def publish(
        self,
        kind: str,
        ref: bytes,
        entry: bytes,
        *,
        version: int | None = None,
        also: Callable[[Connection, int | None], None] | None = None,
    ) -> int:
        """Reserve (kind, ref), append the entry, then record where it went (blocking).

        The reservation's unique key refuses a second publication of the same thing, across
        server processes, before anything reaches the log. ``also`` runs in the reserving
        transaction (with None) and in the completing one (with the log index).
        """

        def _reserve(conn: Connection) -> int:
            pk = inserted_id(
                conn.execute(
                    insert(access_log_index).values(
                        kind=kind,
                        ref=ref,
                        version=version,
                        log_index=None,
                        created_at=now_s(self.clock),
                    )
                )
            )
            if also is not None:
                also(conn, None)
            return pk

        try:
            pk = self.db.transact(_reserve)
        except IntegrityError:
            raise Conflict(
                f"this {kind.replace('_', ' ')} is already published", code=f"{kind}_exists"
            ) from None
        try:
            index = self.log.append([entry])
        except BaseException:
            self.db.transact(
                lambda conn: conn.execute(
                    sa_delete(access_log_index).where(access_log_index.c.id == pk)
                )
            )
            raise

        def _complete(conn: Connection) -> None:
            conn.execute(
                update(access_log_index).where(access_log_index.c.id == pk).values(log_index=index)
            )
            if also is not None:
                also(conn, index)

        self.db.transact(_complete)
        return index

    def logged(self, kind: str, *, ref: bytes | None = None) -> list[tuple[int, int | None]]:
        """(log index, version) of published entries of one kind, in log order."""
        query = select(access_log_index.c.log_index, access_log_index.c.version).where(
            access_log_index.c.kind == kind, access_log_index.c.log_index.is_not(None)
        )
        if ref is not None:
            query = query.where(access_log_index.c.ref == ref)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(access_log_index.c.log_index)).all()
        return [(int(r.log_index), r.version) for r in rows]

    def access_entries(self, start: int) -> AccessEntries:
        """Every lawful-access entry the provider appended, from log index ``start`` on."""
        with self.db.read() as conn:
            rows = conn.execute(
                select(access_log_index.c.log_index)
                .where(
                    access_log_index.c.log_index.is_not(None),
                    access_log_index.c.log_index >= start,
                )
                .order_by(access_log_index.c.log_index)
                .limit(MAX_ENTRIES_PER_PAGE + 1)
            ).all()
        indexes = [int(r.log_index) for r in rows]
        return AccessEntries(
            entries=[
                LoggedEntry(index=i, entry=b64encode(self.entry(i)))
                for i in indexes[:MAX_ENTRIES_PER_PAGE]
            ],
            more=len(indexes) > MAX_ENTRIES_PER_PAGE,
        )
