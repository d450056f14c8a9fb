"""`accord bank fetch`: hash lists from exchanges through python-threatexchange's clients,
incremental with a checkpoint kept per bank; StopNCII's client against recorded responses served
on loopback; the library's static sample; bad settings and unreadable checkpoints refused."""

from __future__ import annotations

import contextlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import InvalidInput
from accord.protocols.detection.signals import Md5Hash, PdqHash
from accord.storage.bank_fetch import fetch_into_bank
from accord.storage.banks import MemoryBankStore
from accord_testing import Cli

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5 = "facefacefacefacefacefacefaceface"


def _record(signal_type: str, value: str, feedback: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lastModtimestamp": 1_700_000_000,
        "signalType": signal_type,
        "hashValue": value,
        "hashStatus": "Active",
        "caseNumbers": {"case-1": "Active"},
        "CSPFeedbacks": feedback,
    }


# StopNCII FetchHashes answers in the shape its client parses (threatexchange 1.2.17,
# exchanges/clients/stopncii/api.py: FetchHashesResponse, StopNCIIHashRecord): two pages, then,
# from the checkpoint on, nothing new.
PAGES = {
    "": {
        "count": 2,
        "nextPageToken": "page-2",
        "nextSetTimestamp": 1_700_000_100,
        "hasMoreRecords": True,
        "hashRecords": [
            _record(
                "ImagePDQ", PDQ, [{"feedbackValue": "Blocked", "tags": ["ncii"], "source": "a"}]
            ),
            _record("URL", "https://example.com/x", []),  # not a type a bank keeps
        ],
    },
    "page-2": {
        "count": 2,
        "nextPageToken": None,
        "nextSetTimestamp": 1_700_000_200,
        "hasMoreRecords": False,
        "hashRecords": [
            _record("VideoMD5", MD5, []),
            _record("ImagePDQ", "00" * 32, [{"feedbackValue": "NotBlocked", "source": "b"}]),
        ],
    },
    "after": {
        "count": 0,
        "nextPageToken": None,
        "nextSetTimestamp": 1_700_000_200,
        "hasMoreRecords": False,
        "hashRecords": [],
    },
}


class _StopNcii(BaseHTTPRequestHandler):
    requests: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:  # noqa: N802 (the handler's name)
        url = urllib.parse.urlparse(self.path)
        query = urllib.parse.parse_qs(url.query)
        type(self).requests.append(query)
        assert url.path == "/v1/FetchHashes"
        assert self.headers["x-functions-key"] == "fetch-key"
        token = query.get("nextPageToken", [""])[0]
        page = PAGES["after"] if query["startTimestamp"] != ["10"] and not token else PAGES[token]
        body = json.dumps(page).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def stopncii() -> Iterator[str]:
    _StopNcii.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StopNcii)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_stopncii_fetch_is_incremental(tmp_path: Path, stopncii: str) -> None:
    op = Cli(tmp_path / "home", env={"TX_STOPNCII_KEYS": f"fetch-key,sub-key,{stopncii}"})
    op.run("bank", "create", "ncii")
    first = op.run("bank", "fetch", "ncii", "--exchange", "stop_ncii").stdout
    assert "fetched 4 updates from stop_ncii into ncii: 3 new, skipped 1 unsupported" in first
    second = op.run("bank", "fetch", "ncii", "--exchange", "stop_ncii").stdout
    assert "fetched 0 updates from stop_ncii into ncii: 0 new" in second
    # The second fetch started from the checkpoint the first one stored.
    starts = [(q["startTimestamp"][0], q.get("nextPageToken", [""])[0]) for q in _StopNcii.requests]
    assert starts == [("10", ""), ("10", "page-2"), ("1700000200", "")]
    exported = op.run("bank", "export", "ncii", "--format", "csv").stdout
    assert f"pdq,{PDQ},ncii" in exported and f"md5,{MD5}," in exported
    # One provider's NotBlocked beside the case makes it DISPUTED in python-threatexchange's
    # aggregate: kept enabled (only NEGATIVE_CLASS is stored disabled).
    assert f"pdq,{'00' * 32}," in exported


def test_sample_exchange_and_refusals(tmp_path: Path) -> None:
    op = Cli(tmp_path / "home")
    op.run("bank", "create", "sample")
    out = op.run("bank", "fetch", "sample", "--exchange", "sample").stdout
    assert "new" in out and "fetched 0" not in out
    again = op.run("bank", "fetch", "sample", "--exchange", "sample").stdout
    assert ": 0 new" in again  # the sample has no checkpoint: fetched whole, nothing new
    for args, message in [
        (("--exchange", "nope"), "unknown exchange"),
        (("--exchange", "local_file", "--set", "colour=red"), "has no setting 'colour'"),
        (("--exchange", "ncmec", "--set", "environment=Nowhere"), "bad setting for the ncmec"),
    ]:
        result = op.run("bank", "fetch", "sample", *args, check=False)
        assert result.returncode == 2 and message in result.stderr, result.stderr


def test_local_file_exchange_and_a_bad_checkpoint(tmp_path: Path) -> None:
    store = MemoryBankStore()
    store.create_bank("b")
    listed = tmp_path / "list.txt"
    listed.write_text(f"pdq {PDQ}\nvideo_md5 {MD5}\nvideo_sha256 {'ab' * 32}\nurl x\n")
    result = fetch_into_bank(store, "b", exchange="local_file", options={"filename": str(listed)})
    assert (result.added, result.skipped) == (3, 1)
    hashes = {e.hash for e in store.iter_entries("b")}
    assert PdqHash.from_hex(PDQ) in hashes and Md5Hash.from_hex(MD5) in hashes
    assert store.get_fetch_checkpoint("b", "local_file") == "{}"
    store.put_fetch_checkpoint("b", "local_file", "[not a checkpoint")
    with pytest.raises(InvalidInput, match="checkpoint is unreadable"):
        fetch_into_bank(store, "b", exchange="local_file", options={"filename": str(listed)})


FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_listed_signals(tmp_path: Path, text: str) -> None:
    """Whatever an exchange's records hold, an entry is stored or skipped, never a crash."""
    store = _FUZZ_STORE
    listed = tmp_path / "fuzz.txt"
    listed.write_text(text, encoding="utf-8", errors="replace")
    with contextlib.suppress(InvalidInput):
        fetch_into_bank(store, "fuzz", exchange="local_file", options={"filename": str(listed)})


_FUZZ_STORE = MemoryBankStore()
_FUZZ_STORE.create_bank("fuzz")
