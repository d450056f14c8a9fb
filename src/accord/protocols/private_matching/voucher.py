"""Safety vouchers: created by the client for every image, opened by the server only on a match.

Voucher layout (version 2; sizes fixed by the table's parameters, the same for every image)::

    header   72 bytes   magic b"APV" 0x01 | table digest (32) | account tag (16)
                        | epoch (4, big-endian) | voucher id (16, random)
    bands    L x 176    per band, in random order: Q (32) | wrap (48) x 3, the three wraps
                        (one per cuckoo position) in random order
    outer    AES-256-GCM under the per-image key k_img (nonce 0: k_img is used once),
             associated data = header, plaintext:
                 x (32) | y (32) | detection tag (4 m) | inner nonce (12)
                 | inner ciphertext: AES-256-GCM under the account's voucher key, associated
                   data = header, of PDQ hash (32) | 64 x 64 grayscale derivative (4096)

For band element e at cuckoo slot P (a table point): Q = beta H(e) + gamma G and
S = beta P + gamma alpha G with fresh random beta, gamma; the wrap is AES-256-GCM of k_img under
HKDF(S) (nonce 0, associated data = header). The server computes alpha Q, which equals S exactly
when P = alpha H(e), that is when the image's band element is in the bank (Apple PSI technical
summary, "Safety voucher generation"; here one Q per band serves all three cuckoo slots).
Version 1 had two wraps per band, for tables with two cuckoo hash functions.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from PIL import Image

from accord.errors import DecryptionError, InvalidInput, UnsupportedVersion
from accord.primitives.ristretto import Point, Scalar, add, generator_multiple, multiply
from accord.primitives.shamir import (
    FIELD_BYTES,
    Share,
    evaluate_polynomial,
    field_element_from_bytes,
    field_element_from_uniform,
    field_element_to_bytes,
)
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.params import (
    DERIVATIVE_BYTES,
    DERIVATIVE_SIDE_PX,
    DETECTION_PRIME,
    MatchingParams,
    synthetic_open_count_weights,
)
from accord.protocols.private_matching.share_detection import tag_for
from accord.protocols.private_matching.table import (
    CUCKOO_WAYS,
    BlindedTable,
    TableDigest,
    band_point,
)

VOUCHER_MAGIC = b"APV\x02"
ACCOUNT_TAG_BYTES = 16
VOUCHER_ID_BYTES = 16
HEADER_BYTES = len(VOUCHER_MAGIC) + 32 + ACCOUNT_TAG_BYTES + 4 + VOUCHER_ID_BYTES
WRAP_BYTES = 32 + 16
BAND_ENTRY_BYTES = 32 + CUCKOO_WAYS * WRAP_BYTES
INNER_PLAINTEXT_BYTES = 32 + DERIVATIVE_BYTES
INNER_CIPHERTEXT_BYTES = INNER_PLAINTEXT_BYTES + 16
NONCE_BYTES = 12
_ZERO_NONCE = bytes(NONCE_BYTES)
_LABEL = b"accord-pm-v1 "


def _kdf(ikm: bytes, label: bytes, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=_LABEL + label).derive(
        ikm
    )


def _prg(key: bytes, n_bytes: int) -> bytes:
    """AES-256-CTR keystream (a standard PRG) under a one-use key."""
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    return enc.update(bytes(n_bytes)) + enc.finalize()


def _field_words(key: bytes, count: int) -> npt.NDArray[np.int64]:
    raw = np.frombuffer(_prg(key, 8 * count), dtype=">u8")
    return (raw % np.uint64(DETECTION_PRIME)).astype(np.int64)


def outer_plaintext_bytes(params: MatchingParams) -> int:
    return 2 * FIELD_BYTES + 4 * params.detection_dim + NONCE_BYTES + INNER_CIPHERTEXT_BYTES


def voucher_size(params: MatchingParams) -> int:
    return HEADER_BYTES + params.band_count * BAND_ENTRY_BYTES + outer_plaintext_bytes(params) + 16


def account_tag(account_id: bytes) -> bytes:
    """The account binding carried in clear in every voucher header."""
    if not 1 <= len(account_id) <= 256:
        raise InvalidInput("an account id is 1..256 bytes")
    return hashlib.sha256(_LABEL + b"account " + account_id).digest()[:ACCOUNT_TAG_BYTES]


def wrap_key(shared: Point) -> bytes:
    return _kdf(shared.value, b"wrap")


def make_visual_derivative(pixels: npt.NDArray[np.uint8]) -> bytes:
    """A 64 x 64 grayscale thumbnail (4,096 bytes) for human review after a confirmed match."""
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGB").convert("L")
    small = image.resize((DERIVATIVE_SIDE_PX, DERIVATIVE_SIDE_PX), Image.Resampling.BILINEAR)
    return small.tobytes()


@dataclass(frozen=True, slots=True)
class AccountMatchingSecret:
    """The client's long-term secret for vouchers. It never leaves the account's devices."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != 32:
            raise InvalidInput("an account matching secret is 32 bytes")

    @classmethod
    def generate(cls) -> AccountMatchingSecret:
        return cls(os.urandom(32))

    def __repr__(self) -> str:
        return "AccountMatchingSecret(...)"


