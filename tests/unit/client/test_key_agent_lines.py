"""The store-key agent's one-line requests and replies: what each side accepts from the other."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.client.key_agent import (
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    AgentReply,
    AgentRequest,
    parse_agent_reply,
    parse_agent_request,
    parse_store_key,
)
from accord.errors import InvalidInput
from accord.primitives.encoding import b64encode
from accord.primitives.storage_crypto import StoreKey


@pytest.mark.parametrize("request_", list(AgentRequest))
def test_every_request_parses(request_: AgentRequest) -> None:
    assert parse_agent_request(f"{request_.value}\n".encode()) is request_


@pytest.mark.parametrize(
    "line", [b"", b"\n", b"KEY\n", b"key \n", b"keys\n", b"key\nkey\n", b"\xff\n", b"k" * 40]
)
def test_other_requests_are_refused(line: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_agent_request(line)


def test_a_key_reply_round_trips() -> None:
    key = StoreKey(bytes(range(32)))
    reply = AgentReply(ok=True, value=b64encode(key.value))
    assert parse_store_key(parse_agent_reply(reply.encode())) == key
    assert repr(key) == "StoreKey(<secret>)"


@pytest.mark.parametrize(
    "line",
    [
        b"ok",  # no line break
        b"maybe\n",
        b"ok a b\n",
        b"ok \x07\n",
        b"ok " + b"A" * MAX_REPLY_BYTES + b"\n",
        b"\xc3\xa9\n",
    ],
)
def test_malformed_replies_are_refused(line: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_agent_reply(line)


@pytest.mark.parametrize(
    "value", ["", "expired", "AAAA", b64encode(bytes(31)), b64encode(bytes(33))]
)
def test_a_reply_without_a_whole_key_gives_none(value: str) -> None:
    with pytest.raises(InvalidInput):
        parse_store_key(parse_agent_reply(AgentReply(ok=value != "expired", value=value).encode()))


@given(st.binary(max_size=2 * MAX_REQUEST_BYTES))
def test_any_request_bytes_parse_or_are_refused(data: bytes) -> None:
    try:
        assert parse_agent_request(data) in set(AgentRequest)
    except InvalidInput:
        pass


@given(st.binary(max_size=2 * MAX_REPLY_BYTES) | st.text(max_size=60).map(str.encode))
def test_any_reply_bytes_parse_or_are_refused(data: bytes) -> None:
    try:
        reply = parse_agent_reply(data)
    except InvalidInput:
        return
    assert parse_agent_reply(reply.encode()) == reply
    try:
        assert len(parse_store_key(reply).value) == 32
    except InvalidInput:
        pass
