"""The demo's private-matching chapter: a table below the client's floors refused, then a
threshold crossed with stand-in pictures.

Real hash lists never appear here: generated pictures stand in for list entries. Called by
`accord demo` (cli/demo.py) with its running server and clients.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from accord.client.client import AccordClient
from accord.client.operator import OperatorApi
from accord.errors import VerificationError
from accord.protocols.detection.banks import BankEntry
from accord.protocols.detection.hashers import hash_file
from accord.protocols.private_matching.log_entries import TAG_THRESHOLD_CROSSING
from accord.server.process import ServerProcess

STANDINS = 14
EVERYDAY = 20
DRAIN_TIMEOUT_S = 60.0


def make_picture(path: Path, seed: int) -> Path:
    """A 192 x 144 picture of smooth colour fields with grain, different for every seed."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8), "RGB")
    smooth = np.asarray(small.resize((192, 144), Image.Resampling.BICUBIC), dtype=np.int16)
    grain = rng.integers(-20, 20, size=smooth.shape, dtype=np.int16)
    Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8), "RGB").save(path)
    return path


def matching_chapter(
    root: Path,
    server: ServerProcess,
    alice: AccordClient,
    bob: AccordClient,
    *,
    step: Callable[[str], None],
    ok: Callable[[str], None],
    expect: Callable[[bool, str], None],
) -> None:
    """Stand-ins banked; a table below the floors refused by the client; a fair table published
    and logged, t-1 matches that open nothing, then one more and a review event
    (docs/protocol/private-matching.md)."""
    folder = root / "pictures"
    folder.mkdir()
    standins = [make_picture(folder / f"standin-{i:02d}.png", 1000 + i) for i in range(STANDINS)]
    everyday = [make_picture(folder / f"everyday-{i:02d}.png", 2000 + i) for i in range(EVERYDAY)]

    step("an operator banks stand-in pictures and publishes a blinded table (its digest is logged)")
    op = OperatorApi(server.url, server.admin_token())
    try:
        op.create_bank("standins", 31)
        entries = []
        for p in standins:
            pdq = hash_file(p).pdq
            if pdq is not None:
                entries.append(BankEntry(signal_type="pdq", hash=pdq.hash, source=f"file:{p.name}"))
        op.add_entries("standins", entries)

        step("the operator publishes a weak table: 8-bit bands, threshold 2, no synthetic vouchers")
        weak = op.publish_table(
            {"banks": ["standins"], "band_bits": 8, "threshold": 2, "synthetic_rate_ppm": 0}
        ).model_dump()
        try:
            alice.send("bob", "a photo", [everyday[0]])
            refused = ""
        except VerificationError as exc:
            refused = f"{exc.code}: {exc.message}"
        expect(
            refused.startswith("matching_params_below_floor"),
            f"alice's client refuses table {weak['table_version']} (logged, but below its "
            f"floors) and sends no picture with it: {refused}",
        )

        step("the operator publishes a table at the parameters the protocol derives")
        table = op.publish_table({"banks": ["standins"]}).model_dump()
        t = int(table["params"]["threshold"])
        ok(
            f"table {table['table_version']}: {table['size']:,} bytes of blinded points for "
            f"{table['banked_hashes']} hashes, digest {table['digest'][:16]}... at log index "
            f"{table['log_index']}; threshold t = {t}"
        )

        # A stand-in this device would send as a synthetic voucher adds no real share: the
        # demo sends the ones its own (deterministic) coin keeps real.
        real = [p for p in standins if not alice.vouchers.is_synthetic(p)][:t]
        expect(len(real) == t, f"{t} stand-ins to send (alice's synthetic coin left them real)")

        step(f"alice sends bob {t - 1} stand-ins among {EVERYDAY} everyday pictures")
        alice.send("bob", "photos", everyday[: EVERYDAY // 2] + real[: (t - 1) // 2])
        alice.send("bob", "more photos", everyday[EVERYDAY // 2 :] + real[(t - 1) // 2 : t - 1])
        status = _drain(op)
        ok(
            f"every picture went with a voucher of {_voucher_bytes(server):,} bytes, "
            "matching or not"
        )
        expect(
            status["events"] == 0 and status["crossings"] == 0,
            f"below the threshold: {status['opened_shares']} vouchers opened to a share, "
            "no key, nothing readable, no review event",
        )

        step("alice sends one more stand-in")
        alice.send("bob", "last one", [real[t - 1]])
        status = _drain(op)
        listing = op.api.request("GET", "/v1/review/events")
        expect(len(listing["events"]) == 1, "the threshold is crossed: one review event")
        event = listing["events"][0]
        detail = op.api.request("GET", f"/v1/review/events/{event['event_id']}")
        images = detail["images"]
        expect(
            len(images) == t and all(i["distance"] == 0 for i in images),
            f"it holds exactly the {t} stand-ins, each at distance 0 from its bank entry "
            "(re-checked on the full hash)",
        )
        out = root / "review"
        out.mkdir()
        for i in images:
            (out / f"derivative-{i['index']}.png").write_bytes(
                base64.b64decode(i["derivative_png"])
            )
        ok(f"reviewers see {t} grayscale derivatives, 64 x 64 (in {out.name}/, kept with --keep)")
        entries_page = op.api.request("GET", "/v1/log/entries")
        crossings = [
            e
            for e in entries_page["entries"]
            if json.loads(base64.b64decode(e))["type"] == TAG_THRESHOLD_CROSSING
        ]
        expect(
            len(crossings) == 1 and event["log_index"] is not None,
            f"the crossing is counted in the transparency log (index {event['log_index']}), "
            "with no account, image or hash",
        )
        got = bob.receive().messages
        expect(
            sum(len(m.attachments) for m in got if m.sender == "alice") == EVERYDAY + t,
            f"bob received all {EVERYDAY + t} pictures; no voucher ever reached him",
        )
    finally:
        op.close()


def _drain(op: OperatorApi) -> dict[str, Any]:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        status: dict[str, Any] = op.api.request("GET", "/v1/matching/status")
        done = status["queued"] == 0 and status["crossings_unlogged"] == 0
        if done or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


def _voucher_bytes(server: ServerProcess) -> int:
    op = OperatorApi(server.url, server.admin_token())
    try:
        return int(op.api.request("GET", "/v1/matching/table", auth=False)["voucher_bytes"])
    finally:
        op.close()
