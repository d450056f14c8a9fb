"""`accord bank fetch --exchange ncmec`: python-threatexchange's own NCMEC client, unmodified,
against NCMEC's hash-sharing API v2 played on loopback.

The client only knows NCMEC's real addresses (`NCMECEnvironment`), so the test stands where the
network would: an HTTPS proxy (`HTTPS_PROXY`) takes the client's CONNECT to
report.cybertip.org:443 and answers the TLS inside it with a certificate from a test CA the
client is told to trust (`REQUESTS_CA_BUNDLE`). Behind it, the API answers `GET /v2/entries` as
NCMEC documents it: the entries whose timestamps fall in [from, to), a page at a time, with a
`next` link to the following page. The answers are written here in the documented `queryResult`
shape: images with MD5, SHA-1, PhotoDNA and PDQ fingerprints, a video with MD5, a deleted
image.

What is checked: every fingerprint Accord matches on is banked, MD5s of images included (the
library's own conversion keeps MD5 only for videos); entries get the same source and label as
`accord bank import --format ncmec` gives the same XML; a deletion upstream disables the
entries; a malformed fingerprint is skipped, not fatal; the second fetch starts from the stored
checkpoint; and a fetch cut off between two pages resumes at the next page.
"""

from __future__ import annotations

import base64
import json
import socketserver
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.errors import ServiceError
from accord.protocols.detection.importers import parse_ncmec_xml
from accord.storage.bank_fetch import fetch_into_bank
from accord.storage.banks import MemoryBankStore
from accord_testing import Cli

HOST = "report.cybertip.org"  # NCMECEnvironment.Industry
USER, PASSWORD = "esp-user", "esp-password"
PAGE = 2
#: NCMEC's date format (threatexchange's `_date_format`: local time, marked Z).
DATE = "%Y-%m-%dT%H:%M:%SZ"
T0 = 1_700_000_000  # the entries' time; every test fetch covers 0 to now

PDQ_1 = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
MD5_1, MD5_2, MD5_3, MD5_4 = ("a1" * 16, "b2" * 16, "c3" * 16, "d4" * 16)


@dataclass(frozen=True)
class Entry:
    """One record of the API: an image, a video, or a deletion of either."""

    kind: str  # image, video, deletedImage, deletedVideo
    member: int
    entry_id: str
    ts: int
    classification: str = ""
    fingerprints: tuple[tuple[str, str], ...] = ()

    def xml(self) -> str:
        stamp = datetime.fromtimestamp(self.ts, UTC).strftime(DATE)
        parts = [
            f'<member id="{self.member}">ESP {self.member}</member>',
            f"<timestamp>{stamp}</timestamp>",
            f"<id>{escape(self.entry_id)}</id>",
        ]
        if self.classification:
            parts.append(f"<classification>{self.classification}</classification>")
        if self.fingerprints:
            fps = "".join(f"<{tag}>{value}</{tag}>" for tag, value in self.fingerprints)
            parts.append(f"<fingerprints>{fps}</fingerprints>")
        return f"<{self.kind}>{''.join(parts)}</{self.kind}>"


FIRST = [
    Entry(
        "image",
        42,
        "img-1",
        T0,
        "A1",
        (("md5", MD5_1), ("sha1", "e5" * 20), ("pdna", "0a" * 72), ("pdq", PDQ_1)),
    ),
    Entry("image", 42, "img-2", T0, "B1", (("md5", MD5_2),)),
    Entry("video", 42, "vid-1", T0, "A2", (("md5", MD5_3), ("sha1", "f6" * 20))),
    Entry("image", 7, "img-3", T0, "A1", (("md5", MD5_4), ("sha1", "07" * 20))),
]


