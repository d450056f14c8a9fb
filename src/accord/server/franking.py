"""The server's side of franking (docs/protocol/franking.md, steps 3 and 5).

Franking keys rotate: the key for a message is the one of its rotation period (key id = the
period's number in hex), created by whichever server process first needs it, and shared through
the database so every process tags and verifies alike. Keys older than the retention are
deleted; a report of a message tagged under a deleted key fails (`franking_key_expired`).
No per-message state is kept: the tag travels with the message.

The keys are stored sealed under the server's secrets key (`server.secrets`), with the table and
key id bound, so a copy of the database alone cannot tag a message. Rows written in plain form
by an older version are sealed when the server starts (`FRANKING_SECRETS`, `seal_plain_rows`); after
that a plain row is refused, never used.
"""

from __future__ import annotations

import os
import threading

from anyio import to_thread
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import ConfigurationError, VerificationError
from accord.primitives.encoding import b64encode
from accord.protocols.franking import SERVER_KEY_BYTES, TagContext, tag_commitment, verify_tag
from accord.server.secrets import SealedColumn, SecretsKey
from accord.storage.db import Database
from accord.storage.schema import franking_keys
from accord.wire.franking import FrankingStamp

DAY_MS = 86_400_000
FRANKING_ROTATE_MS = 7 * DAY_MS
FRANKING_RETAIN_MS = 365 * DAY_MS


FRANKING_SECRETS = SealedColumn(
    table=franking_keys,
    row_id=franking_keys.c.key_id,
    secret=franking_keys.c.secret,
    plain_bytes=SERVER_KEY_BYTES,
)


class FrankingKeyRing:
    def __init__(
        self,
        db: Database,
        *,
        secrets: SecretsKey,
        rotate_ms: int = FRANKING_ROTATE_MS,
        retain_ms: int = FRANKING_RETAIN_MS,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.secrets = secrets
        self.clock = clock
        self.rotate_ms = rotate_ms
        self.retain_ms = retain_ms
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def _open(self, key_id: str, stored: bytes) -> bytes:
        """The key from its stored (sealed) form; a row that does not open is never used."""
        secret = FRANKING_SECRETS.open(self.secrets, stored, key_id)
        if len(secret) != SERVER_KEY_BYTES:
            raise ConfigurationError("a stored franking key has the wrong length")
        return secret

    def _key_id(self, at_ms: int) -> str:
        return format(at_ms // self.rotate_ms, "x")

    def key_for(self, at_ms: int) -> tuple[str, bytes]:
        """The key of the period containing `at_ms`, created if this is its first use."""
        key_id = self._key_id(at_ms)
        with self._lock:
            cached = self._keys.get(key_id)
        if cached is not None:
            return key_id, cached

        def _tx(conn: Connection) -> bytes:
            row = conn.execute(
                select(franking_keys.c.secret).where(franking_keys.c.key_id == key_id)
            ).first()
            if row is not None:
                return self._open(key_id, bytes(row.secret))
            secret = os.urandom(SERVER_KEY_BYTES)
            sealed = FRANKING_SECRETS.seal(self.secrets, secret, key_id)
            conn.execute(
                insert(franking_keys).values(key_id=key_id, secret=sealed, created_at=at_ms)
            )
            conn.execute(
                delete(franking_keys).where(franking_keys.c.created_at < at_ms - self.retain_ms)
            )
            return secret

        try:
            secret = self.db.transact(_tx)
        except IntegrityError:  # another process created it first
            secret = self.db.transact(_tx)
        with self._lock:
            self._keys[key_id] = secret
        return key_id, secret

    async def load(self, key_id: str) -> None:
        """Make sure `lookup(key_id)` answers from memory (reads the database if needed)."""
        with self._lock:
            if key_id in self._keys:
                return

        def _rd(conn: Connection) -> bytes | None:
            row = conn.execute(
                select(franking_keys.c.secret).where(franking_keys.c.key_id == key_id)
            ).first()
            return self._open(key_id, bytes(row.secret)) if row is not None else None

        secret = await self.db.read_async(_rd)
        if secret is not None:
            with self._lock:
                self._keys[key_id] = secret

    def lookup(self, key_id: str) -> bytes:
        """The key with this id, if loaded (see `load`) and not retired."""
        with self._lock:
            secret = self._keys.get(key_id)
        period_end_ms = (int(key_id, 16) + 1) * self.rotate_ms
        if period_end_ms < now_ms(self.clock) - self.retain_ms:
            secret = None  # retired, even if this process still holds it
        if secret is None:
            raise VerificationError(
                "the message was tagged under a franking key that has been retired",
                code="franking_key_expired",
            )
        return secret

    def stamp(self, commitment: bytes, context: TagContext) -> FrankingStamp:
        key_id, secret = self.key_for(context.accepted_at_ms)
        tag = tag_commitment(secret, commitment, context)
        return FrankingStamp(commitment=b64encode(commitment), key_id=key_id, tag=b64encode(tag))

    async def stamp_async(self, commitment: bytes, context: TagContext) -> FrankingStamp:
        """`stamp` without blocking the event loop when the period's key is not cached yet."""
        with self._lock:
            cached = self._key_id(context.accepted_at_ms) in self._keys
        if cached:
            return self.stamp(commitment, context)
        return await to_thread.run_sync(self.stamp, commitment, context)

    def verify(self, commitment: bytes, context: TagContext, key_id: str, tag: bytes) -> None:
        verify_tag(self.lookup(key_id), commitment, context, tag)
