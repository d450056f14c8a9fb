"""Records under a warrant (docs/lawful-access.md §5, flow steps 7-8): a target's devices
deliver the records they sealed to the agency (the provider holds no key to them), inside the
window only; the agency retrieves them, and the delivery metadata of a metadata-scope warrant,
with a fetch token it can only get by opening a challenge sealed to its logged key."""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, insert, select

from accord.clock import SYSTEM_CLOCK, Clock, now_s
from accord.errors import AuthenticationError, AuthorizationError, Conflict, InvalidInput, NotFound
from accord.primitives.encoding import b64encode
from accord.primitives.hpke import hpke_seal
from accord.protocols.access.log_entries import AgencyKeyEntry
from accord.protocols.access.records import SealedRecord, check_record_upload
from accord.protocols.access.warrant import SignedWarrant, Warrant
from accord.server.access.ledger import AccessLedger
from accord.server.messaging import AuthedDevice
from accord.server.secrets import SecretsKey, read_sealed_file
from accord.storage.schema import access_delivery_metadata, access_records, access_warrants
from accord.wire.access import (
    MAX_METADATA_PER_PAGE,
    MAX_RECORDS_PER_PAGE,
    AgencyChallenge,
    AgencyWarrant,
    DeliveryMetadata,
    LoggedEntry,
    MetadataPage,
    RecordPage,
    RecordsStored,
    StoredRecord,
    agency_challenge_info,
)

ACCESS_KEY_FILE = "access-token-key"
AGENCY_TOKEN_TTL_S = 600
AGENCY_TOKEN_PURPOSE = b"accord-agency-token-v1\n"
_AGENCY_TOKEN_BYTES = 32 + 8 + 32
MAX_WARRANTS_CACHED = 10_000


