"""What a user typed, checked where it becomes a wire model: pydantic's refusal is turned into
one `InvalidInput` line naming the field (never the value)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pydantic import ValidationError

from accord.errors import InvalidInput

NAME_RULE = "1-64 characters: lower-case letters, digits, '.', '_' or '-'"
_NAME_FIELDS = {"account", "group", "members", "admins"}


@contextmanager
def user_input() -> Iterator[None]:
    """Within this block, a wire model refusing what the user gave raises `InvalidInput`."""
    try:
        yield
    except ValidationError as exc:
        raise InvalidInput(describe_refusal(exc)) from None


def describe_refusal(exc: ValidationError) -> str:
    """The first refused field and why, in one line."""
    first = exc.errors(include_input=False, include_url=False)[0]
    names = [str(part) for part in first["loc"] if isinstance(part, str)]
    field = names[-1] if names else "input"
    if first["type"] == "string_pattern_mismatch" and field in _NAME_FIELDS:
        return f"{field} names are {NAME_RULE}"
    return f"{field}: {first['msg']}"
