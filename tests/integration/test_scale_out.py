"""Several server processes over one PostgreSQL database and Redis (docs/deployment.md).

- a message accepted by one process is pushed to a device connected to another (Redis pub/sub);
- SIGKILL of a process under load: every acknowledged send is delivered exactly once;
- a PostgreSQL restart under load: the same, and the processes recover by themselves;
- overload: 429 with Retry-After for a sender over its rate and for a full recipient queue;
- /metrics and JSON logs carry no content.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pg_cluster import PrivateCluster, pg_bin_dir

from accord.client.client import AccordClient
from accord.errors import AccordError, RateLimited
from accord.server.process import ServerProcess
from accord_testing import (
    TEST_KDF_COST,
    SendingThread,
    TestClock,
    eventually,
    make_manifest,
    start_server,
)

PASS = "test passphrase"
REDIS_URL = os.environ.get("ACCORD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
pytestmark = pytest.mark.timeout(300)


def _redis_available() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def redis_url() -> str:
    if not _redis_available():
        if os.environ.get("CI") or os.environ.get("ACCORD_REQUIRE_POSTGRES"):
            pytest.fail(f"Redis is required here and not reachable at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def two_processes(
    tmp_path: Path, fresh_pg_url: str, redis_url: str
) -> Iterator[list[ServerProcess]]:
    """Two processes sharing the database, the data directory (keys, blobs) and Redis."""
    data = tmp_path / "shared"
    args = ["--redis", redis_url, "--socket-poll", "3600"]  # wake-ups come through Redis only
    procs = [
        ServerProcess(data, db_url=fresh_pg_url, extra_args=args),
        ServerProcess(data, db_url=fresh_pg_url, extra_args=args),
    ]
    for p in procs:
        p.start()
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.mark.postgres
def test_a_message_accepted_by_one_process_is_pushed_by_another(two_processes, tmp_path):  # type: ignore[no-untyped-def]
    """Pushed through Redis: the processes' own fallback poll is set to an hour, so a push that
    arrives at all came from the wake-up process B published."""
    from websockets.sync.client import connect

    a, b = two_processes
    alice = AccordClient.create_account(
        tmp_path / "alice", a.url, "alice", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "bob", b.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    warm_up = bob.send("alice", "warm-up")  # queued for alice, not yet fetched
    url = a.url.replace("http", "ws", 1) + "/v1/ws"
    with connect(url, additional_headers={"Authorization": f"Bearer {alice._token(False)}"}) as ws:
        # The first frame is the queue as the socket found it: process A has subscribed and
        # read the queue, so what comes next can only come from a wake-up.
        first = json.loads(ws.recv(timeout=60))
        assert [e["message_id"] for e in first["envelopes"]] == [warm_up]
        through_b = bob.send("alice", "through process B")
        pushed = json.loads(ws.recv(timeout=60))
        assert [e["message_id"] for e in pushed["envelopes"]] == [through_b]
    assert [m.text for m in alice.receive().messages] == ["warm-up", "through process B"]
    alice.close()
    bob.close()


def _receive_all(client: AccordClient, expected: int) -> list[str]:
    """Receive until `expected` messages came and a receive brings nothing more (a receive
    refused while the database restarts is tried again)."""
    texts: list[str] = []

    def drained() -> bool:
        try:
            got = client.receive().messages
        except AccordError:
            return False
        texts.extend(m.text for m in got)
        return len(texts) >= expected and not got

    try:
        eventually(drained, f"{expected} messages received")
    except AssertionError:
        pass  # the caller compares what came with what was acknowledged
    return texts


@pytest.mark.postgres
def test_sigkill_under_load_loses_no_acknowledged_message(two_processes, tmp_path):  # type: ignore[no-untyped-def]
    a, b = two_processes
    alice = AccordClient.create_account(
        tmp_path / "alice", a.url, "alice", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob_home = tmp_path / "bob"
    bob = AccordClient.create_account(
        bob_home, b.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    sender = SendingThread(alice, "bob")
    sender.start()
    eventually(lambda: len(sender.acked) >= 5, "five acknowledged sends")
    a.kill()  # mid-stream: a send may be committed without its answer
    eventually(lambda: sender.failed >= 1, "a send refused by the killed process")
    sender.stop.set()
    sender.join(10)
    assert len(sender.acked) >= 5 and sender.failed >= 1
    texts = _receive_all(bob, len(sender.acked))
    assert set(sender.acked) <= set(texts), "an acknowledged message was lost"
    assert len(texts) == len(set(texts)), "a message was shown twice"
    a.start()  # the killed process comes back on the same database
    assert httpx.get(f"{a.url}/v1/health").status_code == 200
    alice.close()
    bob.close()


@pytest.fixture
def private_postgres() -> Iterator[PrivateCluster]:
    """A cluster of this test's own, so restarting it disturbs nothing else on the machine."""
    if pg_bin_dir() is None:
        if os.environ.get("ACCORD_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are required here")
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    cluster = PrivateCluster().init()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop(mode="immediate")
        cluster.remove()


