"""The server side: open vouchers, keep shares per account, and act only past the threshold.

`ThresholdMatcher` is a pure state machine over a `ShareStore` (an interface; the in-memory
implementation is here, a durable one belongs to the storage layer). For each voucher, in order:

1. Parse strictly (`parse_voucher_unverified`): exact size, valid points.
2. Refuse a voucher made for another table version or bound to another account
   (`ProtocolError`), and a voucher id already seen for the account (`ProtocolError`).
3. For each band, compute alpha * Q and try both wraps; stop at the first that opens. If none
   opens the image did not match, and nothing about it is kept (beyond its voucher id).
4. Open the outer layer with the unwrapped per-image key (`DecryptionError` if it was tampered
   with) and keep the share, its detection tag and the still-encrypted inner payload. A share
   whose x was already seen (the same image sent again) adds nothing.
5. If the account's voucher key for that epoch is already known, open the inner payload at once
   and re-check it (step 7). Otherwise, once the epoch holds at least t shares, identify the real
   ones with the detection code; with at least t real shares rebuild the Shamir secret, derive the
   voucher key and check it by opening the inner payloads (AES-GCM authenticates).
6. Synthetic shares are discarded; their inner payloads cannot be opened by anyone.
7. Every opened inner payload's full PDQ hash is re-checked against the bank with the true
   Hamming threshold (`bank_check`): band collisions with unrelated images are discarded there.
"""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accord.errors import ConfigurationError, DecryptionError, InvalidInput, ProtocolError
from accord.primitives.ristretto import multiply
from accord.primitives.shamir import recover_secret
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.share_detection import identify_real_rows
from accord.protocols.private_matching.table import BlindedTable, TableSecret
from accord.protocols.private_matching.voucher import (
    _ZERO_NONCE,
    OpenedShare,
    UnverifiedVoucher,
    account_tag,
    open_inner_payload,
    parse_outer_plaintext,
    parse_voucher_unverified,
    voucher_key_from_secret,
    wrap_key,
)


class ShareStore(ABC):
    """Per-account server state. Implementations must make each method atomic."""

    @abstractmethod
    def record_voucher_id(self, account_id: bytes, voucher_id: bytes) -> bool:
        """Remember a voucher id; False if the account already sent it."""

    @abstractmethod
    def add_share(self, account_id: bytes, share: OpenedShare) -> bool:
        """Keep an opened share; False if the epoch already holds a share with the same x."""

    @abstractmethod
    def shares(self, account_id: bytes, epoch: int) -> list[OpenedShare]: ...

    @abstractmethod
    def voucher_key(self, account_id: bytes, epoch: int) -> bytes | None: ...

    @abstractmethod
    def set_voucher_key(self, account_id: bytes, epoch: int, key: bytes) -> None: ...


@dataclass
class InMemoryShareStore(ShareStore):
    seen: dict[bytes, set[bytes]] = field(default_factory=dict)
    opened: dict[tuple[bytes, int], dict[int, OpenedShare]] = field(default_factory=dict)
    keys: dict[tuple[bytes, int], bytes] = field(default_factory=dict)

    def record_voucher_id(self, account_id: bytes, voucher_id: bytes) -> bool:
        ids = self.seen.setdefault(account_id, set())
        if voucher_id in ids:
            return False
        ids.add(voucher_id)
        return True

    def add_share(self, account_id: bytes, share: OpenedShare) -> bool:
        by_x = self.opened.setdefault((account_id, share.epoch), {})
        if share.share.x in by_x:
            return False
        by_x[share.share.x] = share
        return True

    def shares(self, account_id: bytes, epoch: int) -> list[OpenedShare]:
        return list(self.opened.get((account_id, epoch), {}).values())

    def voucher_key(self, account_id: bytes, epoch: int) -> bytes | None:
        return self.keys.get((account_id, epoch))

    def set_voucher_key(self, account_id: bytes, epoch: int, key: bytes) -> None:
        self.keys[(account_id, epoch)] = key


@dataclass(frozen=True, slots=True)
class ConfirmedMatch:
    """An opened inner payload whose full PDQ hash is within the bank's threshold."""

    voucher_id: bytes
    pdq: PdqHash
    derivative: bytes

    def __repr__(self) -> str:
        return "ConfirmedMatch(...)"


@dataclass(frozen=True, slots=True)
class VoucherOutcome:
    opened: bool
    duplicate: bool = False
    threshold_crossed: bool = False
    confirmed: tuple[ConfirmedMatch, ...] = ()
    discarded_band_collisions: int = 0


BankCheck = Callable[[PdqHash], bool]


