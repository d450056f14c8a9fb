"""Acceptance 2 on the server's real storage (SQLite and PostgreSQL): below the threshold, the
stored state of an account that sent 0 banked images and of one that sent t-1 differ only by
the synthetic noise.

Many simulated devices send N images each, 0 or t-1 of them banked; their vouchers go through
the server's queue and processing (`PrivateMatchingService.process_pending`), and the test then
reads back what the database holds per device: opened shares (x, y, detection tag, inner
ciphertext), voucher keys, crossings, review events.

Statistic: (a) no voucher key, crossing or event exists in either group; (b) the stored share
values are distributed alike (two-sample Kolmogorov-Smirnov on y / q and on the first tag word
/ (2^31 - 1), p-value above 1e-3); (c) the one remaining signal is the number of stored shares,
Binomial(N, p) against t-1 + Binomial(N-t+1, p): the best count-based guess has the advantage
the total variation distance between the two predicts (within sampling error), and no more.

The last test: seen voucher ids are kept for the current key epoch only.

One database (and service) per module and database kind: each test names its own banks and
accounts, reads back only its own accounts' rows and compares the service's counters before and
after (tests in a module run one at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from math import comb
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Connection, func, select

from accord.primitives.shamir import FIELD_PRIME, field_element_from_bytes
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.params import DERIVATIVE_BYTES, DETECTION_PRIME
from accord.protocols.private_matching.table import BlindedTable, TableDigest
from accord.protocols.private_matching.voucher import (
    HEADER_BYTES,
    VOUCHER_ID_BYTES,
    AccountMatchingSecret,
    VoucherClient,
)
from accord.server.detection import DetectionService
from accord.server.private_matching import PrivateMatchingService
from accord.server.secrets import FileSecretsKey
from accord.server.translog import LogService
from accord.storage.db import Database, make_engine, sqlite_url
from accord.storage.migrate import upgrade_to_head
from accord.storage.private_matching import ensure_account_row
from accord.storage.schema import pm_epochs, pm_events, pm_queue, pm_seen_vouchers, pm_shares
from accord.wire.matching import PublishTableRequest, matching_account_id

T = 4
SYNTHETIC_PPM = 200_000
N_IMAGES = 24
N_DEVICES = 40
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrivateMatchingService]:
    tmp_path: Path = tmp_path_factory.mktemp(f"matching-{request.param}")
    db_url = None if request.param == "sqlite" else str(request.getfixturevalue("module_pg_url"))
    engine = make_engine(db_url or sqlite_url(tmp_path))
    upgrade_to_head(engine)
    db = Database(engine)
    log = LogService(engine, tmp_path, "test.local/log")
    svc = PrivateMatchingService(
        db,
        log,
        DetectionService(engine, tmp_path / "idx"),
        tmp_path,
        secrets=FileSecretsKey(path=tmp_path / "secrets.key"),
    )
    yield svc
    svc.close()
    db.dispose()


def _random_hash(rng: np.random.Generator) -> PdqHash:
    bits = np.zeros(256, dtype=np.uint8)
    bits[rng.choice(256, 128, replace=False)] = 1
    return PdqHash(np.packbits(bits).tobytes())


def _ks_p_value(a: list[float], b: list[float]) -> float:
    a_s, b_s = np.sort(a), np.sort(b)
    grid = np.concatenate([a_s, b_s])
    d = float(
        np.max(
            np.abs(
                np.searchsorted(a_s, grid, "right") / len(a_s)
                - np.searchsorted(b_s, grid, "right") / len(b_s)
            )
        )
    )
    n = len(a_s) * len(b_s) / (len(a_s) + len(b_s))
    lam = (np.sqrt(n) + 0.12 + 0.11 / np.sqrt(n)) * d
    return float(
        min(1.0, 2 * sum((-1) ** (k - 1) * np.exp(-2 * k * k * lam * lam) for k in range(1, 100)))
    )


def _binom(n: int, p: float) -> list[float]:
    return [comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(n + 1)]


def test_zero_and_t_minus_one_matches_look_alike_in_the_database(
    service: PrivateMatchingService, unique: Callable[[str], str]
) -> None:
    rng = np.random.default_rng(7)
    bank = [_random_hash(rng) for _ in range(N_DEVICES * (T - 1))]
    bank_name = unique("standins")
    store = service.detection.store
    store.create_bank(bank_name)
    store.add_entries(bank_name, [BankEntry(signal_type="pdq", hash=h) for h in bank])
    summary = service.publish_table(
        PublishTableRequest(
            banks=[bank_name],
            band_count=2,
            threshold=T,
            synthetic_rate_ppm=SYNTHETIC_PPM,
            detection_dim=24,
        )
    )
    digest = TableDigest(bytes.fromhex(summary.digest))
    table = BlindedTable.parse(
        (service.tables_dir / f"{summary.digest}.table").read_bytes(), expected_digest=digest
    )
    banked = iter(bank)
    groups: dict[str, list[str]] = {"zero": [], "t-1": []}
    for d in range(N_DEVICES):
        for group in groups:
            account = unique(f"{'z' if group == 'zero' else 't'}{d}")
            account_id = matching_account_id(account)
            client = VoucherClient(
                table=table,
                table_digest=digest,
                account_id=account_id,
                secret=AccountMatchingSecret.generate(),
            )
            images = [_random_hash(rng) for _ in range(N_IMAGES)]
            if group == "t-1":
                images[: T - 1] = [next(banked) for _ in range(T - 1)]
            vouchers = [
                client.create_voucher(pdq=h, derivative=bytes(DERIVATIVE_BYTES), epoch=0)
                for h in images
            ]

            def _enqueue(conn: Connection, account: str = account, vouchers=vouchers) -> None:  # type: ignore[no-untyped-def]
                key = matching_account_id(account).decode()
                ensure_account_row(conn, key)
                for i, v in enumerate(vouchers):
                    conn.execute(
                        pm_queue.insert().values(
                            matching_account=key,
                            voucher_id=v[HEADER_BYTES - VOUCHER_ID_BYTES : HEADER_BYTES],
                            device_id="DEVICE01",
                            voucher=v,
                        )
                    )

            service.db.transact(_enqueue)
            groups[group].append(account_id.decode())
    assert service.process_pending() == 2 * N_DEVICES * N_IMAGES

    mine = [*groups["zero"], *groups["t-1"]]
    with service.db.read() as conn:
        for table in (pm_epochs, pm_events):
            assert (
                conn.execute(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.matching_account.in_(mine))
                ).scalar_one()
                == 0
            )
        rows = conn.execute(select(pm_shares).where(pm_shares.c.matching_account.in_(mine))).all()
    counts: dict[str, list[int]] = {g: [] for g in groups}
    ys: dict[str, list[float]] = {g: [] for g in groups}
    tags: dict[str, list[float]] = {g: [] for g in groups}
    by_account: dict[str, list[object]] = {}
    for r in rows:
        by_account.setdefault(r.matching_account, []).append(r)
    for group, accounts in groups.items():
        for account in accounts:
            mine = by_account.get(account, [])
            counts[group].append(len(mine))
            ys[group] += [field_element_from_bytes(bytes(r.y)) / FIELD_PRIME for r in mine]  # type: ignore[attr-defined]
            tags[group] += [int.from_bytes(bytes(r.tag)[:4], "big") / DETECTION_PRIME for r in mine]  # type: ignore[attr-defined]

    # (b) share contents: one distribution in both groups
    assert _ks_p_value(ys["zero"], ys["t-1"]) > 1e-3
    assert _ks_p_value(tags["zero"], tags["t-1"]) > 1e-3
    # (c) the count: exactly the signal the synthetic noise leaves
    p = SYNTHETIC_PPM / 1e6
    zero = _binom(N_IMAGES, p)
    shifted = [0.0] * (T - 1) + _binom(N_IMAGES - T + 1, p)
    shifted += [0.0] * (len(zero) - len(shifted))
    tv = 0.5 * sum(abs(x - y) for x, y in zip(zero, shifted, strict=True))
    guess_many = [k for k in range(len(zero)) if shifted[k] > zero[k]]
    hits = sum(c in guess_many for c in counts["t-1"]) + sum(
        c not in guess_many for c in counts["zero"]
    )
    advantage = 2 * hits / (2 * N_DEVICES) - 1
    assert abs(advantage - tv) < 4 * np.sqrt(1 / N_DEVICES)
    assert min(counts["t-1"]) >= T - 1  # every real match opened, and none crossed


def test_a_voucher_that_cannot_be_applied_does_not_stop_the_queue(
    service: PrivateMatchingService,
    monkeypatch: pytest.MonkeyPatch,
    unique: Callable[[str], str],
) -> None:
    rng = np.random.default_rng(8)
    bank = [_random_hash(rng) for _ in range(4)]
    bank_name, erin = unique("standins"), unique("erin")
    before = service.status()  # what earlier tests left
    digest, table = _small_table(service, bank_name, bank)
    client = VoucherClient(
        table=table,
        table_digest=digest,
        account_id=matching_account_id(erin),
        secret=AccountMatchingSecret.generate(),
    )
    vouchers = [
        client.create_voucher(pdq=h, derivative=bytes(DERIVATIVE_BYTES), epoch=0)
        for h in [*bank[:3], _random_hash(rng)]
    ]

    def _enqueue(conn: Connection) -> None:
        for i, v in enumerate(vouchers):
            conn.execute(
                pm_queue.insert().values(
                    matching_account=matching_account_id(erin).decode(),
                    voucher_id=v[HEADER_BYTES - VOUCHER_ID_BYTES : HEADER_BYTES],
                    device_id="DEVICE01",
                    voucher=v,
                )
            )

    service.db.transact(_enqueue)
    real_apply = service._apply
    poisoned = vouchers[1][HEADER_BYTES - VOUCHER_ID_BYTES : HEADER_BYTES]

    def apply(conn: Connection, p, now: int) -> int:  # type: ignore[no-untyped-def]
        if bytes(p.row.voucher_id) == poisoned:
            raise ValueError("cannot apply")
        return real_apply(conn, p, now)

    monkeypatch.setattr(service, "_apply", apply)
    assert service.process_pending() == 3
    status = service.status()
    assert status.queued == 0 and status.vouchers_rejected == before.vouchers_rejected + 1
    assert status.vouchers_processed == before.vouchers_processed + 3
    assert status.opened_shares == before.opened_shares + 2


def _small_table(
    service: PrivateMatchingService, bank_name: str, bank: list[PdqHash]
) -> tuple[TableDigest, BlindedTable]:
    """A bank of `bank` and a table of two bands over it, without synthetic vouchers."""
    service.detection.store.create_bank(bank_name)
    service.detection.store.add_entries(
        bank_name, [BankEntry(signal_type="pdq", hash=h) for h in bank]
    )
    summary = service.publish_table(
        PublishTableRequest(
            banks=[bank_name], band_count=2, threshold=T, synthetic_rate_ppm=0, detection_dim=24
        )
    )
    digest = TableDigest(bytes.fromhex(summary.digest))
    path = service.tables_dir / f"{summary.digest}.table"
    return digest, BlindedTable.parse(path.read_bytes(), expected_digest=digest)


def test_seen_voucher_ids_are_dropped_after_their_epoch(
    service: PrivateMatchingService, unique: Callable[[str], str]
) -> None:
    """Voucher ids are kept for the account's current key epoch only: once a voucher of a later
    epoch is processed, the earlier ids are gone; an old voucher sent again is processed but
    adds no share (its x is already there)."""
    rng = np.random.default_rng(9)
    bank = [_random_hash(rng) for _ in range(3)]
    bank_name, fay = unique("standins"), unique("fay")
    digest, table = _small_table(service, bank_name, bank)
    account = matching_account_id(fay)
    client = VoucherClient(
        table=table,
        table_digest=digest,
        account_id=account,
        secret=AccountMatchingSecret.generate(),
    )

    def voucher(pdq: PdqHash, epoch: int) -> bytes:
        return client.create_voucher(pdq=pdq, derivative=bytes(DERIVATIVE_BYTES), epoch=epoch)

    def process(vouchers: list[bytes]) -> None:
        def _enqueue(conn: Connection) -> None:
            for v in vouchers:
                conn.execute(
                    pm_queue.insert().values(
                        matching_account=account.decode(),
                        voucher_id=v[HEADER_BYTES - VOUCHER_ID_BYTES : HEADER_BYTES],
                        device_id="DEVICE01",
                        voucher=v,
                    )
                )

        service.db.transact(_enqueue)
        assert service.process_pending() == len(vouchers)

    def seen() -> dict[bytes, int]:
        with service.db.read() as conn:
            rows = conn.execute(
                select(pm_seen_vouchers.c.voucher_id, pm_seen_vouchers.c.epoch).where(
                    pm_seen_vouchers.c.matching_account == account.decode()
                )
            ).all()
        return {bytes(r.voucher_id): int(r.epoch) for r in rows}

    def shares() -> int:
        with service.db.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(pm_shares.c.matching_account == account.decode())
                ).scalar_one()
            )

    old = [voucher(bank[0], 0), voucher(_random_hash(rng), 0)]
    process(old)
    assert set(seen().values()) == {0} and len(seen()) == 2 and shares() == 1
    process([voucher(bank[1], 1)])
    assert set(seen().values()) == {1} and len(seen()) == 1 and shares() == 2
    process([old[0]])  # the dropped id comes back: processed, nothing added, not kept
    assert set(seen().values()) == {1} and shares() == 2
