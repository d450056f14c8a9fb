"""Private matching against a dishonest provider (issue 14, items 5-7; threat model, "Private
matching").

Each test plays the provider with only the provider's own access, against the real server:
- it publishes (and logs) a table with 8-bit bands, a threshold of 2 and no synthetic vouchers:
  the client refuses it below its floors (`matching_params_below_floor`) and sends no image;
- it answers `GET /v1/matching/table` in the server's place with an older table, properly logged,
  with a fresh checkpoint and a valid inclusion proof: the client reads the log after that entry,
  finds the later table and refuses (`matching_table_not_latest`);
- it reads every table of its own database after images were sent: no voucher or share row
  names the message, a recipient or a time, and no other row names a voucher;
- it answers the table-delta route with its real delta changed in one byte: the client refuses
  it (`table_delta_mismatch`), downloads the whole table and ends with the logged one;
- it lets an account link a second device and counts: the second device continues the
  account's count (the threshold is crossed across the two devices), and the recovered voucher
  key is sealed at rest.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Integer, select

from accord.cli.demo_matching import make_picture
from accord.client.client import AccordClient
from accord.errors import AccordError, ConfigurationError, VerificationError
from accord.protocols.private_matching.params import DEFAULT_THRESHOLD
from accord.protocols.private_matching.voucher import open_inner_payload
from accord.server.secrets import is_sealed
from accord.storage import banks, schema, translog
from accord.storage.schema import messages, pm_events
from accord_testing import TEST_KDF_COST
from matching_testing import (
    TableRequests,
    bank_and_publish,
    drain_matching,
    server_engine,
    stored_shares,
)

PASS = "test passphrase"
T = DEFAULT_THRESHOLD
pytestmark = pytest.mark.timeout(300)
ON_SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)
EVERY_TABLE = [
    t for md in (schema.metadata, banks.metadata, translog.metadata) for t in md.sorted_tables
]


def _pictures(folder: Path, first_seed: int, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [make_picture(folder / f"p{first_seed + i}.png", first_seed + i) for i in range(n)]


def _new_client(home: Path, server: Any, name: str, **kwargs: Any) -> AccordClient:
    return AccordClient.create_account(
        home, server.url, name, PASS, kdf_cost=TEST_KDF_COST, **kwargs, insecure_dev=True
    )


# --- item 5: parameters with floors -------------------------------------------------------------


@ON_SQLITE
def test_a_table_below_the_floors_is_refused(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    pool = _pictures(tmp_path / "bank", 100, 4)
    others = _pictures(tmp_path / "others", 200, 2)
    bob = unique("bob")
    _new_client(tmp_path / "b", server, bob).close()
    # The provider's table of the issue: 8-bit bands, threshold 2, no synthetic vouchers. It is
    # a real, logged table: the server serves it to every client.
    weak = bank_and_publish(
        server, unique("weak"), pool, band_bits=8, threshold=2, synthetic_rate_ppm=0
    )
    assert weak["log_index"] is not None
    alice = _new_client(tmp_path / "a", server, unique("alice"))
    try:
        with pytest.raises(VerificationError) as refused:
            alice.send(bob, "a holiday photo", [others[0]])
        assert refused.value.code == "matching_params_below_floor"
        for broken in ("threshold 2 (floor 12)", "synthetic rate (ppm) 0 (floor 10,000)",
                       "band bits 8 (floor 40)"):  # fmt: skip
            assert broken in refused.value.message
        alice.send(bob, "text still goes")  # no image, no voucher, no table needed
    finally:
        alice.close()

    # The same client accepts the provider's next table, at the floors' defaults.
    bank_and_publish(server, unique("fair"), pool)
    alice = AccordClient(tmp_path / "a", PASS)
    try:
        alice.send(bob, "a holiday photo", [others[1]])
    finally:
        alice.close()


class _ServesOlderTable(httpx.BaseTransport):
    """The provider answering `GET /v1/matching/table` in its server's place: an older logged
    table, with the current checkpoint and a valid inclusion proof at its size. Everything else
    goes to the real server."""

    def __init__(self, server_url: str, older: dict[str, Any]) -> None:
        self._real = httpx.HTTPTransport()
        self._url = server_url
        self._older = older

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/matching/table":
            return self._real.handle_request(request)
        current = httpx.get(f"{self._url}/v1/matching/table").json()
        size = int(current["checkpoint"].splitlines()[1])
        proof = httpx.get(
            f"{self._url}/v1/log/proof/inclusion",
            params={"index": self._older["log_index"], "size": size},
        ).json()["proof"]
        answer = {
            **current,
            **{k: self._older[k] for k in ("table_version", "digest", "size", "params")},
            "log_index": self._older["log_index"],
            "log_entry": self._older["log_entry"],
            "inclusion_proof": proof,
        }
        return httpx.Response(200, json=answer)


@ON_SQLITE
def test_an_older_logged_table_is_refused(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    pool = _pictures(tmp_path / "bank", 300, 4)
    photo = _pictures(tmp_path / "others", 400, 1)[0]
    bob = unique("bob")
    _new_client(tmp_path / "b", server, bob).close()
    bank_and_publish(server, unique("old"), pool[:2])
    older = httpx.get(f"{server.url}/v1/matching/table").json()
    bank_and_publish(server, unique("new"), pool)  # the latest, logged after the older one

    # The provider serves the older table to alice (say, one that lacks entries it will add).
    proxy = _ServesOlderTable(server.url, older)
    alice = _new_client(tmp_path / "a", server, unique("alice"), transport=proxy)
    try:
        with pytest.raises(VerificationError) as refused:
            alice.send(bob, "a photo", [photo])
        assert refused.value.code == "matching_table_not_latest"
        assert f"table {older['table_version']}" in refused.value.message
    finally:
        alice.close()

    # Served honestly, the latest table is accepted by the same kind of client.
    carol = _new_client(tmp_path / "c", server, unique("carol"))
    try:
        carol.send(bob, "a photo", [photo])
    finally:
        carol.close()


# --- item 6: no links below the threshold; counted per account --------------------------------


def _values(row: Any) -> list[Any]:
    return list(row._mapping.values())


def test_no_voucher_row_links_to_a_message_recipient_or_time(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    pool = _pictures(tmp_path / "bank", 500, T)
    others = _pictures(tmp_path / "others", 600, 6)
    a, b = unique("alice"), unique("bob")
    bank_and_publish(server, unique("standins"), pool)
    bob = _new_client(tmp_path / "b", server, b)
    alice = _new_client(tmp_path / "a", server, a)
    try:
        real = [p for p in pool if not alice.vouchers.is_synthetic(p)][:3]
        sent = [
            alice.send(b, "one", [others[0], real[0], others[1]]),
            alice.send(b, "two", [real[1], others[2]]),
            alice.send(b, "three", [others[3], real[2], others[4], others[5]]),
        ]
        drain_matching(server)
        bob_devices = {bob.device_id}
    finally:
        alice.close()
        bob.close()

    engine = server_engine(server)
    try:
        with engine.connect() as conn:
            stored = conn.execute(
                select(messages.c.message_id, messages.c.created_at).where(
                    messages.c.message_id.in_(sent)
                )
            ).all()
            assert len(stored) == 3
            times = [int(r.created_at) for r in stored]
            blob_ids = {
                ref["blob_id"]
                for r in conn.execute(select(messages.c.extensions)).scalars()
                for ref in json.loads(r).get("attachments", [])
            }
            # Every voucher/share row of alice's account, in every table that has them.
            voucher_rows = []
            for table in EVERY_TABLE:
                if table.name.startswith("pm_") and "matching_account" in table.c:
                    voucher_rows += [
                        (table.name, r)
                        for r in conn.execute(select(table).where(table.c.matching_account == a))
                    ]
            assert {name for name, _ in voucher_rows} >= {
                "pm_accounts", "pm_seen_vouchers", "pm_shares"
            }  # fmt: skip
            assert not any(
                name in ("pm_queue", "pm_epochs", "pm_events") for name, _ in voucher_rows
            )
            voucher_ids = {
                bytes(r.voucher_id) for name, r in voucher_rows if name == "pm_seen_vouchers"
            }
            assert len(voucher_ids) == 9  # every image's voucher was processed
            forbidden = {*sent, *blob_ids, b, *bob_devices}
            for name, row in voucher_rows:
                for value in _values(row):
                    assert value not in forbidden, (name, value)
                    if isinstance(value, int) and not isinstance(value, bool):
                        # no send time, to the hour either way
                        assert not min(times) - 3_600_000 <= value <= max(times) + 3_600_000, (
                            name, value
                        )  # fmt: skip
            # Nor does any other row of the database name one of these vouchers.
            encodings = [
                form
                for vid in voucher_ids
                for form in (vid, vid.hex(), base64.b64encode(vid).decode(),
                             base64.urlsafe_b64encode(vid).decode().rstrip("="))
            ]  # fmt: skip
            for table in EVERY_TABLE:
                if table.name in ("pm_seen_vouchers", "pm_shares"):
                    continue
                for row in conn.execute(select(table)):
                    for value in _values(row):
                        if isinstance(value, (bytes, memoryview, str)):
                            text = bytes(value) if not isinstance(value, str) else value
                            for form in encodings:
                                if type(form) is type(text):
                                    assert form not in text, (table.name, form)
            # No integer column of the voucher tables could carry a time of its own.
            for table in EVERY_TABLE:
                if table.name in ("pm_seen_vouchers", "pm_shares", "pm_queue", "pm_accounts"):
                    assert not any("time" in c.name or c.name.endswith("_at") for c in table.c), (
                        table.name
                    )
                    assert not [c.name for c in table.c if isinstance(c.type, Integer)
                                and c.name not in ("id", "epoch", "vouchers", "rejected",
                                                   "latest_epoch")], table.name  # fmt: skip
    finally:
        engine.dispose()


def _check_sealed(server: Any, account: str) -> int:
    """The account's share count; past a crossing, its voucher key is sealed at rest: as stored
    it opens no payload, opened with the server's secrets key it does."""
    shares, sealed, opened = stored_shares(server, account)
    if sealed is None:
        return len(shares)
    assert opened is not None and is_sealed(sealed) and opened not in sealed
    for key, opens in ((sealed, False), (opened, True)):
        results = []
        for s in shares:
            try:
                open_inner_payload(s, key)
                results.append(True)
            except (AccordError, ValueError):
                results.append(False)
        assert any(results) is opens
    return len(shares)