class EpochKeys:
    """Keys of one account for one epoch: the Shamir polynomial (its constant term gives the
    voucher key), the detection-code matrix, the x-coordinate PRF key and the synthetic key."""

    def __init__(self, secret: AccountMatchingSecret, epoch: int, params: MatchingParams) -> None:
        if not 0 <= epoch < 2**32:
            raise InvalidInput("epoch out of range")
        self.epoch = epoch
        self.params = params
        epoch_key = _kdf(secret.value, b"epoch" + struct.pack(">I", epoch))
        self._coefficients = [
            field_element_from_uniform(_kdf(epoch_key, b"shamir" + struct.pack(">H", i), 64))
            for i in range(params.threshold)
        ]
        self.voucher_key = voucher_key_from_secret(self._coefficients[0])
        width = params.threshold - 1
        self._matrix = _field_words(_kdf(epoch_key, b"detection"), params.detection_dim * width)
        self._matrix = self._matrix.reshape(params.detection_dim, width)
        self._x_key = _kdf(epoch_key, b"x")
        self._synthetic_key = _kdf(epoch_key, b"synthetic")

    def __repr__(self) -> str:
        return f"EpochKeys(epoch={self.epoch})"

    def x_for(self, pdq: PdqHash) -> int:
        x = field_element_from_uniform(hmac.digest(self._x_key, pdq.value, hashlib.sha512))
        return x or 1

    def real_share(self, pdq: PdqHash) -> tuple[Share, list[int]]:
        x = self.x_for(pdq)
        return Share(x, evaluate_polynomial(self._coefficients, x)), tag_for(
            self._matrix, x % DETECTION_PRIME
        )

    def _synthetic_digest(self, label: bytes, pdq: PdqHash) -> bytes:
        return hmac.digest(self._synthetic_key, label + pdq.value, hashlib.sha512)

    def is_synthetic(self, pdq: PdqHash) -> bool:
        draw = int.from_bytes(self._synthetic_digest(b"decide", pdq)[:8], "big")
        return draw < self.params.synthetic_rate_ppm * 2**64 // 1_000_000

    def synthetic_share(self, pdq: PdqHash) -> tuple[Share, list[int]]:
        y = field_element_from_uniform(self._synthetic_digest(b"y", pdq))
        tag = _field_words(self._synthetic_digest(b"tag", pdq)[:32], self.params.detection_dim)
        return Share(self.x_for(pdq), y), [int(v) for v in tag]

    def synthetic_open_count(self, pdq: PdqHash) -> int:
        u = int.from_bytes(self._synthetic_digest(b"count", pdq)[:8], "big") / 2**64
        acc = 0.0
        for k, w in enumerate(synthetic_open_count_weights(self.params), start=1):
            acc += w
            if u < acc:
                return k
        return self.params.band_count


