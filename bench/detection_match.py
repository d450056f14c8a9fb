"""`accord match` on 12-megapixel photos, with and without the verifying stage, on one core.

The bank holds the `highres/` photos as `accord bank add` banks them (derived hashes and local
features). The queries are those photos enlarged to 4000x3000 and saved as JPEG quality 90
(each one matches, so each one runs the verifying stage), and the four 12 MP phone photos of
the PDQ reference data (unrelated: no candidate, nothing to verify). Each query runs what
`accord match` runs per file: `hash_file` (draft decoding), the query variants, the index and,
for candidates, the local features and their geometric check.

    .venv/bin/python bench/detection_match.py [--shared ../shared] [--queries 20]

OpenCV is held to one thread (run with OMP_NUM_THREADS=1), so the process uses one core; the
rate per core is taken from its CPU time, so other load on the machine does not lower it (the
wall time is printed too, with the load average). For the phone photos it also gives the CPU
time of each part (decoding, MD5/SHA-256, query hashes, ORB), and the rate decoding alone
allows: the ceiling of any matcher on those files. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info  # noqa: E402

from accord.protocols.detection.banks import BankEntry  # noqa: E402
from accord.protocols.detection.features import (  # noqa: E402
    QueryFeatures,  # noqa: E402
    extract_features,
    serialize_features,
)
from accord.protocols.detection.hashers import hash_file, md5_of, sha256_of  # noqa: E402
from accord.protocols.detection.images import load_image  # noqa: E402
from accord.protocols.detection.matching import MatchQuery  # noqa: E402
from accord.protocols.detection.variants import (  # noqa: E402
    QUERY_DECODE_LONG_SIDE_PX,
    MatchMeasures,
    bank_hashes,
    query_hashes,
    reduced_for_query,
)
from accord.storage.banks import SqlBankStore  # noqa: E402


def bank_folder(store: SqlBankStore, folder: Path) -> int:
    store.create_bank("removals")
    entries, n = [], 0
    for path in sorted(folder.iterdir()):
        image = hash_file(path).image
        if image is None:
            continue
        derived = bank_hashes(image.pixels, MatchMeasures())
        if not derived:
            continue
        source = f"file:{path.name}"
        entries += [
            BankEntry(signal_type="pdq", hash=h.result.hash, source=source, variant=h.via)
            for h in derived
        ]
        n += 1
        store.add_entries("removals", entries)
        entries = []
        store.put_features("removals", source, serialize_features(extract_features(image.pixels)))
    return n


def run(files: list[Path], store: SqlBankStore, verify: bool) -> dict[str, float]:
    matcher = store.open_matcher(["removals"])
    measures = MatchMeasures(crops=False, tiles=verify and matcher.verifies)  # as `accord match`
    matched = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        query = MatchQuery.from_file_hashes(
            hash_file(path, pdq=False, draft_long_side_px=QUERY_DECODE_LONG_SIDE_PX),
            measures,
            verify=verify,
        )
        matched += bool(matcher.match(query))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "files": len(files),
        "matched": matched,
        "wall_ms_per_image": round(1000 * elapsed / len(files), 1),
        # CPU time of this one-threaded process: the rate per core, whatever else the machine
        # is running.
        "cpu_ms_per_image": round(1000 * cpu / len(files), 1),
        "images_per_s_per_core": round(len(files) / cpu, 1),
    }


def breakdown(files: list[Path], repeat: int = 5) -> dict[str, float]:
    """CPU per image of each part of a query, on files decoded as `accord match` decodes them."""
    datas = [path.read_bytes() for path in files]
    images = [load_image(d, draft_long_side_px=QUERY_DECODE_LONG_SIDE_PX).pixels for d in datas]

    def cpu_ms(work: Callable[[int], object]) -> float:
        c0 = time.process_time()
        for _ in range(repeat):
            for k in range(len(datas)):
                work(k)
        return round(1000 * (time.process_time() - c0) / (repeat * len(datas)), 1)

    measures = MatchMeasures(crops=False)
    decode_ms = cpu_ms(lambda k: load_image(datas[k], draft_long_side_px=QUERY_DECODE_LONG_SIDE_PX))
    return {
        "decode_for_matching_ms": decode_ms,
        # The ceiling any matcher has on these files with this decoder: decoding alone.
        "decoding_alone_images_per_s_per_core": round(1000 / decode_ms, 1),
        "decode_both_sides_512_ms": cpu_ms(lambda k: load_image(datas[k])),
        "md5_sha256_ms": cpu_ms(lambda k: (md5_of(datas[k]), sha256_of(datas[k]))),
        "query_hashes_ms": cpu_ms(lambda k: query_hashes(images[k], measures)),
        "orb_ms": cpu_ms(lambda k: QueryFeatures(reduced_for_query(images[k])).plain),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    default_shared = Path(__file__).resolve().parents[1] / ".." / "shared"
    ap.add_argument(
        "--shared", type=Path, default=Path(os.environ.get("ACCORD_SHARED_DIR", default_shared))
    )
    ap.add_argument("--queries", type=int, default=20, help="Enlarged banked photos queried.")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    highres = args.shared / "data" / "images" / "highres"
    phone = args.shared / "vectors" / "pdq" / "pdq" / "data" / "reg-test-input" / "exif-rotn"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = SqlBankStore.open_sqlite(work / "banks.db")
        banked = bank_folder(store, highres)
        files = []
        for path in sorted(highres.iterdir())[: args.queries]:
            big = Image.open(path).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC)
            out = work / f"{path.stem}-12mp.jpg"
            big.save(out, "JPEG", quality=90)
            files.append(out)
        unrelated = sorted(phone.glob("*.jpg"))
        result = {
            "machine": machine_info(
                opencv_threads=cv2.getNumThreads(), load_average=os.getloadavg()
            ),
            "banked_photos": banked,
            "banked_twelve_mp_verify_on": run(files, store, verify=True),
            "banked_twelve_mp_verify_off": run(files, store, verify=False),
            "unrelated_phone_twelve_mp_verify_on": run(unrelated, store, verify=True),
            "unrelated_phone_twelve_mp_cpu_breakdown": breakdown(unrelated),
        }
        store.close()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
