"""Whether this device has lawful-access work to do, read from its stored state alone.

The lawful-access state (`AccessState` in `accord.client.access`) is one sealed JSON record of
the local store. A device copies messages only while a warrant is active, and uploads only while
records are queued; with neither, a message it sends has nothing to be copied to. This module
answers that question from the record's two lists, so such a send does not load the warrant,
approver, agency and record modules (`accord.client.access` imports them). The answer is the
same as `AccessState.busy`; the full state is read whenever it is yes.
"""

from __future__ import annotations

import json


def has_lawful_access_work(record: bytes | None) -> bool:
    """Does the stored state (`LocalStore.access_state()`) hold an active warrant or a queued
    record? None (no state stored yet) holds neither."""
    if record is None:
        return False
    state = json.loads(record)
    return bool(state["active"] or state["outbox"])