@dataclass
class Api:
    """NCMEC's hash-sharing API as the test plays it."""

    entries: list[Entry] = field(default_factory=lambda: list(FIRST))
    requests: list[dict[str, str]] = field(default_factory=list)
    pages: list[bytes] = field(default_factory=list)  # every queryResult served
    connects: list[str] = field(default_factory=list)
    refuse_start: int | None = None  # refuse (once) the page starting at this entry

    def answer(self, path: str, auth: str | None) -> tuple[int, bytes]:
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if auth != expected:
            return 401, b""
        url = urllib.parse.urlsplit(path)
        if url.path != "/hashsharing/v2/entries":
            return 404, b""
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.requests.append(query)
        start = int(query.get("start", "1"))
        if start == self.refuse_start:
            self.refuse_start = None
            return 403, b""  # not retried by the client: the fetch stops here
        lo, hi = (int(datetime.strptime(query[k], DATE).timestamp()) for k in ("from", "to"))
        in_range = sorted(
            (e for e in self.entries if lo <= e.ts < hi), key=lambda e: (e.ts, e.entry_id)
        )
        page = in_range[start - 1 : start - 1 + PAGE]
        groups = []
        for name, kinds in (("images", ("image", "deletedImage")), ("videos", ("video",))):
            members = [e for e in page if e.kind in kinds]
            if members:
                top = datetime.fromtimestamp(max(e.ts for e in members), UTC).strftime(DATE)
                body = "".join(e.xml() for e in members)
                groups.append(
                    f'<{name} count="{len(members)}" maxTimestamp="{top}">{body}</{name}>'
                )
        paging = ""
        if start - 1 + PAGE < len(in_range):
            following = urllib.parse.urlencode(
                {
                    "from": query["from"],
                    "to": query["to"],
                    "start": start + PAGE,
                    "size": PAGE,
                    "max": len(in_range),
                }
            )
            paging = f"<paging><next>{escape('/v2/entries?' + following)}</next></paging>"
        body = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<queryResult xmlns="https://hashsharing.ncmec.org/hashsharing/v2">'
            f"{''.join(groups)}{paging}</queryResult>"
        ).encode()
        self.pages.append(body)
        return 200, body


class _ApiHandler(BaseHTTPRequestHandler):
    """The API, spoken over the TLS connection the proxy opened (its server is the proxy)."""

    server: _Proxy

    def do_GET(self) -> None:  # noqa: N802 (the handler's name)
        status, body = self.server.api.answer(self.path, self.headers.get("Authorization"))
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