def voucher_key_from_secret(secret: int) -> bytes:
    return _kdf(field_element_to_bytes(secret), b"voucher key")


def _random_below(n: int) -> int:
    return int.from_bytes(os.urandom(4), "big") % n  # bias < 2^-29, only a position


def _random_permutation(n: int) -> list[int]:
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        k = int.from_bytes(os.urandom(4), "big") % (i + 1)  # bias < 2^-24, only ordering
        order[i], order[k] = order[k], order[i]
    return order


class VoucherClient:
    """Makes vouchers for one account against one verified table."""

    def __init__(
        self,
        *,
        table: BlindedTable,
        table_digest: TableDigest,
        account_id: bytes,
        secret: AccountMatchingSecret,
    ) -> None:
        self.table = table
        self.table_digest = table_digest
        self.params = table.params
        self._account_tag = account_tag(account_id)
        self._secret = secret
        self._epochs: dict[int, EpochKeys] = {}
        self._sampler = table.sampler()

    def epoch_for_image(self, image_counter: int) -> int:
        """Epoch of the account's n-th image (0-based): keys rotate every `epoch_images`."""
        return image_counter // self.params.epoch_images

    def keys(self, epoch: int) -> EpochKeys:
        if epoch not in self._epochs:
            self._epochs = {epoch: EpochKeys(self._secret, epoch, self.params)}
        return self._epochs[epoch]

    def create_voucher(self, *, pdq: PdqHash, derivative: bytes, epoch: int) -> bytes:
        """One voucher for one image. Same size, structure and steps whether or not it matches."""
        if len(derivative) != DERIVATIVE_BYTES:
            raise InvalidInput("a visual derivative is 64 x 64 grayscale bytes")
        keys = self.keys(epoch)
        header = (
            VOUCHER_MAGIC
            + self.table_digest.value
            + self._account_tag
            + struct.pack(">I", epoch)
            + os.urandom(VOUCHER_ID_BYTES)
        )
        synthetic = keys.is_synthetic(pdq)
        n_bands = self.params.band_count
        order = _random_permutation(n_bands)
        open_bands = set(order[: keys.synthetic_open_count(pdq)]) if synthetic else set()
        k_img = os.urandom(32)
        public = self.table.public
        entries: list[bytes] = []
        for j, element in enumerate(self._sampler.elements(pdq)):
            h = band_point(self.table.band_seed, element)
            points = [self.table.slot(s) for s in self.table.slots_for(element)]
            beta, gamma = Scalar.random(), Scalar.random()
            g_g = generator_multiple(gamma)
            g_l = multiply(gamma, public)
            q = add(multiply(beta, h), g_g)
            shared = [add(multiply(beta, p), g_l) for p in points]
            if j in open_bands:  # synthetic: make one slot open whatever the table holds
                q = g_g
                shared[_random_below(CUCKOO_WAYS)] = g_l
            wraps = [AESGCM(wrap_key(s)).encrypt(_ZERO_NONCE, k_img, header) for s in shared]
            entries.append(q.value + b"".join(wraps[i] for i in _random_permutation(CUCKOO_WAYS)))
        bands = b"".join(entries[i] for i in order)
        share, tag = keys.synthetic_share(pdq) if synthetic else keys.real_share(pdq)
        inner_nonce = os.urandom(NONCE_BYTES)
        if synthetic:
            inner = os.urandom(INNER_CIPHERTEXT_BYTES)
        else:
            inner = AESGCM(keys.voucher_key).encrypt(inner_nonce, pdq.value + derivative, header)
        plaintext = (
            field_element_to_bytes(share.x)
            + field_element_to_bytes(share.y)
            + b"".join(struct.pack(">I", v) for v in tag)
            + inner_nonce
            + inner
        )
        outer = AESGCM(k_img).encrypt(_ZERO_NONCE, plaintext, header)
        return header + bands + outer


