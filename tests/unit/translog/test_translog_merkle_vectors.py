"""RFC 6962 / RFC 9162 Merkle tree: external vectors (see tests/vectors/merkle/README.md)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from accord.errors import AccordError, VerificationError
from accord.protocols.translog import merkle

VECTORS = Path(__file__).parents[2] / "vectors" / "merkle"
REFERENCE = json.loads((VECTORS / "rfc6962_reference_vectors.json").read_text())
PROBES = json.loads((VECTORS / "rfc6962_verification_probes.json").read_text())
TESTDATA = VECTORS / "transparency-dev-testdata" / "testdata"

LEAVES = [merkle.leaf_hash(bytes.fromhex(leaf)) for leaf in REFERENCE["leaves_hex"]]


def h(value: str) -> bytes:
    return bytes.fromhex(value)


# --------------------------------------------------------------------------------------------
# Reference tree


def test_hasher_vectors() -> None:
    empty, empty_leaf, leaf, node = REFERENCE["hasher_vectors"]
    assert merkle.root_hash([]) == h(empty["want"]) == merkle.EMPTY_ROOT
    assert merkle.leaf_hash(h(empty_leaf["leaf_hex"])) == h(empty_leaf["want"])
    assert merkle.leaf_hash(h(leaf["leaf_hex"])) == h(leaf["want"])
    assert merkle.node_hash(h(node["left_hex"]), h(node["right_hex"])) == h(node["want"])


@pytest.mark.parametrize("size", range(len(REFERENCE["roots_by_tree_size"])))
def test_reference_roots(size: int) -> None:
    want = h(REFERENCE["roots_by_tree_size"][size])
    assert merkle.root_hash(LEAVES[:size]) == want
    # The same root folded from complete-subtree hashes, as the durable store computes it.
    nodes = merkle.root_nodes(size)
    if size:
        subtree = {n: merkle.root_hash(LEAVES[n.start : n.end]) for n in nodes}
        assert merkle.fold_range([subtree[n] for n in nodes]) == want


def test_reference_node_hashes() -> None:
    for level, hashes in enumerate(REFERENCE["node_hashes_by_level"]):
        for index, want in enumerate(hashes):
            node = merkle.NodeId(level, index)
            assert merkle.root_hash(LEAVES[node.start : node.end]) == h(want)


@pytest.mark.parametrize("vector", REFERENCE["inclusion_proofs"], ids=lambda v: str(v))
def test_reference_inclusion_proofs(vector: dict[str, Any]) -> None:
    size, index = vector["tree_size"], vector["leaf_index"]
    proof = merkle.inclusion_proof(LEAVES[:size], index)
    assert [p.hex() for p in proof] == vector["proof"]
    assert merkle.leaf_hash(h(vector["leaf_data_hex"])) == h(vector["leaf_hash"])
    merkle.verify_inclusion(h(vector["leaf_hash"]), index, size, proof, h(vector["root"]))


@pytest.mark.parametrize("vector", REFERENCE["consistency_proofs"], ids=lambda v: str(v))
def test_reference_consistency_proofs(vector: dict[str, Any]) -> None:
    old, new = vector["size1"], vector["size2"]
    proof = merkle.consistency_proof(LEAVES[:new], old)
    assert [p.hex() for p in proof] == vector["proof"]
    merkle.verify_consistency(old, new, h(vector["root1"]), h(vector["root2"]), proof)


# --------------------------------------------------------------------------------------------
# The 196 verification probes, each with its expected outcome


def outcome(fn: Any, *args: Any) -> bool:
    """True if the verifier rejected (VerificationError), False if it accepted."""
    try:
        fn(*args)
    except VerificationError:
        return True
    return False


def test_probe_counts() -> None:
    assert len(PROBES["inclusion"]) == 98
    assert len(PROBES["consistency"]) == 98


@pytest.mark.parametrize("probe", PROBES["inclusion"], ids=lambda p: p["file"])
def test_inclusion_probe(probe: dict[str, Any]) -> None:
    rejected = outcome(
        merkle.verify_inclusion,
        h(probe["leaf_hash"]),
        probe["leaf_index"],
        probe["tree_size"],
        [h(p) for p in probe["proof"]],
        h(probe["root"]),
    )
    assert rejected is probe["want_error"]


@pytest.mark.parametrize("probe", PROBES["consistency"], ids=lambda p: p["file"])
def test_consistency_probe(probe: dict[str, Any]) -> None:
    rejected = outcome(
        merkle.verify_consistency,
        probe["size1"],
        probe["size2"],
        h(probe["root1"]),
        h(probe["root2"]),
        [h(p) for p in probe["proof"]],
    )
    assert rejected is probe["want_error"]


# --------------------------------------------------------------------------------------------
# transparency-dev testdata, read verbatim (base64 JSON files as upstream ships them)


def b64(value: str) -> bytes:
    return base64.b64decode(value)


INCLUSION_FILES = sorted((TESTDATA / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((TESTDATA / "consistency").rglob("*.json"))


def test_testdata_present() -> None:
    assert len(INCLUSION_FILES) == 98
    assert len(CONSISTENCY_FILES) == 98
    names = {p.name for p in INCLUSION_FILES + CONSISTENCY_FILES}
    assert "happy-path.json" in names


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=lambda p: str(p.relative_to(TESTDATA)))
def test_testdata_inclusion(path: Path) -> None:
    data = json.loads(path.read_text())
    rejected = outcome(
        merkle.verify_inclusion,
        b64(data["leafHash"] or ""),
        data["leafIdx"],
        data["treeSize"],
        [b64(p) for p in data["proof"] or []],
        b64(data["root"] or ""),
    )
    assert rejected is data["wantErr"]
    leaves = LEAVES[: data["treeSize"]]
    if not data["wantErr"] and b64(data["root"]) == merkle.root_hash(leaves):
        # Happy paths over the reference tree: our generated proof is the upstream one.
        proof = [b64(p) for p in data["proof"] or []]
        assert merkle.inclusion_proof(leaves, data["leafIdx"]) == proof


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=lambda p: str(p.relative_to(TESTDATA)))
def test_testdata_consistency(path: Path) -> None:
    data = json.loads(path.read_text())
    rejected = outcome(
        merkle.verify_consistency,
        data["size1"],
        data["size2"],
        b64(data["root1"] or ""),
        b64(data["root2"] or ""),
        [b64(p) for p in data["proof"] or []],
    )
    assert rejected is data["wantErr"]


def test_testdata_happy_paths_match_generated_proofs() -> None:
    happy = [p for p in CONSISTENCY_FILES if p.name == "happy-path.json"]
    assert happy
    for path in happy:
        data = json.loads(path.read_text())
        leaves = LEAVES[: data["size2"]]
        if data["size1"] > 0 and b64(data["root2"]) == merkle.root_hash(leaves):
            proof = merkle.consistency_proof(leaves, data["size1"])
            assert proof == [b64(p) for p in data["proof"] or []]


# --------------------------------------------------------------------------------------------
# Rejections the vectors do not spell out


def test_verify_rejects_bad_types_and_ranges() -> None:
    leaf, root = LEAVES[0], merkle.root_hash(LEAVES[:1])
    merkle.verify_inclusion(leaf, 0, 1, [], root)
    for args in [
        (leaf, -1, 1, [], root),
        (leaf, 0, -1, [], root),
        (leaf, True, 1, [], root),
        (leaf, 0, 2**64, [], root),
        (leaf, 0, 1, [b"\x00" * 31], root),
        (leaf, 0, 1, [], root[:-1]),
        (leaf, 0, 1, [root] * 65, root),
    ]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(*args)  # type: ignore[arg-type]
    with pytest.raises(VerificationError):
        merkle.verify_consistency(1, 2, root, root, [b"short"])
    with pytest.raises(VerificationError):
        merkle.verify_consistency(1, 2, "x", root, [root])  # type: ignore[arg-type]


def test_generation_rejects_out_of_range() -> None:
    with pytest.raises(AccordError):
        merkle.inclusion_proof(LEAVES[:3], 3)
    with pytest.raises(AccordError):
        merkle.inclusion_proof([], 0)
    with pytest.raises(AccordError):
        merkle.consistency_proof(LEAVES[:3], 0)
    with pytest.raises(AccordError):
        merkle.consistency_proof(LEAVES[:3], 4)
    with pytest.raises(AccordError):
        merkle.range_nodes(1, 3)  # not the shape of a subtree
