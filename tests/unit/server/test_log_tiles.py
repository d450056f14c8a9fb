"""The log served as C2SP tlog-tiles, read by a client written from the specifications alone
(c2sp.org/tlog-tiles, tlog-checkpoint, signed-note; RFC 6962 §2.1): it uses nothing of
`accord.protocols.translog`, only hashlib, base64 and an Ed25519 verifier. It fetches the
checkpoint and checks the log's signature, fetches every tile and entry bundle the checkpoint's
tree needs, recomputes the root and compares it with the checkpoint's, checks each level-1 hash
against the level-0 tile below it, and proves an entry's inclusion from the tiles alone."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient

from accord.server.app import create_app
from accord.server.config import ServerConfig

FILLER_ENTRIES = 600  # two full level-0 tiles, a partial one, a partial level-1 tile


# --- the independent reader -------------------------------------------------------------------


def _index_path(n: int) -> str:
    """tlog-tiles: N in zero-padded 3-digit groups, all but the last prefixed with x."""
    groups = [f"{n % 1000:03d}"]
    while n >= 1000:
        n //= 1000
        groups.insert(0, f"x{n % 1000:03d}")
    return "/".join(groups)


def _tile_url(level: str, n: int, width: int) -> str:
    suffix = "" if width == 256 else f".p/{width}"
    return f"/v1/log/tile/{level}/{_index_path(n)}{suffix}"


def _leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes: split at the largest power of two below n."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return _node(_mth(hashes[:k]), _mth(hashes[k:]))


def _path(m: int, hashes: list[bytes]) -> list[bytes]:
    """RFC 6962 §2.1.1 PATH(m, D[n]), computed over leaf hashes."""
    if len(hashes) == 1:
        return []
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    if m < k:
        return [*_path(m, hashes[:k]), _mth(hashes[k:])]
    return [*_path(m - k, hashes[k:]), _mth(hashes[:k])]


def _verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def _verified_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """signed-note + tlog-checkpoint: verify the log's Ed25519 line, return (origin, size,
    root). vkey is ``name+hex(key id)+base64(0x01 || public key)``."""
    name, key_id_hex, encoded = vkey.split("+", 2)
    raw = base64.b64decode(encoded)
    assert raw[0] == 0x01 and len(raw) == 33
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert key_id.hex() == key_id_hex
    text, signatures = note.split("\n\n", 1)
    text += "\n"
    verified = False
    for line in signatures.splitlines():
        assert line.startswith("\u2014 ")
        signer, sig_b64 = line[2:].split(" ")
        sig = base64.b64decode(sig_b64)
        if signer == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(raw[1:]).verify(sig[4:], text.encode())
            verified = True
    assert verified, "no signature by the log"
    origin, size, root_b64, *_extensions = text[:-1].split("\n")
    assert origin == name
    assert str(int(size)) == size  # no leading zeroes
    return origin, int(size), base64.b64decode(root_b64)


class TilesReader:
    def __init__(self, http: TestClient) -> None:
        self.http = http

    def get(self, url: str) -> bytes:
        answer = self.http.get(url)
        assert answer.status_code == 200, (url, answer.text)
        assert answer.headers["content-type"] == "application/octet-stream"
        assert "immutable" in answer.headers["cache-control"]
        return answer.content

    def tile(self, level: int, n: int, width: int) -> list[bytes]:
        data = self.get(_tile_url(str(level), n, width))
        assert len(data) == 32 * width
        return [data[i : i + 32] for i in range(0, len(data), 32)]

    def bundle(self, n: int, width: int) -> list[bytes]:
        data, entries = self.get(_tile_url("entries", n, width)), []
        while data:
            length = int.from_bytes(data[:2], "big")
            entries.append(data[2 : 2 + length])
            data = data[2 + length :]
        assert len(entries) == width
        return entries

    def level_tiles(self, level: int, size: int) -> Iterator[tuple[int, int]]:
        """(N, width) of every tile at `level` for a tree of `size` leaves."""
        count = size // 256**level
        for n in range(0, count, 256):
            yield n // 256, min(256, count - n)

    def leaf_hashes(self, size: int) -> list[bytes]:
        hashes: list[bytes] = []
        for n, width in self.level_tiles(0, size):
            tile = self.tile(0, n, width)
            bundle = self.bundle(n, width)
            assert [_leaf(e) for e in bundle] == tile
            hashes += tile
        return hashes


# --- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data_dir: Path = tmp_path_factory.mktemp("tiles")
    app = create_app(ServerConfig(data_dir=data_dir, log_origin="tiles.test/v1/log"))
    with TestClient(app) as client:
        fillers = [
            json.dumps({"type": "test.filler.v1", "n": i}).encode() for i in range(FILLER_ENTRIES)
        ]
        app.state.services.log.append(fillers)
        yield client


def test_the_tiles_recompute_the_checkpoint_root_and_prove_an_inclusion(http: TestClient) -> None:
    vkey = http.get("/v1/log/info").json()["vkey"]
    answer = http.get("/v1/log/checkpoint")
    assert answer.headers["content-type"] == "text/plain; charset=utf-8"
    assert "immutable" not in answer.headers["cache-control"]
    origin, size, root = _verified_checkpoint(answer.text, vkey)
    assert origin == "tiles.test/v1/log" and size > FILLER_ENTRIES
    reader = TilesReader(http)

    leaves = reader.leaf_hashes(size)
    assert _mth(leaves) == root
    # Level 1: each hash is the MTH of a full level-0 tile; the partial level-1 tile has
    # floor(size / 256) mod 256 hashes.
    ((n1, width1),) = reader.level_tiles(1, size)
    assert (n1, width1) == (0, size // 256)
    level1 = reader.tile(1, n1, width1)
    assert level1 == [_mth(leaves[i * 256 : (i + 1) * 256]) for i in range(width1)]

    # An inclusion proof of entry 300 built from the tiles alone.
    index = 300
    entry = reader.bundle(index // 256, 256)[index % 256]
    assert json.loads(entry) == {"type": "test.filler.v1", "n": index - 1}
    proof = _path(index, leaves)
    assert _verify_inclusion(index, size, _leaf(entry), proof, root)
    assert not _verify_inclusion(index + 1, size, _leaf(entry), proof, root)


def test_entry_bundles_are_gzipped_for_clients_that_ask(http: TestClient) -> None:
    plain = http.get("/v1/log/tile/entries/000", headers={"Accept-Encoding": "identity"})
    zipped = http.get("/v1/log/tile/entries/000", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx undoes the gzip
    assert len(gzip.compress(plain.content)) < len(plain.content)


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("0/003", 404, "no_such_tile"),  # beyond the tree
        ("0/002.p/255", 404, "no_such_tile"),  # wider than the tree's partial tile
        ("1/000", 404, "no_such_tile"),  # level 1 is partial
        ("9/000", 404, "no_such_tile"),
        ("entries/x000/002", 400, "malformed_tile_path"),  # not the fewest groups
        ("00/000", 400, "malformed_tile_path"),
        ("0/0", 400, "malformed_tile_path"),
        ("0/000.p/0", 400, "malformed_tile_path"),
        ("0/000.p/256", 400, "malformed_tile_path"),
        ("0/000.p/07", 400, "malformed_tile_path"),
        ("64/000", 400, "malformed_tile_path"),
        ("0/001/002", 400, "malformed_tile_path"),
        ("foo/000", 400, "malformed_tile_path"),
    ],
)
def test_paths_that_are_not_tiles_of_the_log_are_problems(
    http: TestClient, path: str, status: int, code: str
) -> None:
    answer = http.get(f"/v1/log/tile/{path}")
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["code"] == code


def test_a_partial_tile_stays_served_after_its_tile_fills(http: TestClient) -> None:
    """The bytes at a partial path never change: the first W hashes of the full tile."""
    full = http.get("/v1/log/tile/0/000").content
    assert http.get("/v1/log/tile/0/000.p/17").content == full[: 17 * 32]
    assert http.get("/v1/log/tile/entries/000.p/3").status_code == 200
