"""The log's proof routes answered ahead of FastAPI's routing (`routes.log.PLAIN_ROUTES`): for
every well-formed query they give the bytes the documented FastAPI route gives, a proof that
verifies against the root of the size asked for; every other query, and every refusal, is the
FastAPI route's own answer. The FastAPI route is reached by adding a query parameter it
ignores, which the plain route does not take."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from accord.errors import VerificationError
from accord.primitives.encoding import b64decode
from accord.protocols.translog import merkle
from accord.server.app import create_app
from accord.server.config import ServerConfig
from accord.server.routes.log import PLAIN_ROUTES, PlainProofRoute

FILLER_ENTRIES = 300
INCLUSION = "/v1/log/proof/inclusion"
CONSISTENCY = "/v1/log/proof/consistency"


@pytest.fixture(scope="module")
def app_and_http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, TestClient]]:
    data_dir: Path = tmp_path_factory.mktemp("proofs")
    app = create_app(ServerConfig(data_dir=data_dir))
    with TestClient(app) as client:
        fillers = [
            json.dumps({"type": "test.filler.v1", "n": i}).encode() for i in range(FILLER_ENTRIES)
        ]
        app.state.services.log.append(fillers)
        yield app, client


@pytest.fixture
def http(app_and_http: tuple[object, TestClient]) -> TestClient:
    return app_and_http[1]


def _both(http: TestClient, path: str, query: str) -> tuple[bytes, bytes]:
    """The plain route's answer and the FastAPI route's, each as status, type and body."""
    plain = http.get(f"{path}?{query}")
    documented = http.get(f"{path}?{query}&unused=1")
    assert plain.headers["content-type"] == documented.headers["content-type"]
    assert plain.status_code == documented.status_code
    return plain.content, documented.content


def _route(path: str) -> PlainProofRoute:
    (route,) = (r for r in PLAIN_ROUTES if isinstance(r, PlainProofRoute) and r.path == path)
    return route


def test_the_plain_routes_come_before_every_router(app_and_http: tuple[object, TestClient]) -> None:
    app, _ = app_and_http
    assert app.router.routes[: len(PLAIN_ROUTES)] == list(PLAIN_ROUTES)  # type: ignore[attr-defined]
    # The OpenAPI document still describes both, from their FastAPI routes.
    paths = app.openapi()["paths"]  # type: ignore[attr-defined]
    for route in PLAIN_ROUTES:
        assert isinstance(route, PlainProofRoute)
        parameters = paths[route.path]["get"]["parameters"]
        assert [p["name"] for p in parameters] == list(route.names)


@pytest.mark.parametrize(
    ("query", "values"),
    [
        (b"index=7&size=300", (7, 300)),
        (b"size=300&index=7", (7, 300)),
        (b"index=0&size=1", (0, 1)),
        (b"index=0007&size=0300", (7, 300)),
        (f"index={2**62}&size={2**62}".encode(), (2**62, 2**62)),
        (b"index=7&size=300&unused=1", None),  # left to the FastAPI route
        (b"index=7&size=300&size=299", None),
        (b"index=7", None),
        (b"index=-7&size=300", None),
        (b"index=%37&size=300", None),
        (b"index=+7&size=300", None),
        (b"index=7&size=0", None),
        (f"index=0&size={2**62 + 1}".encode(), None),
        (b"index=1" + b"0" * 19 + b"&size=1", None),
        (b"index=7&Size=300", None),
        (b"", None),
    ],
)
def test_only_well_formed_queries_are_taken(query: bytes, values: tuple[int, int] | None) -> None:
    assert _route(INCLUSION).parse_query(query) == values


def test_inclusion_proofs_are_the_documented_routes_bytes_and_verify(http: TestClient) -> None:
    size = int(http.get("/v1/log/info").json()["size"])
    assert size > FILLER_ENTRIES
    leaves = []
    for start in range(0, size, 1000):
        page = http.get("/v1/log/entries", params={"start": start, "end": size}).json()
        leaves += [merkle.leaf_hash(b64decode(e, max_bytes=65536)) for e in page["entries"]]
    for tree_size in (1, 2, 3, 7, 64, 255, 256, 257, size - 1, size):
        root = merkle.root_hash(leaves[:tree_size])
        for index in sorted({0, tree_size // 3, tree_size - 1}):
            plain, documented = _both(http, INCLUSION, f"index={index}&size={tree_size}")
            assert plain == documented
            proof = [b64decode(h, max_bytes=32) for h in json.loads(plain)["proof"]]
            merkle.verify_inclusion(leaves[index], index, tree_size, proof, root)
            if index + 1 < tree_size:  # the proof is for this entry only
                with pytest.raises(VerificationError):
                    merkle.verify_inclusion(leaves[index + 1], index, tree_size, proof, root)


def test_consistency_proofs_are_the_documented_routes_bytes_and_verify(http: TestClient) -> None:
    size = int(http.get("/v1/log/info").json()["size"])
    page = http.get("/v1/log/entries", params={"start": 0, "end": size}).json()
    leaves = [merkle.leaf_hash(b64decode(e, max_bytes=65536)) for e in page["entries"]]
    for old, new in ((1, 1), (1, 2), (3, 7), (100, 256), (255, 257), (7, size)):
        plain, documented = _both(http, CONSISTENCY, f"old={old}&new={new}")
        assert plain == documented
        proof = [b64decode(h, max_bytes=32) for h in json.loads(plain)["proof"]]
        merkle.verify_consistency(
            old, new, merkle.root_hash(leaves[:old]), merkle.root_hash(leaves[:new]), proof
        )


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        (INCLUSION, "index=5&size=5", "invalid_input"),  # the index is outside the tree
        (INCLUSION, "index=0&size=100000", "invalid_input"),  # the log has not reached it
        (INCLUSION, f"index=0&size={2**62}", "invalid_input"),
        (CONSISTENCY, "old=9&new=8", "invalid_input"),
        (CONSISTENCY, "old=1&new=100000", "invalid_input"),
        (CONSISTENCY, "old=0&new=5", "invalid_input"),
        (INCLUSION, "index=-1&size=5", "invalid_request"),  # the FastAPI route's validation
        (INCLUSION, "index=a&size=5", "invalid_request"),
        (CONSISTENCY, "old=1", "invalid_request"),
    ],
)
def test_refusals_are_the_documented_routes_problems(
    http: TestClient, path: str, query: str, code: str
) -> None:
    plain, documented = _both(http, path, query)
    assert plain == documented
    assert json.loads(plain)["code"] == code


def test_a_proof_for_a_size_the_log_reaches_later_is_refused_then_served(
    app_and_http: tuple[object, TestClient],
) -> None:
    app, http = app_and_http
    size = int(http.get("/v1/log/info").json()["size"])
    ahead = size + 2
    assert http.get(INCLUSION, params={"index": 0, "size": ahead}).status_code == 400
    app.state.services.log.append([b'{"type":"test.filler.v1","n":-1}'])  # type: ignore[attr-defined]
    assert int(http.get("/v1/log/info").json()["size"]) == ahead  # the entry and a map head
    served = http.get(f"{INCLUSION}?index={size}&size={ahead}")
    assert served.status_code == 200
    page = http.get("/v1/log/entries", params={"start": 0, "end": ahead}).json()
    leaves = [merkle.leaf_hash(b64decode(e, max_bytes=65536)) for e in page["entries"]]
    proof = [b64decode(h, max_bytes=32) for h in served.json()["proof"]]
    merkle.verify_inclusion(leaves[size], size, ahead, proof, merkle.root_hash(leaves))
