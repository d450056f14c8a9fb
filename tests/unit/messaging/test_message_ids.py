"""Message ids: random, unique, and safe to type as command arguments."""

from __future__ import annotations


def test_message_ids_can_be_typed_as_arguments() -> None:
    """`accord report ID`: an id starting with "-" would be read as an option."""
    from accord.client.client import new_message_id

    ids = [new_message_id() for _ in range(5000)]
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids) and all(len(i) == 22 for i in ids)
