from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pm_helpers import DERIVATIVE, SMALL, World, near_hash

from accord.errors import AccordError, DecryptionError, InvalidInput, ProtocolError
from accord.protocols.detection.signals import PdqHash
from accord.protocols.private_matching.matcher import open_outer_unverified
from accord.protocols.private_matching.params import MatchingParams
from accord.protocols.private_matching.voucher import (
    BAND_ENTRY_BYTES,
    HEADER_BYTES,
    AccountMatchingSecret,
    EpochKeys,
    make_visual_derivative,
    parse_voucher_unverified,
    voucher_size,
)

SYNTH = MatchingParams(
    band_count=4, band_bits=40, threshold=3, synthetic_rate_ppm=200_000, detection_dim=16
)


@pytest.fixture(scope="module")
def world() -> World:
    return World(SMALL, n_bank=10, seed=1)


def _structure(v: bytes) -> list[int]:
    return [len(v), v[:4][0], len(v) - HEADER_BYTES]


def test_vouchers_have_one_size_and_structure(world: World) -> None:
    """Acceptance 1: matching, near-matching, unrelated and synthetic vouchers look alike."""
    client = world.client(b"alice")
    matching = client.create_voucher(pdq=world.bank[0], derivative=DERIVATIVE, epoch=0)
    near = client.create_voucher(
        pdq=near_hash(world.bank[1], 8, world.rng), derivative=DERIVATIVE, epoch=0
    )
    unrelated = client.create_voucher(pdq=world.unrelated(), derivative=DERIVATIVE, epoch=0)
    sizes = {len(matching), len(near), len(unrelated)}
    assert sizes == {voucher_size(SMALL)}
    for v in (matching, near, unrelated):
        parsed = parse_voucher_unverified(v, SMALL)
        assert len(parsed.bands) == SMALL.band_count
    synth_world = World(SYNTH, n_bank=3, seed=2)
    keys = EpochKeys(AccountMatchingSecret(bytes(32)), 0, SYNTH)
    rng = np.random.default_rng(5)
    synthetic = next(
        h for h in (synth_world.unrelated() for _ in range(200)) if keys.is_synthetic(h)
    )
    sv = synth_world.client(b"bob", AccountMatchingSecret(bytes(32))).create_voucher(
        pdq=synthetic, derivative=DERIVATIVE, epoch=0
    )
    assert len(sv) == voucher_size(SYNTH)
    del rng


def test_client_holds_only_blinded_points(world: World) -> None:
    client = world.client(b"alice")
    raw = client.table.encode()
    for h in world.bank:
        assert h.value not in raw


def test_matching_voucher_opens_and_unrelated_does_not(world: World) -> None:
    client = world.client(b"carol")
    v = client.create_voucher(pdq=world.bank[2], derivative=DERIVATIVE, epoch=0)
    opened = open_outer_unverified(parse_voucher_unverified(v, SMALL), world.secret, world.table)
    assert opened is not None
    u = client.create_voucher(pdq=world.unrelated(), derivative=DERIVATIVE, epoch=0)
    assert (
        open_outer_unverified(parse_voucher_unverified(u, SMALL), world.secret, world.table) is None
    )


def test_threshold_opens_only_matching_images_then_rechecks() -> None:
    w = World(SMALL, n_bank=10, seed=4)
    client = w.client(b"dave")
    outcomes = []
    for i in range(SMALL.threshold):
        w.matcher.process_voucher(
            account_id=b"dave",
            voucher=client.create_voucher(pdq=w.unrelated(), derivative=DERIVATIVE, epoch=0),
        )
        v = client.create_voucher(pdq=w.bank[i], derivative=DERIVATIVE, epoch=0)
        outcomes.append(w.matcher.process_voucher(account_id=b"dave", voucher=v))
    assert [o.opened for o in outcomes] == [True] * SMALL.threshold
    assert [o.threshold_crossed for o in outcomes] == [False] * (SMALL.threshold - 1) + [True]
    assert len(outcomes[-1].confirmed) == SMALL.threshold
    assert outcomes[-1].confirmed[0].derivative == DERIVATIVE
    # after the threshold each new match opens at once; unrelated images still do not
    later = w.matcher.process_voucher(
        account_id=b"dave",
        voucher=client.create_voucher(pdq=w.bank[7], derivative=DERIVATIVE, epoch=0),
    )
    assert later.opened and len(later.confirmed) == 1 and later.confirmed[0].pdq == w.bank[7]
    assert w.store.voucher_key(b"dave", 1) is None  # another epoch starts from zero


