"""The server's first look at a message's `vouchers` extension (docs/protocol/private-matching.md,
P1): sizes and shapes, then strict voucher parsing. Fuzzed: anything malformed is an Accord
error (a 4xx), never a crash and never an accepted voucher."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pm_helpers import DERIVATIVE, SMALL, World
from pydantic import ValidationError

from accord.errors import AccordError, InvalidInput
from accord.server.private_matching.intake import (
    parse_voucher_items_unverified,
    voucher_table_digest_unverified,
)
from accord.wire.matching import MAX_VOUCHERS_PER_MESSAGE, PublishJob, matching_account_id

ACCOUNT = matching_account_id("alice")
BLOB = "B" * 22


@pytest.fixture(scope="module")
def world() -> World:
    return World(SMALL, n_bank=4, seed=3)


@pytest.fixture(scope="module")
def voucher(world: World) -> bytes:
    client = world.client(ACCOUNT)
    return client.create_voucher(pdq=world.bank[0], derivative=DERIVATIVE, epoch=0)


def _item(data: bytes, blob: str = BLOB) -> dict[str, str]:
    return {"blob_id": blob, "voucher": base64.b64encode(data).decode()}


def test_a_valid_extension_parses(world: World, voucher: bytes) -> None:
    ((blob, data),) = parse_voucher_items_unverified([_item(voucher)])
    assert blob == BLOB and data == voucher
    assert voucher_table_digest_unverified(voucher) == world.digest.value
    assert world.matcher.check_voucher(account_id=ACCOUNT, voucher=data).epoch == 0


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "x",
        {},
        [],
        [None],
        [{"blob_id": BLOB}],
        [{"blob_id": BLOB, "voucher": "AAAA", "extra": 1}],
        [{"blob_id": "bad blob", "voucher": "AAAA"}],
        [{"blob_id": BLOB, "voucher": "A" * 17_000}],
        [{"blob_id": BLOB, "voucher": "not base64!"}],
        [{"blob_id": BLOB, "voucher": "AAAA"}, {"blob_id": BLOB, "voucher": "AAAA"}],
        [{"blob_id": f"{i:022d}", "voucher": "AAAA"} for i in range(MAX_VOUCHERS_PER_MESSAGE + 1)],
    ],
)
def test_malformed_extensions_are_refused(raw: Any) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_voucher_items_unverified(raw)
    assert err.value.code == "invalid_voucher"


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_extension_fuzz(world: World, voucher: bytes, data: st.DataObject) -> None:
    """Arbitrary JSON-like values, random bytes and mutated vouchers: only Accord errors, and a
    mutated voucher never passes for another account."""
    choice = data.draw(st.integers(0, 2))
    if choice == 0:
        raw: Any = data.draw(
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                lambda inner: (
                    st.lists(inner, max_size=4)
                    | st.dictionaries(
                        st.sampled_from(["blob_id", "voucher", "x"]), inner, max_size=3
                    )
                ),
                max_leaves=12,
            )
        )
    elif choice == 1:
        raw = [_item(data.draw(st.binary(max_size=len(voucher) + 8)))]
    else:
        mutated = bytearray(voucher)
        for _ in range(data.draw(st.integers(1, 4))):
            i = data.draw(st.integers(0, len(mutated) - 1))
            mutated[i] ^= data.draw(st.integers(1, 255))
        raw = [_item(bytes(mutated))]
    try:
        items = parse_voucher_items_unverified(raw)
        for _blob, blob_data in items:
            voucher_table_digest_unverified(blob_data)
            parsed = world.matcher.check_voucher(account_id=ACCOUNT, voucher=blob_data)
            assert parsed.account_tag == voucher[36:52]  # bound to alice, whatever changed
    except AccordError:
        return


_JOB = {
    "job_id": "j_" + "A" * 22,
    "state": "building",
    "slots_done": 10,
    "slots": 100,
    "started_at": 1,
    "table": None,
    "error": None,
}


@settings(max_examples=150, deadline=None)
@given(
    changes=st.dictionaries(
        st.sampled_from([*_JOB, "extra"]),
        st.none()
        | st.integers(-(2**40), 2**40)
        | st.text(max_size=80)
        | st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        max_size=4,
    )
)
def test_publish_job_status_fuzz(changes: dict[str, Any]) -> None:
    """The client's parse of a table job's status (what `accord matching publish` polls): any
    field changed, added or wrong is a validation error, never a crash."""
    body = {**_JOB, **changes}
    try:
        job = PublishJob.model_validate(body)
    except ValidationError:
        return
    assert 0 <= job.slots_done <= 2**32 and job.state in (
        "reading",
        "building",
        "logging",
        "done",
        "failed",
    )
