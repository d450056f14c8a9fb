"""Hash banks on the server: operator-only API and the CLI's --server mode.

One server per module and database kind; bank names are unique per test, and a test looks only
at the banks it created (those not listed before it started).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

SHARED = Path(
    os.environ.get("ACCORD_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared")
)
HIGHRES = SHARED / "data" / "images" / "highres"


@pytest.fixture
def images(tmp_path):  # type: ignore[no-untyped-def]
    if not HIGHRES.is_dir():
        pytest.skip(f"sample images not found at {HIGHRES}")
    picked = sorted(HIGHRES.glob("*.jpg"))[:3]
    out = []
    for p in picked:
        dest = tmp_path / p.name
        shutil.copy(p, dest)
        out.append(dest)
    return out


def test_operator_api_needs_the_admin_token(server):  # type: ignore[no-untyped-def]
    for method, path in (("GET", "/v1/banks"), ("POST", "/v1/match"), ("POST", "/v1/hash")):
        r = httpx.request(method, server.url + path, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


def test_bank_on_server_over_cli(server, cli, images, tmp_path, unique):  # type: ignore[no-untyped-def]
    standins, copy_name = unique("standins"), unique("copy")
    op = cli("operator")
    op.env["ACCORD_ADMIN_TOKEN"] = server.admin_token()
    s = ["--server", server.url]
    earlier = {b["name"] for b in json.loads(op.run("bank", "list", "--json", *s).stdout)}
    op.run("bank", "create", standins, *s)
    banked, other = images[:2], images[2]
    op.run("bank", "add", standins, *map(str, banked), "--label", "A1", *s)
    listed = [
        b
        for b in json.loads(op.run("bank", "list", "--json", *s).stdout)
        if b["name"] not in earlier
    ]
    assert [b["name"] for b in listed] == [standins] and listed[0]["entries"] > 0

    out = op.run("match", *map(str, images), "--json", *s).stdout.splitlines()
    results = {
        json.loads(line)["path"]: [
            h for h in json.loads(line)["matches"] if h["bank"] not in earlier
        ]
        for line in out
    }
    for p in banked:
        hits = results[str(p)]
        assert hits and min(h["distance"] for h in hits) == 0
        assert all(h["bank"] == standins and h["label"] == "A1" for h in hits)
    assert results[str(other)] == []

    exported = op.run("bank", "export", standins, *s).stdout
    assert exported.startswith("type,hash,label") or "pdq" in exported
    csv = tmp_path / "copy.csv"
    csv.write_text(exported)
    op.run("bank", "create", copy_name, *s)
    op.run("bank", "import", copy_name, str(csv), *s)
    copy = {b["name"]: b for b in json.loads(op.run("bank", "list", "--json", *s).stdout)}
    assert copy[copy_name]["entries"] > 0

    # the raw API: a file in, hashes out; hashes in, matches out
    h = {"Authorization": f"Bearer {server.admin_token()}"}
    hashed = httpx.post(server.url + "/v1/hash", content=banked[0].read_bytes(), headers=h).json()
    assert len(hashed["pdq"]) == 64 and hashed["quality"] >= 50
    r = httpx.post(
        server.url + "/v1/match",
        json={"hashes": [{"signal_type": "pdq", "hash": hashed["pdq"]}], "banks": [standins]},
        headers=h,
    )
    assert r.status_code == 200 and r.json()["results"][0]["matches"]
    bad = httpx.post(server.url + "/v1/hash", content=b"not an image at all", headers=h)
    assert bad.status_code == 200 and bad.json()["pdq"] is None
    junk = httpx.post(
        server.url + f"/v1/banks/{standins}/import", content=b"\\xff\\x00garbage", headers=h
    )
    assert 400 <= junk.status_code < 500 and junk.json()["code"]
