"""What a user typed, checked where it becomes a wire model: pydantic's refusal is turned into
one `InvalidInput` line naming the field (never the value)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pydantic import TypeAdapter, ValidationError

from accord.errors import InvalidInput
from accord.wire.common import AccountName

NAME_RULE = "1-64 characters: lower-case letters, digits, '.', '_' or '-'"
_NAME_FIELDS = {"account", "group", "members", "admins"}
_ACCOUNT_NAMES = TypeAdapter(list[AccountName])


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


def account_names(names: Iterable[str]) -> list[str]:
    """Account names the user gave, each once and in order; one line if any is malformed."""
    try:
        return list(dict.fromkeys(_ACCOUNT_NAMES.validate_python(list(names))))
    except ValidationError:
        raise InvalidInput(f"account names are {NAME_RULE}") from None
