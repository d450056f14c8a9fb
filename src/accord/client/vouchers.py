"""Safety vouchers on the client (docs/protocol/private-matching.md, steps C1-C8).

For every image attachment, before it is encrypted, the client makes one voucher against the
server's current blinded table and sends it beside the message (`extensions["vouchers"]`, one
entry per image, naming the blob it travels with). Every image takes the same steps and gives a
voucher of the same size and layout, whether or not it is in a bank: nothing here can tell,
because the client holds only blinded points.

A table is used only after its digest is found in a transparency-log entry proven included in a
checkpoint this device verified (C1); the table file is then refused unless it hashes to that
digest. A table logged as built from the one this device holds is made from that one and the
logged delta (C1d), and falls back to the whole file if the delta is refused. The matching secret
is made on first use and kept sealed in the device's store; the image counter that selects the
key epoch is kept beside it.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from accord.client.context import ClientContext
from accord.client.log_trust import ProofEncoding, decode_proof
from accord.errors import (
    AccordError,
    ConfigurationError,
    InvalidInput,
    NotFound,
    ProtocolError,
    VerificationError,
)
from accord.primitives.encoding import b64decode, b64encode
from accord.protocols.manifest import MatchingFloors
from accord.protocols.private_matching.params import DERIVATIVE_BYTES
from accord.wire.messaging import Content, MatchingSecretShare

# The matching table, its log entries and floors, the vouchers, image hashing (numpy, Pillow,
# libsodium's ristretto255) and the matching wire models are imported where an image attachment
# or a linked device needs them, so that a command that sends or receives text does not load
# them (docs/benchmarks.md, "One `accord send`").
if TYPE_CHECKING:
    from accord.protocols.detection.signals import PdqHash
    from accord.protocols.private_matching.log_entries import HashListVersion, TableDeltaRef
    from accord.protocols.private_matching.table import BlindedTable, TableDigest
    from accord.protocols.private_matching.voucher import AccountMatchingSecret, VoucherClient
    from accord.wire.matching import TableInfo

#: How long a checked table is used before asking the server again (it accepts vouchers for the
#: previous table for ten minutes after publishing a new one).
TABLE_REFRESH_S = 60.0
#: Refuse to download a table larger than this (about 1.9 million banked hashes).
MAX_TABLE_BYTES = 4 << 30
TABLES_DIR = "matching-tables"
log = logging.getLogger("accord.client.vouchers")
_AWAITING_SECRET = "matching_secret_awaited"  # noqa: S105 - a setting's name
_SHARE_PENDING = "matching_secret_share_pending"  # noqa: S105 - a setting's name


class SafetyVouchers:
    """Vouchers for one device, against the server's current (logged) table."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._maker: VoucherClient | None = None  # the table in use, checked at _checked_at
        self._maker_before: VoucherClient | None = None  # the last table checked, for reuse
        self._checked_at = float("-inf")
        self._held: dict[str, str] = {}

    # --- what the client's send path calls ----------------------------------------------------

    def prepare(self, path: Path) -> bytes | None:
        """C3-C8 for one attachment, before it is encrypted: a voucher if the file is an image
        and the server publishes a table; None otherwise."""
        if not _is_image(path):
            return None
        maker = self._voucher_client()
        if maker is None:
            return None
        pdq, derivative = _image_signal(path)
        return maker.create_voucher(pdq=pdq, derivative=derivative, epoch=self._next_epoch(maker))

    def hold(self, blob_id: str, voucher: bytes | None) -> None:
        """Keep a voucher until the message its blob goes out with is sent."""
        if voucher is not None:
            self._held[blob_id] = b64encode(voucher)

    def extension(self, content: Content) -> dict[str, Any]:
        """The send request's `vouchers` entry for this message's attachments (or nothing)."""
        items = [
            {"blob_id": ref.blob_id, "voucher": self._held.pop(ref.blob_id)}
            for ref in content.attachments
            if ref.blob_id in self._held
        ]
        if not items:
            return {}
        from accord.wire.matching import VOUCHERS_EXTENSION

        return {VOUCHERS_EXTENSION: items}

    def use_floors(self, floors: MatchingFloors) -> None:
        """Replace this device's matching floors (`matching_floors`): for a deployment that sets
        its own, or a test with a small threshold. Never called with anything from a server."""
        self._ctx.store.set_matching_floors_fields(floors.fields())
        self._maker = self._maker_before = None

    # --- for tests and the demo ---------------------------------------------------------------

    def is_synthetic(self, path: Path) -> bool:
        """Whether this device's next voucher for `path` would be synthetic: its own
        deterministic coin (probability p), which says nothing about matching."""
        maker = self._voucher_client()
        if maker is None or not _is_image(path):
            return False
        counter = self._ctx.store.matching_images()
        keys = maker.keys(maker.epoch_for_image(counter))
        return keys.is_synthetic(_image_signal(path)[0])

    # --- the table (C1) -----------------------------------------------------------------------

    def _voucher_client(self) -> VoucherClient | None:
        from accord.primitives.ristretto import POINT_BYTES
        from accord.protocols.private_matching.floors import check_params, check_table_size
        from accord.protocols.private_matching.table import TABLE_HEADER_BYTES, TableDigest
        from accord.protocols.private_matching.voucher import VoucherClient
        from accord.wire.matching import TableInfo, matching_account_id

        now = self._ctx.clock.monotonic()
        if self._maker is not None and now - self._checked_at < TABLE_REFRESH_S:
            return self._maker
        try:
            raw = self._ctx.api.request("GET", "/v1/matching/table", auth=False)
        except NotFound:  # no table published: nothing to match against
            self._maker = None
            return None
        try:
            info = TableInfo.model_validate(raw)
        except ValueError:
            raise ProtocolError("server sent a malformed matching table description") from None
        self._maker = None
        floors = matching_floors(self._ctx)
        entry = self._verify_logged(info)
        digest = TableDigest(entry.digest_bytes)
        current = self._maker_before
        if current is None or current.table_digest != digest:
            check_table_size((info.size - TABLE_HEADER_BYTES) // POINT_BYTES, floors)
            table = self._load_table(digest, info.size, entry.delta)
            check_params(table.params, table.n_slots, floors)
            identity = self._ctx.identity
            current = VoucherClient(
                table=table,
                table_digest=digest,
                account_id=matching_account_id(identity.account_name),
                secret=self._secret(),
            )
        self._maker = self._maker_before = current
        self._checked_at = self._ctx.clock.monotonic()
        return current

    def _verify_logged(self, info: TableInfo) -> HashListVersion:
        """The table's log entry (its digest, and the delta it was built as), proven included
        in a checkpoint this device accepted (transparency steps V1-V4), after checking that no
        later table is logged up to that checkpoint (every entry after it is read and verified
        against the same proof)."""
        from accord.protocols.private_matching.log_entries import (
            HashListVersion,
            parse_matching_entry,
        )

        log_trust = self._ctx.log_trust
        checkpoint = log_trust.accept_checkpoint(info.checkpoint)
        entry = b64decode(info.log_entry, max_bytes=32_768, what="log entry")
        proof = decode_proof(info.inclusion_proof, ProofEncoding.BASE64)
        try:
            parsed = parse_matching_entry(entry)
            later = log_trust.entries_after(
                entry, info.log_index, checkpoint, proof, keep=_names_a_table
            )
        except (VerificationError, InvalidInput):
            raise VerificationError(
                "the matching table is not in the transparency log", code="unlogged_table"
            ) from None
        if not isinstance(parsed, HashListVersion) or parsed.table_digest != info.digest:
            raise VerificationError(
                "the matching table is not the one the log names", code="unlogged_table"
            )
        if later:
            raise VerificationError(
                f"the server offers matching table {parsed.table_version}, but the log holds "
                f"{len(later)} later table version(s)",
                code="matching_table_not_latest",
            )
        return parsed

    def _load_table(
        self, digest: TableDigest, size: int, delta: TableDeltaRef | None
    ) -> BlindedTable:
        """The table file, from this device's cache, made from the cached previous table and
        the logged delta (C1d), or downloaded whole; read slot by slot; refused unless its
        SHA-256 is the logged digest. The download streams to disk, so a large table never sits
        in memory."""
        from accord.protocols.private_matching.table import BlindedTable

        folder = self._ctx.home / TABLES_DIR
        cached = folder / f"{digest.hex()}.table"
        if cached.is_file():
            try:
                return BlindedTable.open_file(cached, expected_digest=digest)
            except AccordError:
                cached.unlink(missing_ok=True)
        if delta is not None:
            table = self._table_from_delta(digest, delta, cached)
            if table is not None:
                return table
        if not 0 < size <= MAX_TABLE_BYTES:
            raise ProtocolError("matching table size out of limits")
        folder.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        try:
            self._ctx.api.download(f"/v1/matching/tables/{digest.hex()}", tmp, size)
            table = BlindedTable.open_file(tmp, expected_digest=digest)
            for old in folder.glob("*.table"):
                old.unlink(missing_ok=True)
            tmp.replace(cached)
        finally:
            tmp.unlink(missing_ok=True)
        return table

    def _table_from_delta(
        self, digest: TableDigest, delta: TableDeltaRef, cached: Path
    ) -> BlindedTable | None:
        """C1d: the logged table `digest`, made from this device's copy of the table the log
        entry names as its base and the delta the entry names; None (and the whole table is
        downloaded) if there is no such copy or the delta is refused (`table_delta_mismatch`:
        not the logged delta, or a result that is not the logged table)."""
        from accord.protocols.private_matching.delta import (
            DELTA_MISMATCH,
            DeltaDigest,
            apply_delta,
            max_delta_bytes,
        )
        from accord.protocols.private_matching.table import (
            POINT_BYTES,
            TABLE_HEADER_BYTES,
            BlindedTable,
            TableDigest,
        )

        base_path = cached.with_name(f"{delta.base_digest}.table")
        if not base_path.is_file():
            return None
        n_slots = (base_path.stat().st_size - TABLE_HEADER_BYTES) // POINT_BYTES
        tmp_delta, tmp = cached.with_suffix(".delta.tmp"), cached.with_suffix(".tmp")
        try:
            self._ctx.api.download(
                f"/v1/matching/tables/{digest.hex()}/delta?from={delta.base_digest}",
                tmp_delta,
                max_delta_bytes(max(n_slots, 0)),
            )
            apply_delta(
                base_path,
                tmp_delta,
                tmp,
                base=TableDigest(bytes.fromhex(delta.base_digest)),
                new=digest,
                expected_delta=DeltaDigest(bytes.fromhex(delta.delta_digest)),
            )
            try:
                table = BlindedTable.open_file(tmp, expected_digest=digest)
            except AccordError:
                raise VerificationError(
                    "the table made from the delta is not the logged table", code=DELTA_MISMATCH
                ) from None
            base_path.unlink(missing_ok=True)
            tmp.replace(cached)
            return table
        except AccordError as exc:
            log.warning("table delta refused, downloading the whole table: %s", exc.diagnostics())
            return None
        finally:
            tmp_delta.unlink(missing_ok=True)
            tmp.unlink(missing_ok=True)

    # --- the account's secret and image counter (C2) ------------------------------------------

    def _secret(self) -> AccountMatchingSecret:
        from accord.protocols.private_matching.voucher import AccountMatchingSecret

        store = self._ctx.store
        with store.transaction():
            raw = store.matching_secret()
            if raw is None:
                if store.get_meta(_AWAITING_SECRET):
                    raise ConfigurationError(
                        "this device has not yet received its account's matching secret from "
                        "the device that approved it: run 'accord receive' once that device "
                        "has been online (text messages work meanwhile)",
                        code="matching_secret_pending",
                    )
                raw = AccountMatchingSecret.generate().value
                store.set_matching_secret(raw)
        return AccountMatchingSecret(raw)

    def _next_epoch(self, maker: VoucherClient) -> int:
        store = self._ctx.store
        with store.transaction():
            counter = store.matching_images()
            store.set_matching_images(counter + 1)
        return maker.epoch_for_image(counter)

    # --- sharing the secret with a linked device (C2) -----------------------------------------

    def await_account_secret(self) -> None:
        """A device that joins an existing account makes no voucher until the account's secret
        arrives from the device that approved it (`adopt`)."""
        self._ctx.store.set_meta(_AWAITING_SECRET, "1")

    def share_with(self, device_id: str) -> None:
        """Remember to send the account's secret to a device this one approved (sent once this
        device holds it: a device still waiting for it passes it on after it arrives)."""
        store = self._ctx.store
        if not store.get_meta(_AWAITING_SECRET):
            self._secret()  # made now if this device never needed it
        with store.transaction():
            pending = set(json.loads(store.get_meta(_SHARE_PENDING) or "[]"))
            store.set_meta(_SHARE_PENDING, json.dumps(sorted(pending | {device_id})))

    def pending_share(self) -> tuple[MatchingSecretShare, frozenset[str]] | None:
        """The payload to send this account's other devices, and the approved devices still
        waiting for it (None if none is)."""
        store = self._ctx.store
        pending = frozenset(json.loads(store.get_meta(_SHARE_PENDING) or "[]"))
        raw = store.matching_secret()
        if not pending or raw is None:
            return None
        share = MatchingSecretShare(
            sender=self._ctx.identity.ref, secret=b64encode(raw), images=store.matching_images()
        )
        return share, pending

    def shared(self, device_ids: Iterable[str]) -> None:
        store = self._ctx.store
        with store.transaction():
            pending = set(json.loads(store.get_meta(_SHARE_PENDING) or "[]"))
            store.set_meta(_SHARE_PENDING, json.dumps(sorted(pending - set(device_ids))))

    def adopt(self, share: MatchingSecretShare) -> None:
        """Take the account's secret sent by another device of the account (already checked to
        be one), and continue its image count. A device that already holds a secret keeps it
        (the first one wins; a second device never replaces a count in progress). Runs in the
        caller's store transaction."""
        from accord.protocols.private_matching.voucher import AccountMatchingSecret

        secret = AccountMatchingSecret(
            b64decode(share.secret, max_bytes=32, what="matching secret")
        ).value
        store = self._ctx.store
        own = store.matching_secret()
        if own is None:
            store.set_matching_secret(secret)
        elif not hmac.compare_digest(own, secret):
            return
        store.set_matching_images(max(store.matching_images(), share.images))
        store.set_meta(_AWAITING_SECRET, "")
        self._maker = self._maker_before = None


def matching_floors(ctx: ClientContext) -> MatchingFloors:
    """The weakest matching table this device accepts: the pinned deployment manifest's
    floors; in insecure development mode, the floors its user set (kept in the device's
    store), else the defaults derived in docs/protocol/private-matching.md. Never from the
    server."""
    manifest = ctx.log_trust.manifest()
    if manifest is not None:
        return manifest.matching_floors
    fields = ctx.store.matching_floors_fields()
    if fields is None:
        from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS

        return DEFAULT_MATCHING_FLOORS
    try:
        return MatchingFloors(**fields)
    except TypeError:
        raise ConfigurationError(f"the matching floors in {ctx.home} are malformed") from None


def _names_a_table(entry: bytes) -> bool:
    """Whether a log entry is (or claims to be) a table version: its canonical JSON has that
    type (inside a JSON string the quotes would be escaped). A malformed one counts too."""
    from accord.protocols.private_matching.log_entries import TAG_HASH_LIST_VERSION

    return b'"type":"' + TAG_HASH_LIST_VERSION.encode() + b'"' in entry


def _is_image(path: Path) -> bool:
    from accord.protocols.detection.hashers import sniff_kind

    try:
        with path.open("rb") as f:
            return sniff_kind(f.read(16)) == "image"
    except OSError:
        return False


def _image_signal(path: Path) -> tuple[PdqHash, bytes]:
    """The image's PDQ hash and its 64 x 64 derivative. An image this device cannot decode gets
    a random hash (it never matches) and a blank derivative, so it still has a voucher of the
    same size and layout."""
    from accord.protocols.detection.hashers import hash_file
    from accord.protocols.detection.signals import PdqHash
    from accord.protocols.private_matching.voucher import make_visual_derivative

    try:
        hashes = hash_file(path, video=False)
    except AccordError:
        hashes = None
    if hashes is None or hashes.pdq is None or hashes.image is None:
        return PdqHash(os.urandom(32)), bytes(DERIVATIVE_BYTES)
    return hashes.pdq.hash, make_visual_derivative(hashes.image.pixels)
