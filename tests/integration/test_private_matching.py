"""Private threshold matching through the real server, client and CLI
(docs/protocol/private-matching.md).

Acceptance 3: alice sends t-1 banked stand-in images among 100 others and no review event
exists; one more and an event appears with exactly the t banked images and their distances;
nothing of the other 100 can be opened; one banked image sent t times crosses nothing.
Acceptance 4 (through the server): malformed, tampered and replayed vouchers are refused with
4xx JSON codes, except what would tell a sender that a voucher opened. Acceptance 1 (wired): the
client holds no banked hash and its vouchers have one size; a table whose digest is not the
logged one is refused.

One server per module and database kind. Tables, banks' contents and matching counters are the
server's, so a test names its own bank, publishes its own table (the newest is the one clients
use), and compares the server's counters, events and log before and after what it does (tests in
a module run one at a time). The client's refusal of a table that is not the logged one runs on
SQLite only.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import select

from accord.cli.demo_matching import make_picture
from accord.client.client import AccordClient
from accord.errors import AccordError, VerificationError
from accord.protocols.detection.hashers import hash_file
from accord.protocols.private_matching.log_entries import (
    TAG_HASH_LIST_VERSION,
    TAG_THRESHOLD_CROSSING,
)
from accord.protocols.private_matching.params import DEFAULT_THRESHOLD, MatchingParams
from accord.protocols.private_matching.voucher import (
    HEADER_BYTES,
    open_inner_payload,
    voucher_size,
)
from accord.storage.banks import bank_banks, bank_entries
from accord.storage.schema import accounts, devices, messages
from accord_testing import TEST_KDF_COST, eventually
from matching_testing import (
    TableRequests,
    admin_client,
    bank_and_publish,
    drain_matching,
    server_engine,
    stored_shares,
)

PASS = "test passphrase"
T = DEFAULT_THRESHOLD
SHARED = Path(
    os.environ.get("ACCORD_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared")
)
IMAGES = SHARED / "data" / "images"
pytestmark = pytest.mark.timeout(300)
# The module's SQLite server (not a third process) for checks where the database kind is moot.
ON_SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@pytest.fixture
def standins(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """Banked stand-ins (benign photos standing in for list entries) and 100 unrelated photos,
    copied so their paths are short."""
    if not (IMAGES / "highres").is_dir() or not (IMAGES / "fp").is_dir():
        pytest.skip(f"sample images not found under {IMAGES}")
    out: list[list[Path]] = []
    for folder, n in (("highres", T + 6), ("fp", 100)):
        dest = tmp_path / folder
        dest.mkdir()
        picked = sorted((IMAGES / folder).glob("*.jpg"))[:n]
        out.append([Path(shutil.copy(p, dest / p.name)) for p in picked])
    return out[0], out[1]


def _log_types(server: Any) -> list[str]:
    """The type of every entry in the server's log, in order (over as many pages as it takes)."""
    entries: list[str] = []
    while page := httpx.get(f"{server.url}/v1/log/entries", params={"start": len(entries)}).json()[
        "entries"
    ]:
        entries += page
    return [json.loads(base64.b64decode(e))["type"] for e in entries]


def _indices(types: list[str], tag: str) -> set[int]:
    return {i for i, t in enumerate(types) if t == tag}


def _events(op: Any, server: Any) -> list[dict[str, Any]]:
    listing = json.loads(op.run("matching", "events", "--server", server.url, "--json").stdout)
    assert set(listing) == {"events"}
    events: list[dict[str, Any]] = listing["events"]
    return events


def _pdq(path: Path) -> bytes:
    hashes = hash_file(path, video=False)
    assert hashes.pdq is not None
    return hashes.pdq.hash.value


def _opened(server: Any, account: str) -> tuple[list[Any], list[bytes]]:
    """An account's stored shares past its threshold, and the PDQ hashes of those whose inner
    payload opens with the recovered voucher key."""
    shares, _, key = stored_shares(server, account)
    assert key is not None
    opened = []
    for s in shares:
        try:
            opened.append(open_inner_payload(s, key)[0].value)
        except AccordError:
            continue
    return shares, opened


