"""Reading the whole log, proven complete (client/log_scan.py): a server answering in the log's
place with anything at all gets a clear refusal, never a traceback, and never a short read."""

from __future__ import annotations

import base64
import json

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.client.api import ServerApi
from accord.client.log_scan import LogPosition, read_new_entries
from accord.errors import AccordError
from accord.protocols.translog import merkle
from accord.protocols.translog.note import Checkpoint
from accord_testing import JSON_VALUES

ENTRIES = [f'{{"type":"test.v1","i":{i}}}'.encode() for i in range(7)]
CHECKPOINT = Checkpoint("log.test", 7, merkle.root_hash([merkle.leaf_hash(e) for e in ENTRIES]))


def _api(answer: object) -> ServerApi:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answer)

    return ServerApi("http://log.test", transport=httpx.MockTransport(handler))


def _honest(request: httpx.Request) -> httpx.Response:
    start, end = int(request.url.params["start"]), int(request.url.params["end"])
    page = [base64.b64encode(e).decode() for e in ENTRIES[start:end]]
    return httpx.Response(200, json={"start": start, "entries": page})


def test_entries_read_in_pieces_give_the_checkpoint_root() -> None:
    api = ServerApi("http://log.test", transport=httpx.MockTransport(_honest))
    first_cp = Checkpoint(
        "log.test", 3, merkle.root_hash([merkle.leaf_hash(e) for e in ENTRIES[:3]])
    )
    got, position = read_new_entries(api, LogPosition(), first_cp)
    rest, position = read_new_entries(api, position, CHECKPOINT)
    assert [e for _, e in got + rest] == ENTRIES
    assert [i for i, _ in got + rest] == list(range(7))
    assert position == LogPosition.from_obj(json.loads(json.dumps(position.to_obj())))


def test_a_hidden_or_swapped_entry_is_refused() -> None:
    def hiding(request: httpx.Request) -> httpx.Response:
        answer = _honest(request)
        page = json.loads(answer.content)
        page["entries"][4] = base64.b64encode(b'{"type":"test.v1","i":99}').decode()
        return httpx.Response(200, json=page)

    api = ServerApi("http://log.test", transport=httpx.MockTransport(hiding))
    try:
        read_new_entries(api, LogPosition(), CHECKPOINT)
    except AccordError as exc:
        assert exc.code == "log_entries_mismatch"
    else:
        raise AssertionError("a swapped entry was accepted")


@settings(max_examples=150, deadline=None)
@given(
    answer=JSON_VALUES
    | st.fixed_dictionaries({"entries": st.lists(st.text(max_size=40), max_size=9)})
)
def test_any_answer_in_the_logs_place_fails_only_as_an_accord_error(answer: object) -> None:
    try:
        read_new_entries(_api(answer), LogPosition(), CHECKPOINT)
    except AccordError:
        return
    raise AssertionError("an answer that is not the log was accepted")
