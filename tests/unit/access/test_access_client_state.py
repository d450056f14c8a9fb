"""The device's lawful-access record (client/access.py) survives the store in its stored form."""

from __future__ import annotations

import json

from access_world import NOW, World, sign_as
from test_access_records import message, verified

from accord.client.access import AccessState, ActiveWarrant
from accord.protocols.access.records import RecordSealer


def _state(world: World) -> AccessState:
    warrant = verified(world)
    sealer = RecordSealer(warrant, device_id="DEVICE1", sign=sign_as("DEVICE1"), next_seq=4)
    record = sealer.seal(message(1), now=NOW)
    return AccessState(
        approver_set=world.approver_set,
        configured_set=world.approver_set.set_hash.hex(),
        seen=[warrant.warrant_id.hex()],
        active=[ActiveWarrant(warrant, copy_from_ms=NOW * 1000, next_seq=sealer.next_seq)],
        outbox=[record],
        disclosures_from=9,
    )


def test_the_state_round_trips_in_its_stored_layout(world: World) -> None:
    state = _state(world)
    raw = state.to_json()
    assert AccessState.from_json(raw) == state
    stored = json.loads(raw)
    assert set(stored) == {
        "v",
        "approver_set",
        "configured_set",
        "seen",
        "active",
        "outbox",
        "disclosures_from",
        "watch",
    }
    assert stored["active"][0]["next_seq"] == 5 and stored["outbox"][0]["seq"] == 4
    assert AccessState.from_json(AccessState().to_json()) == AccessState()


def test_a_warrant_checkpoint_in_the_older_form_is_still_read(world: World) -> None:
    state = _state(world)
    stored = json.loads(state.to_json())
    checkpoint = state.active[0].verified.checkpoint
    entry = stored["active"][0]
    del entry["log_origin"]
    entry["checkpoint"] = {
        "origin": checkpoint.origin,
        "size": checkpoint.size,
        "root": checkpoint.root_hash.hex(),
    }
    assert AccessState.from_json(json.dumps(stored).encode()) == state