def test_threshold_crossed_end_to_end_over_the_cli(server, cli, standins, unique):  # type: ignore[no-untyped-def]
    pool, others = standins
    bank, a, b, d = unique("standins"), unique("alice"), unique("bob"), unique("dave")
    op = cli("operator")
    op.env["ACCORD_ADMIN_TOKEN"] = server.admin_token()
    # What earlier tests left on this server: counters, events and log entries.
    start = drain_matching(server)
    events_before = {e["event_id"] for e in _events(op, server)}
    types_before = _log_types(server)

    def new_events() -> list[dict[str, Any]]:
        return [e for e in _events(op, server) if e["event_id"] not in events_before]

    op.run("bank", "create", bank, "--server", server.url)
    op.run("bank", "add", bank, *map(str, pool), "--label", "stand-in", "--server", server.url)
    table = json.loads(
        op.run("matching", "publish", "--server", server.url, "--bank", bank, "--json").stdout
    )
    assert table["params"]["threshold"] == T and table["log_index"] is not None
    # The table banks every PDQ hash `bank add` stored for an image: its own and its derived
    # hashes (crops, rotations; docs/detection.md, section 9), about 30 per image.
    engine = server_engine(server)
    with engine.connect() as conn:
        stored = conn.execute(
            select(bank_entries.c.hash, bank_entries.c.variant)
            .join(bank_banks, bank_banks.c.id == bank_entries.c.bank_id)
            .where(bank_banks.c.name == bank, bank_entries.c.signal_type == "pdq")
        ).all()
    engine.dispose()
    assert len({r.variant for r in stored}) > 1
    assert table["banked_hashes"] == len({r.hash for r in stored}) > 5 * len(pool)
    types = _log_types(server)
    assert types.count(TAG_HASH_LIST_VERSION) == types_before.count(TAG_HASH_LIST_VERSION) + 1

    alice, bob, dave = cli("alice"), cli("bob"), cli("dave")
    for c, name in ((alice, a), (bob, b), (dave, d)):
        c.run("account", "create", name, "--server", server.url)
    # The synthetic coin is alice's own and deterministic per image: keep the stand-ins it leaves
    # real (a synthetic one adds no real share), and count the synthetic ones among the others.
    with AccordClient(alice.home, PASS) as client:
        real = [p for p in pool if not client.vouchers.is_synthetic(p)][:T]
        synthetic_others = sum(client.vouchers.is_synthetic(p) for p in others)
    assert len(real) == T

    # t-1 banked stand-ins among 100 others, in four messages.
    banked_cuts = [(0, 3), (3, 6), (6, 9), (9, T - 1)]
    for i, (lo, hi) in enumerate(banked_cuts):
        files = others[25 * i : 25 * (i + 1)] + real[lo:hi]
        alice.run("send", b, f"batch {i}", *[f"--attach={f}" for f in files])
    status = drain_matching(server)
    assert status["queued"] == 0
    assert status["vouchers_processed"] == start["vouchers_processed"] + 100 + T - 1
    assert new_events() == []
    assert _indices(_log_types(server), TAG_THRESHOLD_CROSSING) == _indices(
        types_before, TAG_THRESHOLD_CROSSING
    )
    bad = op.run("matching", "event", "nope", "--server", server.url, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    shares, _, key = stored_shares(server, a)
    assert key is None and len(shares) == T - 1 + synthetic_others

    # The vouchers stayed with the server: the stored messages (what bob gets) carry none.
    engine = server_engine(server)
    with engine.connect() as conn:
        stored = (
            conn.execute(
                select(messages.c.extensions)
                .join(devices, devices.c.id == messages.c.sender_device_pk)
                .join(accounts, accounts.c.id == devices.c.account_id)
                .where(accounts.c.name == a)
            )
            .scalars()
            .all()
        )
    engine.dispose()
    assert len(stored) == 4 and all("vouchers" not in json.loads(x) for x in stored)

    # One more banked image crosses the threshold.
    alice.run("send", b, "one more", f"--attach={real[T - 1]}")
    drain_matching(server)
    (event,) = new_events()
    assert event["account"] == a and event["kind"] == "threshold"
    assert event["images"] == T and event["discarded_band_collisions"] == 0
    saved = Path(op.home) / "derivatives"
    detail = json.loads(
        op.run(
            "matching", "event", event["event_id"], "--server", server.url, "--json",
            "--save-dir", str(saved),
        ).stdout
    )  # fmt: skip
    images = detail["images"]
    assert sorted(bytes.fromhex(i["pdq"]) for i in images) == sorted(_pdq(p) for p in real)
    assert all(i["bank"] == bank and i["distance"] == 0 for i in images)
    assert all(i["label"] == "stand-in" for i in images)
    pngs = sorted(saved.glob("*.png"))
    assert len(pngs) == T and all(Image.open(p).size == (64, 64) for p in pngs)
    crossings = _indices(_log_types(server), TAG_THRESHOLD_CROSSING)
    (crossing,) = crossings - _indices(types_before, TAG_THRESHOLD_CROSSING)
    assert len(crossings) == len(_indices(types_before, TAG_THRESHOLD_CROSSING)) + 1
    assert event["log_index"] == crossing

    # Nothing of the other 100 can be opened: their vouchers left no share at all, except the
    # synthetic ones, whose inner payload is random bytes; only the t real payloads open.
    shares, opened = _opened(server, a)
    assert len(shares) == T + synthetic_others
    assert sorted(opened) == sorted(_pdq(p) for p in real)

    # One banked image sent t times adds one share: no crossing.
    dave.run("send", b, "again", *[f"--attach={real[0]}"] * (T // 2))
    dave.run("send", b, "and again", *[f"--attach={real[0]}"] * (T - T // 2))
    drain_matching(server)
    dave_shares, _, dave_key = stored_shares(server, d)
    assert dave_key is None and len(dave_shares) <= 1
    assert [e["account"] for e in new_events()] == [a]

    # Bob receives every message and attachment; vouchers never reached him.
    received = [json.loads(x) for x in bob.run("receive", "--json").stdout.splitlines()]
    assert len(received) == 7 and sum(len(m["attachments"]) for m in received) == 100 + T + T


# --- through the library: refusals, logged tables ----------------------------------------------


class _Captured(Exception):
    pass


def _captured_send(client: AccordClient, to: str, files: list[Path]) -> dict[str, Any]:
    """The JSON body the client would POST to /v1/messages (not sent)."""
    body: dict[str, Any] = {}
    real_call = client.api.call

    def capture(model: Any, method: str, path: str, **kwargs: Any) -> Any:
        if path == "/v1/messages":
            body.update(kwargs["json"])
            raise _Captured()
        return real_call(model, method, path, **kwargs)

    client.api.call = capture  # type: ignore[method-assign]
    try:
        with pytest.raises(_Captured):
            client.send(to, "captured", files)
    finally:
        del client.api.call
    return body


def _post(client: AccordClient, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{client.api.base_url}/v1/messages",
        json=body,
        headers={"Authorization": f"Bearer {client._token(False)}"},
    )


def _with_voucher(body: dict[str, Any], change: Callable[[bytes], bytes]) -> dict[str, Any]:
    out = json.loads(json.dumps(body))
    item = out["extensions"]["vouchers"][0]
    item["voucher"] = base64.b64encode(change(base64.b64decode(item["voucher"]))).decode()
    out["message_id"] = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    return out


def test_bad_vouchers_are_refused_with_clear_codes(server, pair, standins, unique):  # type: ignore[no-untyped-def]
    pool, others = standins
    bank = unique("standins")
    bank_and_publish(server, bank, pool)
    start = drain_matching(server)  # the counters as earlier tests left them
    alice, bob = pair
    banked = pool[0]
    body = _captured_send(alice, bob.account_name, [banked])
    size = len(base64.b64decode(body["extensions"]["vouchers"][0]["voucher"]))
    assert size == voucher_size(MatchingParams())

    def refused(req: dict[str, Any], status: int, code: str) -> str:
        r = _post(alice, req)
        assert r.status_code == status, r.text
        answer = r.json()
        assert answer["code"] == code
        assert set(answer) == {"type", "title", "status", "detail", "code", "message"}
        return str(answer["message"])

    def flip(offset: int) -> Callable[[bytes], bytes]:
        return lambda v: v[:offset] + bytes([v[offset] ^ 1]) + v[offset + 1 :]

    cases: list[tuple[dict[str, Any], int, str, str]] = [
        (_with_voucher(body, lambda v: v[:-1]), 400, "invalid_voucher", "wrong size"),
        (_with_voucher(body, lambda v: v + b"\0"), 400, "invalid_voucher", "wrong size"),
        (_with_voucher(body, lambda v: b""), 400, "invalid_voucher", ""),
        (_with_voucher(body, flip(0)), 400, "invalid_voucher", "not a safety voucher"),
        (_with_voucher(body, flip(3)), 400, "unsupported_version", "version"),
        (
            _with_voucher(
                body, lambda v: v[:HEADER_BYTES] + b"\xff" * 31 + b"\x7f" + v[HEADER_BYTES + 32 :]
            ),
            400,
            "invalid_voucher",
            "invalid point",
        ),
        (
            _with_voucher(body, lambda v: v[:HEADER_BYTES] + bytes(32) + v[HEADER_BYTES + 32 :]),
            400,
            "invalid_voucher",
            "invalid point",
        ),
        # another table version (the digest in the header names no table the server accepts)
        (_with_voucher(body, flip(10)), 422, "voucher_table_version", "another table version"),
        # bound to another account: the account tag in the header does not match the sender
        (_with_voucher(body, flip(40)), 422, "voucher_other_account", "another account"),
    ]
    for req, status, code, words in cases:
        assert words in refused(req, status, code)
    for extension in ("not a list", [], [{"blob_id": "x"}], [{"voucher": "AAAA"}] * 33):
        req = json.loads(json.dumps(body))
        req["extensions"]["vouchers"] = extension
        refused(req, 400, "invalid_voucher")
    req = json.loads(json.dumps(body))
    req["extensions"]["vouchers"][0]["voucher"] = "not base64!"
    refused(req, 400, "invalid_voucher")
    req = json.loads(json.dumps(body))
    req["extensions"]["vouchers"][0]["blob_id"] = "A" * 22  # a blob this device never uploaded
    assert "did not upload" in refused(req, 400, "invalid_voucher")
    req = json.loads(json.dumps(body))
    req["extensions"]["vouchers"] *= 2  # the same voucher twice
    refused(req, 400, "invalid_voucher")

    # Accepted once; the same message again is an idempotent retry; in another message, a replay.
    assert _post(alice, body).status_code == 201
    assert _post(alice, body).status_code == 201
    replay = _with_voucher(body, lambda v: v)
    assert "already received" in refused(replay, 422, "voucher_replayed")
    drain_matching(server)
    assert "already received" in refused(replay, 422, "voucher_replayed")

    # Replayed by another account: bob sends alice's voucher with an attachment of his own.
    bob_body = _captured_send(bob, alice.account_name, [others[0]])
    bob_body["extensions"]["vouchers"][0]["voucher"] = body["extensions"]["vouchers"][0]["voucher"]
    r = _post(bob, bob_body)
    assert r.status_code == 422 and r.json()["code"] == "voucher_other_account"

    # A tampered *matching* voucher is accepted at the door like any other (refusing it there
    # would tell the sender it matched) and rejected when processed, for the operator to see.
    before = drain_matching(server)["vouchers_rejected"]
    tampered = _captured_send(alice, bob.account_name, [pool[1]])
    tampered = _with_voucher(tampered, flip(size - 20))  # inside the outer ciphertext
    assert _post(alice, tampered).status_code == 201
    after = drain_matching(server)
    assert after["vouchers_rejected"] == before + 1
    assert after["opened_shares"] == start["opened_shares"] + 1  # the accepted banked voucher

    # The review routes need a reviewer or the operator.
    for path in ("/v1/review/events", "/v1/review/events/e_AAAAAAAAAAAAAAAAAAAAAA"):
        r = httpx.get(server.url + path, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    with admin_client(server) as op:
        assert op.get("/v1/review/events/e_AAAAAAAAAAAAAAAAAAAAAA").json()["code"] == "not_found"
        r = httpx.post(server.url + "/v1/matching/tables", json={})
        assert r.status_code == 401
        r = op.post("/v1/matching/tables", json={"banks": ["nope"]})
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = op.post("/v1/matching/tables", json={"band_count": 128, "detection_dim": 1024})
        assert r.status_code == 400 and "larger than" in r.json()["message"]
        # Publishing is a background job: 202 with where to follow it.
        r = op.post("/v1/matching/tables", json={"banks": [bank]})
        assert r.status_code == 202, r.text
        where = r.headers["location"]
        assert where == f"/v1/matching/jobs/{r.json()['job_id']}"
        job = eventually(
            lambda: (j := op.get(where).json())["state"] in ("done", "failed") and j,
            "the table job finished",
        )
        assert job["state"] == "done" and job["error"] is None
        assert job["slots_done"] == job["slots"] > 0 and job["table"]["log_index"] is not None
        r = op.get("/v1/matching/jobs/j_AAAAAAAAAAAAAAAAAAAAAA")
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        assert httpx.get(server.url + where).status_code == 401


@ON_SQLITE
def test_clients_hold_no_banked_hash_and_refuse_an_unlogged_table(
    server, tmp_path, standins, unique
):  # type: ignore[no-untyped-def]
    pool, others = standins
    bob = unique("bob")
    table = bank_and_publish(server, unique("standins"), pool[:4])
    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    AccordClient.create_account(
        tmp_path / "b", server.url, bob, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    ).close()
    try:
        # Acceptance 1, wired: one voucher size for banked and unrelated images.
        vouchers = [alice.vouchers.prepare(p) for p in (pool[0], others[0], pool[1], others[1])]
        assert {len(v or b"") for v in vouchers} == {voucher_size(MatchingParams())}
        alice.send(bob, "pictures", [pool[2], others[2]])
    finally:
        alice.close()
    drain_matching(server)  # the server has used its table before the file is changed under it
    # The device holds the blinded table, never a banked hash (raw or hex).
    banked = [_pdq(p) for p in pool[:4]]
    blob = b"".join(f.read_bytes() for f in (tmp_path / "a").rglob("*") if f.is_file())
    assert (tmp_path / "a" / "matching-tables" / f"{table['digest']}.table").is_file()
    assert not any(h in blob or h.hex().encode() in blob for h in banked)

    # The server now serves a table file that is not the logged one: a new device refuses it.
    # (The file is put back afterwards: later tests on this server publish tables of their own.)
    path = server.data_dir / "matching-tables" / f"{table['digest']}.table"
    original = path.read_bytes()
    data = bytearray(original)
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    try:
        carol = AccordClient.create_account(
            tmp_path / "c",
            server.url,
            unique("carol"),
            PASS,
            kdf_cost=TEST_KDF_COST,
            insecure_dev=True,
        )
        try:
            with pytest.raises(VerificationError):
                carol.send(bob, "hi", [others[3]])
            carol.send(bob, "text still works")
        finally:
            carol.close()
    finally:
        path.write_bytes(original)


# --- a version published as a delta (docs/protocol/private-matching.md, "Table deltas") --------


def test_a_client_holding_the_previous_table_takes_the_logged_delta_and_matches(
    server, tmp_path, unique
):  # type: ignore[no-untyped-def]
    pool = [make_picture(tmp_path / f"p{i}.png", 700 + i) for i in range(41)]
    photo = make_picture(tmp_path / "other.png", 699)
    a, b = unique("alice"), unique("bob")
    AccordClient.create_account(
        tmp_path / "b", server.url, b, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    ).close()
    first = bank_and_publish(server, unique("before"), pool[:40])
    watch = TableRequests()
    alice = AccordClient.create_account(
        tmp_path / "a", server.url, a, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True,
        transport=watch,
    )  # fmt: skip
    try:
        alice.send(b, "a photo", [photo])  # takes the first table whole
    finally:
        alice.close()
    assert watch.paths == [f"/v1/matching/tables/{first['digest']}"]

    # One banked image out, another in: the server builds the next version from the first, and
    # logs the delta's digest in the version's entry.
    second = bank_and_publish(server, unique("after"), pool[1:])
    assert second["delta_from"] == first["digest"]
    assert 0 < second["delta_size"] < 0.25 * second["size"]
    info = httpx.get(f"{server.url}/v1/matching/table").json()
    entry = json.loads(base64.b64decode(info["log_entry"]))
    assert entry["table_digest"] == second["digest"]
    assert entry["delta"]["base_digest"] == first["digest"]
    missing = httpx.get(
        f"{server.url}/v1/matching/tables/{second['digest']}/delta", params={"from": "00" * 32}
    )
    assert missing.status_code == 404 and missing.json()["code"] == "table_delta_not_found"

    # The client holding the first table fetches the delta only, and ends with the logged table;
    # vouchers made against it match as before: t banked images cross the threshold.
    watch.paths.clear()
    alice = AccordClient(tmp_path / "a", PASS, transport=watch)
    try:
        real = [p for p in pool[1:] if not alice.vouchers.is_synthetic(p)][:T]
        alice.send(b, "banked", real)
    finally:
        alice.close()
    assert watch.paths == [f"/v1/matching/tables/{second['digest']}/delta"]
    folder = tmp_path / "a" / "matching-tables"
    cached = folder / f"{second['digest']}.table"
    served = server.data_dir / "matching-tables" / f"{second['digest']}.table"
    assert list(folder.glob("*.table")) == [cached]
    assert cached.read_bytes() == served.read_bytes()
    drain_matching(server)
    _shares, opened = _opened(server, a)
    assert sorted(opened) == sorted(_pdq(p) for p in real)
