"""Safety vouchers on the client (docs/protocol/private-matching.md, steps C1-C8).

For every image attachment, before it is encrypted, the client makes one voucher against the
server's current blinded table and sends it beside the message (`extensions["vouchers"]`, one
entry per image, naming the blob it travels with). Every image takes the same steps and gives a
voucher of the same size and layout, whether or not it is in a bank: nothing here can tell,
because the client holds only blinded points.

A table is used only after its digest is found in a transparency-log entry proven included in a
checkpoint this device verified (C1); the table file is then refused unless it hashes to that
digest. The matching secret is made on first use and kept sealed in the device's store; the
image counter that selects the key epoch is kept beside it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from accord.client.context import ClientContext
from accord.client.log_trust import ProofEncoding, decode_proof
from accord.errors import AccordError, InvalidInput, NotFound, ProtocolError, VerificationError
from accord.primitives.encoding import b64decode, b64encode
from accord.protocols.detection.hashers import hash_file, sniff_kind
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.log_entries import HashListVersion, parse_matching_entry
from accord.protocols.private_matching.params import DERIVATIVE_BYTES
from accord.protocols.private_matching.table import BlindedTable, TableDigest
from accord.protocols.private_matching.voucher import (
    AccountMatchingSecret,
    VoucherClient,
    make_visual_derivative,
)
from accord.wire.matching import VOUCHERS_EXTENSION, TableInfo, matching_account_id
from accord.wire.messaging import Content

#: How long a checked table is used before asking the server again (it accepts vouchers for the
#: previous table for ten minutes after publishing a new one).
TABLE_REFRESH_S = 60.0
#: Refuse to download a table larger than this (about 1.9 million banked hashes).
MAX_TABLE_BYTES = 4 << 30
TABLES_DIR = "matching-tables"


class SafetyVouchers:
    """Vouchers for one device, against the server's current (logged) table."""

    def __init__(self, ctx: ClientContext) -> None:
        self._ctx = ctx
        self._maker: VoucherClient | None = None
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
        return {VOUCHERS_EXTENSION: items} if items else {}

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
        current = self._maker
        if current is None or current.table_digest.hex() != info.digest:
            digest = self._verify_logged(info)
            table = self._load_table(digest, info.size)
            identity = self._ctx.identity
            current = VoucherClient(
                table=table,
                table_digest=digest,
                account_id=matching_account_id(identity.account_name, identity.device_id),
                secret=self._secret(),
            )
        self._maker = current
        self._checked_at = self._ctx.clock.monotonic()
        return current

    def _verify_logged(self, info: TableInfo) -> TableDigest:
        """The table's digest, taken from a log entry proven included in a checkpoint this
        device accepted (transparency steps V1-V4)."""
        log_trust = self._ctx.log_trust
        checkpoint = log_trust.accept_checkpoint(info.checkpoint)
        entry = b64decode(info.log_entry, max_bytes=32_768, what="log entry")
        proof = decode_proof(info.inclusion_proof, ProofEncoding.BASE64)
        try:
            log_trust.verify_inclusion(entry, info.log_index, checkpoint, proof)
            parsed = parse_matching_entry(entry)
        except (VerificationError, InvalidInput):
            raise VerificationError(
                "the matching table is not in the transparency log", code="unlogged_table"
            ) from None
        if not isinstance(parsed, HashListVersion) or parsed.table_digest != info.digest:
            raise VerificationError(
                "the matching table is not the one the log names", code="unlogged_table"
            )
        return TableDigest(parsed.digest_bytes)

    def _load_table(self, digest: TableDigest, size: int) -> BlindedTable:
        """The table file, from this device's cache or the server; refused unless its SHA-256
        is the logged digest."""
        folder = self._ctx.home / TABLES_DIR
        cached = folder / f"{digest.hex()}.table"
        if cached.is_file():
            try:
                return BlindedTable.parse(cached.read_bytes(), expected_digest=digest)
            except AccordError:
                cached.unlink(missing_ok=True)
        if not 0 < size <= MAX_TABLE_BYTES:
            raise ProtocolError("matching table size out of limits")
        data = self._ctx.api.request_raw("GET", f"/v1/matching/tables/{digest.hex()}").content
        table = BlindedTable.parse(data, expected_digest=digest)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.table"):
            old.unlink(missing_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(cached)
        return table

    # --- the device's secret and image counter (C2) -------------------------------------------

    def _secret(self) -> AccountMatchingSecret:
        store = self._ctx.store
        with store.transaction():
            raw = store.matching_secret()
            if raw is None:
                raw = AccountMatchingSecret.generate().value
                store.set_matching_secret(raw)
        return AccountMatchingSecret(raw)

    def _next_epoch(self, maker: VoucherClient) -> int:
        store = self._ctx.store
        with store.transaction():
            counter = store.matching_images()
            store.set_matching_images(counter + 1)
        return maker.epoch_for_image(counter)


def _is_image(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return sniff_kind(f.read(16)) == "image"
    except OSError:
        return False


def _image_signal(path: Path) -> tuple[PdqHash, bytes]:
    """The image's PDQ hash and its 64 x 64 derivative. An image this device cannot decode gets
    a random hash (it never matches) and a blank derivative, so it still has a voucher of the
    same size and layout."""
    try:
        hashes = hash_file(path, video=False)
    except AccordError:
        hashes = None
    if hashes is None or hashes.pdq is None or hashes.image is None:
        return PdqHash(os.urandom(32)), bytes(DERIVATIVE_BYTES)
    return hashes.pdq.hash, make_visual_derivative(hashes.image.pixels)