class _Proxy(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, api: Api, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.api, self.tls = api, tls


class _ProxyHandler(socketserver.StreamRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        request = self.rfile.readline(65537).decode("latin-1").split()
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass
        if len(request) != 3 or request[0] != "CONNECT" or request[1] != f"{HOST}:443":
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.api.connects.append(request[1])
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        with self.server.tls.wrap_socket(self.connection, server_side=True) as tls:
            _ApiHandler(tls, self.client_address, self.server)


def _certificates(directory: Path) -> ssl.SSLContext:
    """A test CA (written to ca.pem for the client to trust) and a certificate it issued for
    NCMEC's host, loaded into the server side's TLS context."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Accord test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(HOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (directory / "leaf.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")
    return tls


@dataclass
class Ncmec:
    api: Api
    env: dict[str, str]


@pytest.fixture
def ncmec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ncmec]:
    api = Api()
    proxy = _Proxy(api, _certificates(tmp_path))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    env = {
        "HTTPS_PROXY": f"http://127.0.0.1:{proxy.server_address[1]}",
        "REQUESTS_CA_BUNDLE": str(tmp_path / "ca.pem"),
        "TX_NCMEC_CREDENTIALS": f"{USER}:{PASSWORD}",
    }
    for name in ("NO_PROXY", "no_proxy", "https_proxy", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        yield Ncmec(api, env)
    finally:
        proxy.shutdown()
        proxy.server_close()


def _banked(store: MemoryBankStore, bank: str) -> set[tuple[str, str, str, str, bool]]:
    return {
        (e.signal_type, e.hash.hex(), e.source, e.label, e.enabled)
        for e in store.iter_entries(bank)
    }


def _imported(pages: list[bytes]) -> set[tuple[str, str, str, str, bool]]:
    """What `accord bank import --format ncmec` makes of the same documents."""
    out = set()
    for page in pages:
        for e in parse_ncmec_xml(page).entries:
            out.add((e.signal_type, e.hash.hex(), e.source, e.label, e.enabled))
    return out


def test_ncmec_fetch_banks_what_accord_matches_and_follows_deletions(
    tmp_path: Path, ncmec: Ncmec
) -> None:
    op = Cli(tmp_path / "home", env=ncmec.env)
    op.run("bank", "create", "ncmec-industry")
    first = op.run(
        "bank", "fetch", "ncmec-industry", "--exchange", "ncmec", "--set", "environment=Industry"
    ).stdout
    # 4 entries: img-1's MD5 and PDQ, img-2's and vid-1's MD5, img-3's MD5 (ESP 7).
    assert "fetched 4 updates from ncmec into ncmec-industry: 5 new" in first, first
    assert set(ncmec.api.connects) == {f"{HOST}:443"}
    exported = op.run("bank", "export", "ncmec-industry", "--format", "csv").stdout
    for value in (PDQ_1, MD5_1, MD5_2, MD5_3, MD5_4):
        assert value in exported

    # The same entries, sources and labels as importing the XML the API served.
    store = MemoryBankStore()
    store.create_bank("b")
    fetch_into_bank(store, "b", exchange="ncmec", options={"environment": "Industry"})
    assert _banked(store, "b") == _imported(ncmec.api.pages)
    assert ("md5", MD5_2, "ncmec:42/img-2", "B1", True) in _banked(store, "b")
    assert ("pdq", PDQ_1, "ncmec:42/img-1", "A1", True) in _banked(store, "b")

    # Upstream, img-2 is deleted and a new entry arrives with a malformed PDQ: the next fetch
    # starts from the stored checkpoint, disables img-2 and skips the bad fingerprint only. (The
    # first fetch ended at the present; the stored checkpoint is moved back to an hour after
    # the first entries, as if that fetch had been made then, so the test need not wait for
    # the clock to pass the entries it adds.)
    stored = json.loads(store.get_fetch_checkpoint("b", "ncmec") or "{}")
    assert stored["get_entries_max_ts"] >= int(time.time()) - 3600
    since = T0 + 3600
    store.put_fetch_checkpoint("b", "ncmec", json.dumps({**stored, "get_entries_max_ts": since}))
    ncmec.api.entries += [
        Entry("deletedImage", 42, "img-2", since + 10),
        Entry("image", 42, "img-4", since + 10, "A1", (("pdq", "zz" * 32), ("md5", "e5" * 16))),
    ]
    ncmec.api.requests.clear()
    result = fetch_into_bank(store, "b", exchange="ncmec", options={"environment": "Industry"})
    assert (result.added, result.disabled, result.skipped) == (1, 1, 1)
    assert all(_ts(q["from"]) >= since for q in ncmec.api.requests)
    banked = _banked(store, "b")
    assert ("md5", MD5_2, "ncmec:42/img-2", "B1", False) in banked
    assert ("md5", "e5" * 16, "ncmec:42/img-4", "A1", True) in banked

    # Only the ESPs asked for (`only_esp_ids`).
    only = MemoryBankStore()
    only.create_bank("b")
    fetch_into_bank(
        only, "b", exchange="ncmec", options={"environment": "Industry", "only_esp_ids": [7]}
    )
    assert {source for _, _, source, _, _ in _banked(only, "b")} == {"ncmec:7/img-3"}


def test_ncmec_fetch_cut_off_between_pages_resumes_at_the_next_page(ncmec: Ncmec) -> None:
    store = MemoryBankStore()
    store.create_bank("b")
    ncmec.api.refuse_start = 1 + PAGE  # the second page of the range holding the entries
    with pytest.raises(ServiceError, match="fetching from ncmec failed"):
        fetch_into_bank(store, "b", exchange="ncmec", options={"environment": "Industry"})
    assert len(_banked(store, "b")) == 3  # the first page: img-1 (MD5, PDQ) and img-2
    stored = store.get_fetch_checkpoint("b", "ncmec")
    assert stored is not None and "paging_url" in stored and f"start={1 + PAGE}" in stored

    ncmec.api.requests.clear()
    result = fetch_into_bank(store, "b", exchange="ncmec", options={"environment": "Industry"})
    assert ncmec.api.requests[0].get("start") == str(1 + PAGE)  # resumed, not restarted
    assert result.added == 2
    assert len(_banked(store, "b")) == 5


def _ts(stamp: str) -> int:
    return int(datetime.strptime(stamp, DATE).timestamp())