def load_or_create_secret(data_dir: Path, secrets_key: SecretsKey) -> bytes:
    """DATA_DIR/access-token-key (mode 0600): the MAC key of agency fetch tokens, sealed under
    the secrets key like the log and review keys (whoever holds it can mint fetch tokens for
    any warrant id). A plain file an older version wrote is sealed in place."""
    text = read_sealed_file(
        data_dir / ACCESS_KEY_FILE,
        secrets_key,
        make=lambda: (secrets.token_hex(32) + "\n").encode(),
        plain_check=_is_plain_hex_key,
    )
    try:
        secret = bytes.fromhex(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        secret = b""
    if len(secret) != 32:
        raise InvalidInput(f"{data_dir / ACCESS_KEY_FILE} is not a 32-byte hex key")
    return secret


def _is_plain_hex_key(raw: bytes) -> bool:
    """The key as versions before sealing wrote it: 64 hex digits and a line break."""
    text = raw.strip()
    return len(text) == 64 and all(c in b"0123456789abcdefABCDEF" for c in text)


def make_agency_token(secret: bytes, warrant_id: bytes, expires: int) -> bytes:
    """warrant id (32) || expiry (8, big-endian) || HMAC-SHA256(secret, purpose || both)."""
    body = warrant_id + expires.to_bytes(8, "big")
    return body + hmac.new(secret, AGENCY_TOKEN_PURPOSE + body, "sha256").digest()


def check_agency_token(secret: bytes, warrant_id: bytes, token: str, *, now: int) -> None:
    """The bearer opened the challenge for this warrant, and it has not expired. The MAC and
    the warrant id are compared in constant time; every failure looks the same."""
    raw = b""
    if isinstance(token, str) and len(token) <= 128:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raw = b""
    if len(raw) != _AGENCY_TOKEN_BYTES:
        raise AuthenticationError("agency token required")
    body, mac = raw[:40], raw[40:]
    expected = hmac.new(secret, AGENCY_TOKEN_PURPOSE + body, "sha256").digest()
    good = hmac.compare_digest(mac, expected) & hmac.compare_digest(body[:32], warrant_id)
    if not good or int.from_bytes(body[32:], "big") <= now:
        raise AuthenticationError("agency token required")


class AgencyRecords:
    def __init__(
        self,
        ledger: AccessLedger,
        data_dir: Path,
        *,
        secrets_key: SecretsKey,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.ledger = ledger
        self.db = ledger.db
        self.clock = clock
        self._secret = load_or_create_secret(data_dir, secrets_key)
        self._warrants: dict[int, Warrant] = {}  # warrant pk -> warrant

    def _warrant(self, row: Any) -> Warrant:
        warrant = self._warrants.get(int(row.id))
        if warrant is None:
            warrant = SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")).warrant
            if len(self._warrants) > MAX_WARRANTS_CACHED:
                self._warrants.clear()
            self._warrants[int(row.id)] = warrant
        return warrant

    # --- from the target's devices (flow step 7) ---------------------------------------------

    def store_records(self, dev: AuthedDevice, records: Sequence[SealedRecord]) -> RecordsStored:
        """Flow step 7: keep a device's sealed records for a warrant on its own account, inside
        the window only. Re-sending a stored record is harmless; a different one at the same
        place is refused."""
        now = now_s(self.clock)

        def _tx(conn: Connection) -> int:
            stored = 0
            rows: dict[bytes, Any] = {}
            for record in records:
                row = rows.get(record.warrant_id)
                if row is None:
                    row = conn.execute(
                        select(access_warrants).where(
                            access_warrants.c.warrant_id == record.warrant_id
                        )
                    ).first()
                    if (
                        row is None
                        or row.commitment_index is None
                        or row.target_account_id != dev.account_id
                    ):
                        raise NotFound()
                    rows[record.warrant_id] = row
                if not hmac.compare_digest(record.device_id.encode(), dev.device_id.encode()):
                    raise AuthorizationError(
                        "a device uploads its own records only", code="record_wrong_device"
                    )
                check_record_upload(self._warrant(row), record, now=now)
                data = record.to_bytes()
                existing = conn.execute(
                    select(access_records.c.record).where(
                        access_records.c.warrant_pk == row.id,
                        access_records.c.device_id == record.device_id,
                        access_records.c.seq == record.seq,
                    )
                ).first()
                if existing is not None:
                    if not hmac.compare_digest(bytes(existing.record), data):
                        raise Conflict(
                            "another record is stored at this sequence number",
                            code="record_conflict",
                        )
                    continue
                conn.execute(
                    insert(access_records).values(
                        warrant_pk=row.id,
                        device_id=record.device_id,
                        seq=record.seq,
                        record=data,
                        received_at=now,
                    )
                )
                stored += 1
            return stored

        return RecordsStored(stored=self.db.transact(_tx))

    # --- to the agency (flow step 8) ------------------------------------------------------------

    def _warrant_row(self, warrant_id: bytes) -> Any:
        with self.db.read() as conn:
            row = conn.execute(
                select(access_warrants).where(access_warrants.c.warrant_id == warrant_id)
            ).first()
        if row is None or row.commitment_index is None:
            raise NotFound()
        return row

    def challenge(self, warrant_id: bytes) -> AgencyChallenge:
        """A fetch token for one warrant, sealed to the agency key the warrant names: whoever
        opens it holds that key. The token is a MAC, so no server state is kept."""
        row = self._warrant_row(warrant_id)
        key_entry: AgencyKeyEntry = self.ledger.parsed_entry(int(row.agency_key_index))
        key = key_entry.signed.key
        expires = now_s(self.clock) + AGENCY_TOKEN_TTL_S
        token = make_agency_token(self._secret, warrant_id, expires)
        sealed = hpke_seal(
            key.public_key,
            token,
            info=agency_challenge_info(),
            aad=warrant_id,
            aead=key.aead,
        )
        return AgencyChallenge(
            enc=b64encode(sealed.enc), ciphertext=b64encode(sealed.ciphertext), expires_at=expires
        )

    def check_token(self, warrant_id: bytes, token: str) -> None:
        check_agency_token(self._secret, warrant_id, token, now=now_s(self.clock))

    def warrant(self, warrant_id: bytes) -> AgencyWarrant:
        row = self._warrant_row(warrant_id)
        ki = int(row.agency_key_index)
        return AgencyWarrant(
            signed_warrant=SignedWarrant.from_bytes(row.signed_warrant.encode("utf-8")).to_obj(),
            commitment=bytes(row.commitment).hex(),
            commitment_index=int(row.commitment_index),
            agency_key=LoggedEntry(index=ki, entry=b64encode(self.ledger.entry(ki))),
        )

    def records(self, warrant_id: bytes, *, after: int, limit: int) -> RecordPage:
        """Flow step 8: the records in the order they were stored."""
        rows, more = self._page(access_records, warrant_id, after, min(limit, MAX_RECORDS_PER_PAGE))
        return RecordPage(
            records=[
                StoredRecord(
                    id=int(r.id),
                    received_at=int(r.received_at),
                    record=SealedRecord.from_bytes(bytes(r.record)).to_obj(),
                )
                for r in rows
            ],
            more=more,
        )

    def metadata(self, warrant_id: bytes, *, after: int, limit: int) -> MetadataPage:
        rows, more = self._page(
            access_delivery_metadata, warrant_id, after, min(limit, MAX_METADATA_PER_PAGE)
        )
        return MetadataPage(
            items=[
                DeliveryMetadata(
                    id=int(r.id),
                    direction=r.direction,
                    counterpart=r.counterpart,
                    at=int(r.occurred_at),
                    size=int(r.size),
                )
                for r in rows
            ],
            more=more,
        )

    def _page(
        self, table: Table, warrant_id: bytes, after: int, limit: int
    ) -> tuple[Sequence[Any], bool]:
        """A warrant's rows of `table` after id `after`, in id order; and whether more follow."""
        row = self._warrant_row(warrant_id)
        limit = max(1, limit)
        with self.db.read() as conn:
            rows = conn.execute(
                select(table)
                .where(table.c.warrant_pk == row.id, table.c.id > after)
                .order_by(table.c.id)
                .limit(limit + 1)
            ).all()
        return rows[:limit], len(rows) > limit
