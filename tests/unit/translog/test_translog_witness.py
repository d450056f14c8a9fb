"""The C2SP tlog-witness add-checkpoint endpoint, in process (starlette TestClient)."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.errors import AccordError, InvalidInput
from accord.protocols.translog import merkle
from accord.protocols.translog import note as tn
from accord.witness import (
    OldSizeMismatch,
    create_witness_app,
    format_add_checkpoint_request,
    parse_add_checkpoint_request,
)
from accord.witness.request import MAX_ADD_CHECKPOINT_BYTES, MAX_PROOF_LINES

ORIGIN = "log.example/accord"
LOG = tn.parse_skey(tn.generate_signer(ORIGIN)[0])
OTHER_LOG = tn.parse_skey(tn.generate_signer("other.example/log")[0])
IMPOSTOR = tn.parse_skey(tn.generate_signer(ORIGIN)[0])  # same name, another key
WITNESS = tn.parse_skey(tn.generate_cosigner("witness.example/w1")[0])
assert isinstance(WITNESS, tn.CosignatureSigner)
NOW = 1_750_000_000
SPEC = json.loads(
    (Path(__file__).parents[2] / "vectors" / "signed_note" / "c2sp_spec_examples.json").read_text()
)


class FakeLog:
    """A log in memory: leaves, signed checkpoints, consistency proofs."""

    def __init__(self, signer: tn.Signer = LOG, salt: bytes = b"") -> None:
        self.signer = signer
        self.leaves = [merkle.leaf_hash(salt + b"%d" % i) for i in range(64)]

    def checkpoint(self, size: int, signer: tn.Signer | None = None) -> str:
        body = tn.Checkpoint(self.signer.name, size, merkle.root_hash(self.leaves[:size])).to_text()
        return tn.sign_note(body, [signer or self.signer])

    def request(self, old: int, size: int, proof: list[bytes] | None = None) -> bytes:
        if proof is None:
            proof = merkle.consistency_proof(self.leaves[:size], old) if old > 0 else []
        return format_add_checkpoint_request(old, proof, self.checkpoint(size))


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "witness-state"


def make_client(state_dir: Path, clock: float = NOW) -> TestClient:
    app = create_witness_app(
        cosigner=WITNESS,
        logs=[LOG.vkey, OTHER_LOG.vkey],
        state_dir=state_dir,
        clock=lambda: clock,
    )
    return TestClient(app)


def post(client: TestClient, body: bytes) -> tuple[int, str, str]:
    r = client.post("/add-checkpoint", content=body)
    return r.status_code, r.headers.get("content-type", ""), r.text


def check_cosignature(log: FakeLog, size: int, response: str) -> None:
    """Client side: append the response to the checkpoint and verify with the witness key."""
    cosigned = tn.add_signatures(
        log.checkpoint(size), [tn.parse_signature_line(line) for line in response.splitlines()]
    )
    vc = tn.verify_checkpoint(
        cosigned,
        log_verifiers=[LOG.verifier],
        origin=ORIGIN,
        witness_verifiers=[WITNESS.verifier],
        witness_quorum=1,
    )
    assert vc.checkpoint.size == size
    (sig,) = vc.witness_signatures
    assert tn.verify_cosignature(vc.note.text, sig, WITNESS.verifier) == NOW


def test_cosigns_from_zero_then_follows_the_log(state_dir: Path) -> None:
    log, client = FakeLog(), make_client(state_dir)
    status, ctype, text = post(client, log.request(0, 5))
    assert status == 200, text
    assert ctype.startswith("text/plain")
    assert text.startswith("\u2014 witness.example/w1 ") and text.endswith("\n")
    check_cosignature(log, 5, text)
    for old, new in [(5, 8), (8, 8), (8, 33), (33, 64)]:
        status, _, text = post(client, log.request(old, new))
        assert status == 200, (old, new, text)
        check_cosignature(log, new, text)
    state = client.app.state.witness.state.get(ORIGIN)  # type: ignore[attr-defined]
    assert (state.size, state.root_hash) == (64, merkle.root_hash(log.leaves))


def test_stale_old_size_gets_409_with_the_cosigned_size(state_dir: Path) -> None:
    log, client = FakeLog(), make_client(state_dir)
    assert post(client, log.request(0, 10))[0] == 200
    for old, new in [(0, 12), (5, 12), (11, 12)]:
        status, ctype, text = post(client, log.request(old, new))
        assert (status, ctype, text) == (409, "text/x.tlog.size", "10\n")


def test_rollback_is_refused(state_dir: Path) -> None:
    log, client = FakeLog(), make_client(state_dir)
    assert post(client, log.request(0, 10))[0] == 200
    # A smaller tree: old <= size < 10, so old cannot match.
    for old in (0, 4):
        assert post(client, log.request(old, 4))[:2] == (409, "text/x.tlog.size")
    assert post(client, log.request(10, 10))[0] == 200  # re-cosigning the same view is fine


def test_fork_at_the_same_size_is_refused(state_dir: Path) -> None:
    log, forked, client = FakeLog(), FakeLog(salt=b"fork"), make_client(state_dir)
    assert post(client, log.request(0, 10))[0] == 200
    status, _, text = post(client, format_add_checkpoint_request(10, [], forked.checkpoint(10)))
    assert status == 409 and json.loads(text)["code"] == "conflict"
    # A fork that grows: its consistency proof cannot lead from our root.
    status, _, text = post(client, forked.request(10, 20))
    assert status == 422 and json.loads(text)["code"] == "verification_failed"


def test_bad_consistency_proofs_get_422(state_dir: Path) -> None:
    log, client = FakeLog(), make_client(state_dir)
    assert post(client, log.request(0, 7))[0] == 200
    good = merkle.consistency_proof(log.leaves[:20], 7)
    flipped = [bytes([good[0][0] ^ 1]) + good[0][1:], *good[1:]]
    for proof in ([], good[:-1], [*good, good[0]], flipped):
        assert post(client, log.request(7, 20, proof))[0] == 422
    # From size 0 the proof must be empty.
    client2 = make_client(state_dir.parent / "other")
    assert post(client2, log.request(0, 5, [log.leaves[0]]))[0] == 422
    # Nothing was recorded by the failures.
    assert post(client, log.request(7, 20))[0] == 200


def test_unknown_log_gets_404(state_dir: Path) -> None:
    stranger = FakeLog(signer=tn.parse_skey(tn.generate_signer("unknown.example/log")[0]))
    assert post(make_client(state_dir), stranger.request(0, 3))[0] == 404


def test_bad_signatures_get_403(state_dir: Path) -> None:
    log, client = FakeLog(), make_client(state_dir)
    # Right origin, wrong key.
    body = format_add_checkpoint_request(0, [], log.checkpoint(3, signer=IMPOSTOR))
    assert post(client, body)[0] == 403
    # A corrupted log signature.
    note = log.checkpoint(3)
    body_text, sig_line = note.split("\n\n")
    name, b64 = sig_line.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(b64))
    raw[-1] ^= 1
    corrupted = f"{body_text}\n\n{name} {base64.b64encode(bytes(raw)).decode()}\n"
    assert post(client, format_add_checkpoint_request(0, [], corrupted))[0] == 403
    # Signed only by the witness itself (a cosignature is not a log signature).
    cosigned_only = tn.sign_note(tn.parse_unverified_note(note).text, [WITNESS], timestamp=1)
    assert post(client, format_add_checkpoint_request(0, [], cosigned_only))[0] == 403


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"old 0\n",
        b"old 0\n\n",
        b"old 00\n\nx",
        b"old -1\n\nx",
        b"old 1\nnot base64\n\nx",
        b"new 0\n\nx",
        b"old 0\n\norigin\n1\n",  # checkpoint without signatures
        b"\xff\xfe",
    ],
)
def test_malformed_requests_get_400(state_dir: Path, body: bytes) -> None:
    status, _, text = post(make_client(state_dir), body)
    assert status == 400, text


def test_old_size_above_checkpoint_size_gets_400(state_dir: Path) -> None:
    log = FakeLog()
    body = format_add_checkpoint_request(9, [], log.checkpoint(5))
    assert post(make_client(state_dir), body)[0] == 400


def test_too_many_proof_lines_get_400(state_dir: Path) -> None:
    log = FakeLog()
    body = format_add_checkpoint_request(
        3, [log.leaves[0]] * (MAX_PROOF_LINES + 1), log.checkpoint(5)
    )
    assert post(make_client(state_dir), body)[0] == 400


def test_oversized_body_gets_413(state_dir: Path) -> None:
    client = make_client(state_dir)
    assert post(client, b"old 0\n" + b"A" * MAX_ADD_CHECKPOINT_BYTES)[0] == 413

    def chunks():  # type: ignore[no-untyped-def]
        yield b"old 0\n"
        for _ in range(MAX_ADD_CHECKPOINT_BYTES // 1024 + 1):
            yield b"A" * 1024

    r = client.post("/add-checkpoint", content=chunks())  # no content-length: streamed
    assert r.status_code == 413


def test_state_survives_a_new_app(state_dir: Path) -> None:
    log = FakeLog()
    assert post(make_client(state_dir), log.request(0, 9))[0] == 200
    again = make_client(state_dir)
    assert post(again, log.request(0, 12))[:3] == (409, "text/x.tlog.size", "9\n")
    assert post(again, log.request(9, 12))[0] == 200


def test_logs_are_tracked_separately(state_dir: Path) -> None:
    client = make_client(state_dir)
    assert post(client, FakeLog().request(0, 9))[0] == 200
    assert post(client, FakeLog(signer=OTHER_LOG).request(0, 2))[0] == 200
    assert post(client, FakeLog(signer=OTHER_LOG).request(2, 3))[0] == 200
    assert post(client, FakeLog().request(9, 10))[0] == 200


def test_concurrent_requests_cannot_roll_back(state_dir: Path) -> None:
    """tlog-witness race: requests checked against the same old size; at most one wins, and
    the state ends at a size that was actually cosigned."""
    log, client = FakeLog(), make_client(state_dir)
    assert post(client, log.request(0, 4))[0] == 200
    witness = client.app.state.witness  # type: ignore[attr-defined]
    results: dict[int, str] = {}

    def submit(size: int) -> None:
        try:
            witness.add_checkpoint(log.request(4, size))
            results[size] = "ok"
        except OldSizeMismatch:
            results[size] = "409"

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(5, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if r == "ok"]
    assert len(winners) == 1 and len(results) == 16
    assert witness.state.get(ORIGIN).size == winners[0]


def test_empty_tree_checkpoint(state_dir: Path) -> None:
    log, client = FakeLog(), make_client(state_dir)
    assert post(client, log.request(0, 0))[0] == 200
    wrong_root = tn.sign_note(tn.Checkpoint(ORIGIN, 0, log.leaves[0]).to_text(), [LOG])
    other = make_client(state_dir.parent / "fresh")
    assert post(other, format_add_checkpoint_request(0, [], wrong_root))[0] == 422
    assert post(client, log.request(0, 6))[0] == 200


def test_spec_example_request_parses() -> None:
    vector = SPEC["witness_request_example"]
    request = parse_add_checkpoint_request(vector["body"].encode())
    expect = vector["expect"]
    assert request.old_size == expect["old_size"]
    assert len(request.proof) == expect["proof_hashes"]
    note = tn.parse_unverified_note(request.checkpoint)
    assert len(note.signatures) == expect["signatures"]
    cp = tn.parse_checkpoint(note.text)
    assert (cp.origin, cp.size) == (expect["origin"], expect["size"])
    assert (
        format_add_checkpoint_request(request.old_size, list(request.proof), request.checkpoint)
        == vector["body"].encode()
    )


def test_configuration_errors(state_dir: Path) -> None:
    with pytest.raises(InvalidInput):
        create_witness_app(cosigner=LOG, logs=[LOG.vkey], state_dir=state_dir)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        create_witness_app(cosigner=WITNESS, logs=[WITNESS.vkey], state_dir=state_dir)
    with pytest.raises(InvalidInput):
        create_witness_app(cosigner=WITNESS, logs=[], state_dir=state_dir)


# --------------------------------------------------------------------------------------------
# Fuzz: the request parser and the whole witness raise only our errors


SEED_BODY = FakeLog().request(0, 5)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=400),
        st.lists(
            st.sampled_from(
                [b"old ", b"0", b"5", b"\n", b"\n\n", b"A" * 43 + b"=", SEED_BODY, b"\xe2\x80\x94 "]
            ),
            max_size=10,
        ).map(b"".join),
        st.tuples(st.integers(0, len(SEED_BODY) - 1), st.binary(min_size=1, max_size=3)).map(
            lambda t: SEED_BODY[: t[0]] + t[1] + SEED_BODY[t[0] + len(t[1]) :]
        ),
    )
)
def test_fuzz_request_parser(body: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_add_checkpoint_request(body)


@pytest.fixture(scope="module")
def fuzz_witness(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_client(tmp_path_factory.mktemp("fuzz")).app.state.witness  # type: ignore[attr-defined]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    body=st.tuples(st.integers(0, len(SEED_BODY) - 1), st.binary(min_size=1, max_size=3)).map(
        lambda t: SEED_BODY[: t[0]] + t[1] + SEED_BODY[t[0] + len(t[1]) :]
    )
)
def test_fuzz_witness_raises_only_accord_errors(fuzz_witness, body: bytes) -> None:  # type: ignore[no-untyped-def]
    with contextlib.suppress(AccordError):
        fuzz_witness.add_checkpoint(body)