def test_band_collision_with_an_unrelated_image_is_discarded_on_recheck() -> None:
    w = World(SMALL, n_bank=10, seed=6)
    sampler = w.table.sampler()
    positions = sampler.positions[0]
    target = np.unpackbits(np.frombuffer(w.bank[0].value, dtype=np.uint8))
    far = 1 - target  # 256 bits away...
    far[list(positions)] = target[list(positions)]  # ...but band 0 agrees
    collider = PdqHash(np.packbits(far).tobytes())
    assert not w.in_bank(collider)
    client = w.client(b"erin")
    results = [
        w.matcher.process_voucher(
            account_id=b"erin",
            voucher=client.create_voucher(pdq=p, derivative=DERIVATIVE, epoch=0),
        )
        for p in [collider, w.bank[1], w.bank[2]]
    ]
    assert all(r.opened for r in results)
    assert results[-1].threshold_crossed
    assert len(results[-1].confirmed) == 2 and results[-1].discarded_band_collisions == 1


def test_same_image_again_adds_no_share() -> None:
    w = World(SMALL, n_bank=5, seed=7)
    client = w.client(b"frank")
    outs = [
        w.matcher.process_voucher(
            account_id=b"frank",
            voucher=client.create_voucher(pdq=w.bank[0], derivative=DERIVATIVE, epoch=0),
        )
        for _ in range(SMALL.threshold + 1)
    ]
    assert outs[0].opened and not outs[0].duplicate
    assert all(o.duplicate and not o.threshold_crossed for o in outs[1:])
    assert len(w.store.shares(b"frank", 0)) == 1


def test_replays_are_rejected_with_clear_errors(world: World) -> None:
    client = world.client(b"gina")
    v = client.create_voucher(pdq=world.bank[3], derivative=DERIVATIVE, epoch=0)
    with pytest.raises(ProtocolError, match="another account"):
        world.matcher.process_voucher(account_id=b"mallory", voucher=v)
    world.matcher.process_voucher(account_id=b"gina", voucher=v)
    with pytest.raises(ProtocolError, match="already received"):
        world.matcher.process_voucher(account_id=b"gina", voucher=v)
    other = World(SMALL, n_bank=2, seed=8)
    with pytest.raises(ProtocolError, match="another table version"):
        other.matcher.process_voucher(account_id=b"gina", voucher=v)


def test_tampered_and_malformed_vouchers(world: World) -> None:
    client = world.client(b"hank")
    v = bytearray(client.create_voucher(pdq=world.bank[4], derivative=DERIVATIVE, epoch=0))
    tampered = bytearray(v)
    tampered[-20] ^= 1  # the outer ciphertext of a matching voucher
    with pytest.raises(DecryptionError):
        world.matcher.process_voucher(account_id=b"hank", voucher=bytes(tampered))
    for size in (0, 10, len(v) - 1, len(v) + 1):
        with pytest.raises(InvalidInput, match="wrong size"):
            world.matcher.process_voucher(
                account_id=b"hank", voucher=bytes(v[:size]) + bytes(max(0, size - len(v)))
            )
    bad_point = bytearray(v)
    bad_point[HEADER_BYTES : HEADER_BYTES + 32] = bytes.fromhex("ff" * 31 + "7f")
    with pytest.raises(InvalidInput, match="invalid point"):
        world.matcher.process_voucher(account_id=b"hank", voucher=bytes(bad_point))
    identity = bytearray(v)
    identity[HEADER_BYTES + BAND_ENTRY_BYTES : HEADER_BYTES + BAND_ENTRY_BYTES + 32] = bytes(32)
    with pytest.raises(InvalidInput, match="invalid point"):
        world.matcher.process_voucher(account_id=b"hank", voucher=bytes(identity))
    bad_magic = bytearray(v)
    bad_magic[0] ^= 1
    with pytest.raises(InvalidInput, match="not a safety voucher"):
        world.matcher.process_voucher(account_id=b"hank", voucher=bytes(bad_magic))
    with pytest.raises(InvalidInput):
        client.create_voucher(pdq=world.bank[4], derivative=b"short", epoch=0)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_parser_fuzz_any_mutation_is_rejected_or_unopened(
    world: World, data: st.DataObject
) -> None:
    """Random bytes, and valid vouchers with bytes flipped: only Accord errors, never a match."""
    if not hasattr(world, "_fuzz_voucher"):
        client = world.client(b"ivan")
        world._fuzz_voucher = client.create_voucher(  # type: ignore[attr-defined]
            pdq=world.bank[5], derivative=DERIVATIVE, epoch=0
        )
    base = bytearray(world._fuzz_voucher)  # type: ignore[attr-defined]
    if data.draw(st.booleans()):
        blob = data.draw(st.binary(max_size=len(base) + 8))
    else:
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(base) - 1))
            base[i] ^= data.draw(st.integers(1, 255))
        blob = bytes(base)
    account = data.draw(st.sampled_from([b"ivan", b"other"]))
    try:
        outcome = world.matcher.process_voucher(account_id=account, voucher=blob)
    except AccordError:
        return
    assert not outcome.threshold_crossed


def test_visual_derivative() -> None:
    pixels = np.zeros((100, 150, 3), dtype=np.uint8)
    assert len(make_visual_derivative(pixels)) == 4096