def test_linking_a_device_does_not_reset_the_account_count(server, tmp_path, unique):  # type: ignore[no-untyped-def]
    pool = _pictures(tmp_path / "bank", 700, T + 4)
    a, b = unique("alice"), unique("bob")
    bank_and_publish(server, unique("standins"), pool)
    _new_client(tmp_path / "b", server, b).close()
    phone = _new_client(tmp_path / "phone", server, a)
    try:
        real = [p for p in pool if not phone.vouchers.is_synthetic(p)][:T]
        assert len(real) == T
        phone.send(b, "first ones", real[: T - 1])
        drain_matching(server)
        assert _check_sealed(server, a) == T - 1
        assert stored_shares(server, a)[1] is None

        # alice links a laptop; until the phone has sent it the account's secret, the laptop
        # makes no voucher (so it cannot start a count of its own).
        laptop, code = AccordClient.start_link(
            tmp_path / "laptop", server.url, a, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        try:
            phone.approve_device(code)
            laptop.receive()  # activates the laptop: it publishes its keys
            with pytest.raises(ConfigurationError) as pending:
                laptop.send(b, "too early", [real[T - 1]])
            assert pending.value.code == "matching_secret_pending"
            phone.receive()  # the phone's next contact sends the secret, end to end encrypted
            got = laptop.receive()
            assert got.rejected == [] and got.messages == []  # taken, nothing to show
            laptop.send(b, "one more from the laptop", [real[T - 1]])
        finally:
            laptop.close()
    finally:
        phone.close()
    drain_matching(server)

    # One count for the account: the laptop's image was the t-th, and crossed the threshold.
    assert _check_sealed(server, a) == T
    assert stored_shares(server, a)[1] is not None
    engine = server_engine(server)
    try:
        with engine.connect() as conn:
            events = conn.execute(select(pm_events).where(pm_events.c.account == a)).all()
    finally:
        engine.dispose()
    assert [(e.kind, e.images) for e in events] == [("threshold", T)]


# --- a table delta changed by the server ------------------------------------------------------


def _change_last_point(delta: bytes) -> bytes:
    """The server's own delta with one changed byte in the last slot's point: a delta the
    provider could send to make one client's copy of the table differ from everyone's."""
    return delta[:-1] + bytes([delta[-1] ^ 1])


@ON_SQLITE
def test_a_changed_table_delta_is_refused_and_the_logged_table_used(
    server, tmp_path, unique, caplog
):  # type: ignore[no-untyped-def]
    pool = _pictures(tmp_path / "bank", 900, 41)
    photos = _pictures(tmp_path / "others", 1000, 2)
    bob = unique("bob")
    _new_client(tmp_path / "b", server, bob).close()
    bank_and_publish(server, unique("before"), pool[:40])
    provider = TableRequests(change_delta=_change_last_point)
    alice = _new_client(tmp_path / "a", server, unique("alice"), transport=provider)
    try:
        alice.send(bob, "a photo", [photos[0]])
    finally:
        alice.close()
    second = bank_and_publish(server, unique("after"), pool[1:])
    assert second["delta_from"] is not None

    provider.paths.clear()
    alice = AccordClient(tmp_path / "a", PASS, transport=provider)
    try:
        with caplog.at_level(logging.WARNING, logger="accord.client.vouchers"):
            alice.send(bob, "another photo", [photos[1]])
    finally:
        alice.close()
    # The changed delta is refused with its code, the whole table downloaded instead, and the
    # device ends with the logged table.
    assert [r.getMessage() for r in caplog.records if "table_delta_mismatch" in r.getMessage()]
    table = f"/v1/matching/tables/{second['digest']}"
    assert provider.paths == [f"{table}/delta", table]
    folder = tmp_path / "a" / "matching-tables"
    (cached,) = folder.glob("*.table")
    assert cached.name == f"{second['digest']}.table"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == second["digest"]