@pytest.mark.postgres
def test_postgres_restart_under_load_loses_no_acknowledged_message(
    private_postgres: PrivateCluster, redis_url: str, tmp_path: Path
) -> None:
    url = private_postgres.create_database("accord")
    data = tmp_path / "shared"
    a = ServerProcess(data, db_url=url, extra_args=["--redis", redis_url]).start()
    b = ServerProcess(data, db_url=url, extra_args=["--redis", redis_url]).start()
    alice = AccordClient.create_account(
        tmp_path / "alice", a.url, "alice", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "bob", b.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    sender = SendingThread(alice, "bob")
    sender.start()
    try:
        eventually(lambda: len(sender.acked) >= 5, "five acknowledged sends")
        before = len(sender.acked)
        private_postgres.restart()
        eventually(lambda: len(sender.acked) >= before + 5, "sending resumes after the restart")
    finally:
        sender.stop.set()
        sender.join(20)
    texts = _receive_all(bob, len(sender.acked))
    assert set(sender.acked) <= set(texts), "an acknowledged message was lost"
    assert len(texts) == len(set(texts)), "a message was shown twice"
    alice.close()
    bob.close()
    a.stop()
    b.stop()


# --- overload, metrics, logs (one process is enough) --------------------------------------


@pytest.fixture
def limited_server(tmp_path: Path, clock: TestClock) -> Iterator[ServerProcess]:
    proc = start_server(
        tmp_path / "server",
        clock=clock,
        extra_args=[
            "--send-rate", "1", "--send-burst", "3", "--max-queue", "5", "--log-format", "json",
        ],
    )  # fmt: skip
    yield proc
    proc.stop()


def test_overload_answers_429_with_retry_after(limited_server, tmp_path):  # type: ignore[no-untyped-def]
    alice = AccordClient.create_account(
        tmp_path / "a", limited_server.url, "alice", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", limited_server.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    carol = AccordClient.create_account(
        tmp_path / "c", limited_server.url, "carol", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    for client in (alice, bob, carol):
        client.api.retry_budget_s = 0  # refusals raised at once, to look at them
    for n in range(3):  # the burst
        alice.send("bob", f"a{n}")
    with pytest.raises(RateLimited) as limited:
        alice.send("bob", "one too many")
    assert limited.value.code == "rate_limited" and limited.value.retry_after_s >= 1
    for n in range(2):  # bob's queue: 3 from alice + 2 from carol = 5 = the limit
        carol.send("bob", f"c{n}")
    with pytest.raises(RateLimited) as full:
        carol.send("bob", "queue is full")
    assert full.value.code == "queue_full"
    assert len(bob.receive().messages) == 5  # nothing accepted was dropped
    limited_server.clock.advance(1.1)  # carol's refused attempt used her last token; 1/s
    carol.send("bob", "room again")  # bob fetched and acknowledged: room again
    assert [m.text for m in bob.receive().messages] == ["room again"]
    assert httpx.get(f"{limited_server.url}/metrics").status_code == 401  # operator only
    metrics = httpx.get(
        f"{limited_server.url}/metrics",
        headers={"Authorization": f"Bearer {limited_server.admin_token()}"},
    ).text
    assert 'accord_sends_refused_total{reason="rate_limited"} 1.0' in metrics
    assert 'accord_sends_refused_total{reason="queue_full"} 1.0' in metrics
    assert "accord_messages_accepted_total 6.0" in metrics
    assert 'route="/v1/messages"' in metrics
    log_lines = limited_server.log_path.read_text().splitlines()
    records = [json.loads(line) for line in log_lines if line.startswith("{")]
    routes = {r.get("route") for r in records if r.get("msg") == "request"}
    assert "/v1/messages" in routes  # route templates, never raw paths
    assert not any("/v1/blobs/" in r and "{" not in r for r in routes if r)
    everything = metrics + "\n".join(log_lines)
    for secret in ("a0", "one too many", "room again", alice._token(False)):
        assert secret not in everything

    # A client that may wait does what Retry-After says: here bob's queue is full, and each
    # wait moves the clock and lets bob take his messages, so the retry finds room.
    limited_server.clock.advance(10)  # every sender's burst is back
    for n in range(3):
        alice.send("bob", f"again a{n}")
    for n in range(2):
        carol.send("bob", f"again c{n}")
    waited: list[float] = []

    def wait(seconds: float) -> None:
        waited.append(seconds)
        limited_server.clock.advance(seconds)
        assert len(bob.receive().messages) == 5

    carol.api.retry_budget_s, carol.api.sleep = 60, wait  # a full queue asks for 30 s
    carol.send("bob", "sent after waiting")
    assert waited and all(w >= 1 for w in waited)
    assert [m.text for m in bob.receive().messages] == ["sent after waiting"]
    for c in (alice, bob, carol):
        c.close()


@pytest.mark.postgres
def test_two_processes_keep_one_witnessed_log_through_a_kill(tmp_path, fresh_pg_url, redis_url):  # type: ignore[no-untyped-def]
    """Both processes append to one log and get their checkpoints cosigned by the same witness;
    killing one mid-registration leaves a log the witness still extends, and clients that
    require the witness's cosignature keep working against the survivor."""
    from test_witnessed_log import _start_witness

    from accord.protocols.translog.note import generate_signer
    from accord.server.translog import DEFAULT_LOG_ORIGIN, LOG_KEY_FILE

    data = tmp_path / "shared"
    data.mkdir()
    log_skey, log_vkey = generate_signer(DEFAULT_LOG_ORIGIN)
    (data / LOG_KEY_FILE).write_text(log_skey + "\n")
    (data / LOG_KEY_FILE).chmod(0o600)
    witness, wurl, wvkey = _start_witness(tmp_path, log_vkey)
    manifest = make_manifest(log_vkey, [wvkey])
    args = ["--redis", redis_url, "--witness", wurl]
    a = ServerProcess(data, db_url=fresh_pg_url, extra_args=args).start()
    b = ServerProcess(data, db_url=fresh_pg_url, extra_args=args).start()
    clients: list[AccordClient] = []
    try:
        for n in range(6):  # registrations through both processes, interleaved
            url = (a if n % 2 else b).url
            clients.append(
                AccordClient.create_account(
                    tmp_path / f"u{n}",
                    url,
                    f"u{n}",
                    PASS,
                    manifest=manifest,
                    kdf_cost=TEST_KDF_COST,
                )
            )
        killer = threading.Timer(0.3, a.kill)
        killer.start()
        for n in range(6, 12):
            try:
                clients.append(
                    AccordClient.create_account(
                        tmp_path / f"u{n}",
                        a.url,
                        f"u{n}",
                        PASS,
                        manifest=manifest,
                        kdf_cost=TEST_KDF_COST,
                    )
                )
            except AccordError:
                break  # process A is gone
        killer.join()
        late = AccordClient.create_account(
            tmp_path / "late", b.url, "late", PASS, manifest=manifest, kdf_cost=TEST_KDF_COST
        )
        clients.append(late)
        # Every client verifies the survivor's cosigned view of everyone it talks to.
        late.send("u0", "after the kill")
        u0 = clients[0]
        u0.api.base_url = b.url
        u0.api._http.base_url = httpx.URL(b.url)
        assert [m.text for m in u0.receive().messages] == ["after the kill"]
        note = httpx.get(f"{b.url}/v1/log/checkpoint").text
        assert note.count("\u2014 ") == 2  # the log's signature and the witness's
    finally:
        for c in clients:
            c.close()
        a.stop()
        b.stop()
        witness.kill()
        witness.wait()


@pytest.mark.postgres
def test_concurrent_sends_are_all_pushed_on_postgres(tmp_path, fresh_pg_url):  # type: ignore[no-untyped-def]
    """Rows commit out of id order under concurrent sends on PostgreSQL; the socket must still
    push every one of them (a cursor by id used to skip a few until the next connection)."""
    import base64
    import secrets
    from concurrent.futures import ThreadPoolExecutor

    from websockets.sync.client import connect

    with ServerProcess(
        tmp_path / "server", db_url=fresh_pg_url, extra_args=["--send-rate", "0"]
    ) as server:
        bob = AccordClient.create_account(
            tmp_path / "bob", server.url, "bob", PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
        )
        senders = [
            AccordClient.create_account(
                tmp_path / f"s{n}",
                server.url,
                f"s{n}",
                PASS,
                kdf_cost=TEST_KDF_COST,
                insecure_dev=True,
            )
            for n in range(4)
        ]
        tokens = [s._token(False) for s in senders]
        ids = [secrets.token_urlsafe(16) for _ in range(320)]

        def send(i: int) -> None:
            body = {
                "message_id": ids[i],
                "to": {"account": "bob"},
                "recipients": [{"account": "bob", "device_id": bob.device_id}],
                "copies": [
                    {
                        "account": "bob",
                        "device_id": bob.device_id,
                        "olm": {"type": 1, "body": base64.b64encode(os.urandom(418)).decode()},
                    }
                ],
                "extensions": {
                    "franking": {"v": 1, "commitment": base64.b64encode(os.urandom(32)).decode()}
                },
            }
            r = httpx.post(
                f"{server.url}/v1/messages",
                json=body,
                headers={"Authorization": f"Bearer {tokens[i % 4]}"},
                timeout=60,
            )
            assert r.status_code == 201, r.text

        pushed: set[str] = set()
        url = server.url.replace("http", "ws", 1) + "/v1/ws"
        with connect(  # no keepalive: a loaded machine may answer a ping late
            url,
            additional_headers={"Authorization": f"Bearer {bob._token(False)}"},
            ping_interval=None,
            close_timeout=60,
        ) as ws:
            with ThreadPoolExecutor(32) as pool:
                list(pool.map(send, range(len(ids))))
            deadline = time.monotonic() + 60
            while len(pushed) < len(ids) and time.monotonic() < deadline:
                try:
                    frame = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                except TimeoutError:
                    break
                envelopes = frame.get("envelopes", [])
                pushed.update(e["message_id"] for e in envelopes)
                ws.send(json.dumps({"type": "ack", "ids": [e["id"] for e in envelopes]}))
        assert pushed == set(ids), f"{len(set(ids) - pushed)} accepted messages were not pushed"
        for c in [bob, *senders]:
            c.close()


@pytest.mark.postgres
def test_readiness_follows_the_database_and_redis(
    private_postgres: PrivateCluster, redis_url: str, tmp_path: Path
) -> None:
    """/readyz (and /v1/health) answer 200 only while the database answers (and Redis, which a
    server configured with it also needs to start); /livez while the process serves."""
    url = private_postgres.create_database("accord")
    server = ServerProcess(tmp_path / "data", db_url=url, extra_args=["--redis", redis_url])
    server.start()
    try:
        assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
        private_postgres.stop()
        down = httpx.get(f"{server.url}/readyz", timeout=30)
        assert down.status_code == 503 and down.json()["code"] == "not_ready"
        assert httpx.get(f"{server.url}/v1/health", timeout=30).status_code == 503
        assert httpx.get(f"{server.url}/livez").json() == {"status": "alive"}
        private_postgres.start()
        eventually(
            lambda: httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200,
            "ready again once the database is back",
        )
    finally:
        server.stop()