def open_outer_unverified(
    voucher: UnverifiedVoucher, secret: TableSecret, table: BlindedTable
) -> OpenedShare | None:
    """Steps 3-4: the share inside a voucher, or None if no band matched."""
    for q, wraps in voucher.bands:
        key = wrap_key(multiply(secret.alpha, q))
        aead = AESGCM(key)
        for wrap in wraps:
            try:
                k_img = aead.decrypt(_ZERO_NONCE, wrap, voucher.header)
            except InvalidTag:
                continue
            try:
                plaintext = AESGCM(k_img).decrypt(_ZERO_NONCE, voucher.outer, voucher.header)
            except InvalidTag:
                raise DecryptionError("voucher payload does not decrypt") from None
            return parse_outer_plaintext(voucher, plaintext, table.params)
    return None


class ThresholdMatcher:
    def __init__(
        self,
        *,
        table: BlindedTable,
        secret: TableSecret,
        store: ShareStore | None = None,
        bank_check: BankCheck,
    ) -> None:
        """`store` may be left out when every call passes its own (`record_voucher(store=...)`,
        as a server does with a store bound to its transaction)."""
        if not hmac.compare_digest(secret.public.value, table.public.value):
            raise InvalidInput("the secret does not belong to this table")
        self.table = table
        self.params = table.params
        self._digest = table.digest().value
        self._secret = secret
        self._store = store
        self._bank_check = bank_check

    def check_voucher(self, *, account_id: bytes, voucher: bytes) -> UnverifiedVoucher:
        """Steps 1-2 without the store: strict parse, table version and account binding."""
        parsed = parse_voucher_unverified(voucher, self.params)
        if not hmac.compare_digest(parsed.table_digest, self._digest):
            raise ProtocolError("voucher made for another table version")
        if not hmac.compare_digest(parsed.account_tag, account_tag(account_id)):
            raise ProtocolError("voucher bound to another account")
        return parsed

    def open_voucher(self, voucher: UnverifiedVoucher) -> OpenedShare | None:
        """Steps 3-4 without the store: the share inside, or None if no band matched. Pure
        computation, so a server can run it outside its database transaction."""
        return open_outer_unverified(voucher, self._secret, self.table)

    def record_voucher(
        self,
        *,
        account_id: bytes,
        voucher_id: bytes,
        opened: OpenedShare | None,
        store: ShareStore | None = None,
    ) -> VoucherOutcome:
        """Steps 2 (replay) and 4-7 against the store (`store` overrides the matcher's own, e.g.
        one bound to the caller's transaction)."""
        store = store if store is not None else self._own_store()
        if not store.record_voucher_id(account_id, voucher_id):
            raise ProtocolError("voucher already received")
        return self._record_opened(account_id, opened, store)

    def process_voucher(self, *, account_id: bytes, voucher: bytes) -> VoucherOutcome:
        store = self._own_store()
        parsed = self.check_voucher(account_id=account_id, voucher=voucher)
        if not store.record_voucher_id(account_id, parsed.voucher_id):
            raise ProtocolError("voucher already received")
        return self._record_opened(account_id, self.open_voucher(parsed), store)

    def _own_store(self) -> ShareStore:
        if self._store is None:
            raise ConfigurationError("this matcher has no share store of its own")
        return self._store

    def _record_opened(
        self, account_id: bytes, opened: OpenedShare | None, store: ShareStore
    ) -> VoucherOutcome:
        if opened is None:
            return VoucherOutcome(opened=False)
        if not store.add_share(account_id, opened):
            return VoucherOutcome(opened=True, duplicate=True)
        key = store.voucher_key(account_id, opened.epoch)
        if key is not None:
            return self._recheck(key, [opened], crossed=False)
        return self._try_threshold(account_id, opened.epoch, store)

    def _try_threshold(self, account_id: bytes, epoch: int, store: ShareStore) -> VoucherOutcome:
        t = self.params.threshold
        shares = store.shares(account_id, epoch)
        if len(shares) < t:
            return VoucherOutcome(opened=True)
        rows = identify_real_rows([s.share.x for s in shares], [s.tag for s in shares], t - 1)
        if len(rows) < t:
            return VoucherOutcome(opened=True)
        real = [shares[i] for i in rows]
        secret = recover_secret([s.share for s in real], t)
        key = voucher_key_from_secret(secret)
        try:
            open_inner_payload(real[0], key)
        except DecryptionError:
            raise ProtocolError(
                "shares are inconsistent: the voucher key does not verify"
            ) from None
        store.set_voucher_key(account_id, epoch, key)
        return self._recheck(key, real, crossed=True)

    def _recheck(self, key: bytes, shares: list[OpenedShare], *, crossed: bool) -> VoucherOutcome:
        confirmed = []
        discarded = 0
        for s in shares:
            try:
                pdq, derivative = open_inner_payload(s, key)
            except DecryptionError:  # a synthetic share: nothing inside to open
                continue
            if self._bank_check(pdq):
                confirmed.append(ConfirmedMatch(s.voucher_id, pdq, derivative))
            else:
                discarded += 1
        return VoucherOutcome(
            opened=True,
            threshold_crossed=crossed,
            confirmed=tuple(confirmed),
            discarded_band_collisions=discarded,
        )