# ---- parsing (server side) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnverifiedVoucher:
    """A voucher whose sizes and points have been checked, and nothing else."""

    header: bytes
    table_digest: bytes
    account_tag: bytes
    epoch: int
    voucher_id: bytes
    bands: tuple[tuple[Point, tuple[bytes, ...]], ...]
    outer: bytes

    def __repr__(self) -> str:
        return f"UnverifiedVoucher(epoch={self.epoch})"


def parse_voucher_unverified(data: bytes, params: MatchingParams) -> UnverifiedVoucher:
    """Strict parse: exact size for the parameters, magic and version, every Q a valid
    non-identity point. Raises InvalidInput (or UnsupportedVersion) otherwise."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidInput("a voucher is bytes")
    data = bytes(data)
    if len(data) != voucher_size(params):
        raise InvalidInput("voucher has the wrong size for this table")
    if data[:3] != VOUCHER_MAGIC[:3]:
        raise InvalidInput("not a safety voucher")
    if data[3] != VOUCHER_MAGIC[3]:
        raise UnsupportedVersion("unsupported voucher version")
    header = data[:HEADER_BYTES]
    off = len(VOUCHER_MAGIC)
    digest = header[off : off + 32]
    off += 32
    tag = header[off : off + ACCOUNT_TAG_BYTES]
    off += ACCOUNT_TAG_BYTES
    (epoch,) = struct.unpack(">I", header[off : off + 4])
    off += 4
    voucher_id = header[off : off + VOUCHER_ID_BYTES]
    bands = []
    pos = HEADER_BYTES
    for _ in range(params.band_count):
        try:
            q = Point(data[pos : pos + 32])
        except InvalidInput:
            raise InvalidInput("voucher contains an invalid point") from None
        wraps = tuple(
            data[pos + 32 + WRAP_BYTES * c : pos + 32 + WRAP_BYTES * (c + 1)]
            for c in range(CUCKOO_WAYS)
        )
        bands.append((q, wraps))
        pos += BAND_ENTRY_BYTES
    return UnverifiedVoucher(
        header=header,
        table_digest=digest,
        account_tag=tag,
        epoch=epoch,
        voucher_id=voucher_id,
        bands=tuple(bands),
        outer=data[pos:],
    )


@dataclass(frozen=True, slots=True)
class OpenedShare:
    """What the server keeps from a voucher whose outer layer it could open."""

    voucher_id: bytes
    epoch: int
    header: bytes
    share: Share
    tag: tuple[int, ...]
    inner_nonce: bytes
    inner_ciphertext: bytes

    def __repr__(self) -> str:
        return f"OpenedShare(epoch={self.epoch})"


def parse_outer_plaintext(
    voucher: UnverifiedVoucher, plaintext: bytes, params: MatchingParams
) -> OpenedShare:
    if len(plaintext) != outer_plaintext_bytes(params):
        raise InvalidInput("malformed voucher payload")
    x = field_element_from_bytes(plaintext[:32])
    y = field_element_from_bytes(plaintext[32:64])
    if x == 0:
        raise InvalidInput("malformed voucher payload")
    off = 64
    tag = struct.unpack(
        f">{params.detection_dim}I", plaintext[off : off + 4 * params.detection_dim]
    )
    if any(v >= DETECTION_PRIME for v in tag):
        raise InvalidInput("malformed voucher payload")
    off += 4 * params.detection_dim
    nonce = plaintext[off : off + NONCE_BYTES]
    inner = plaintext[off + NONCE_BYTES :]
    return OpenedShare(
        voucher_id=voucher.voucher_id,
        epoch=voucher.epoch,
        header=voucher.header,
        share=Share(x, y),
        tag=tuple(tag),
        inner_nonce=nonce,
        inner_ciphertext=inner,
    )


def open_inner_payload(share: OpenedShare, voucher_key: bytes) -> tuple[PdqHash, bytes]:
    """Decrypt the inner payload with the recovered voucher key: (PDQ hash, derivative)."""
    try:
        pt = AESGCM(voucher_key).decrypt(share.inner_nonce, share.inner_ciphertext, share.header)
    except InvalidTag:
        raise DecryptionError() from None
    return PdqHash(pt[:32]), pt[32:]
