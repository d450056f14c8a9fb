"""Benchmark of the trust anchors' cost on a device (docs/protocol/transparency.md, 5a, V5).

What a command pays for the deployment manifest and the tagged anchors, measured in-process:
- verifying a manifest (M1: canonical parse and the signers' Ed25519 signatures), done once per
  process when the pinned manifest is first read;
- reading the pinned anchors from the local store (HMAC-SHA256 tag check, every read);
- reading an account's pinned devices (one tag check per device row);
- V5 on a cosigned checkpoint. Prints one JSON document.

    .venv/bin/python bench/anchors.py --rounds 2000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import machine_info

from accord.client.store import LocalStore, LogAnchors, PinnedDevice
from accord.primitives.storage_crypto import KdfCost
from accord.protocols.manifest import build_manifest, sign_manifest, verify_manifest
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.protocols.translog.note import (
    Checkpoint,
    CosignatureSigner,
    add_signatures,
    generate_cosigner,
    generate_signer,
    parse_skey,
    sign_note,
)
from accord.protocols.translog.verify import (
    LogTrustPolicy,
    verify_checkpoint_fresh,
    verify_checkpoint_note,
)

CHEAP_KDF = KdfCost(time_cost=1, memory_kib=1024, parallelism=1)  # not what is measured


def per_op_us(fn: Callable[[], Any], rounds: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(rounds):
        fn()
    return round((time.perf_counter() - start) / rounds * 1e6, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=5)
    parser.add_argument("--signers", type=int, default=3)
    args = parser.parse_args()

    log = parse_skey(generate_signer("log.bench")[0])
    witnesses = [parse_skey(generate_cosigner(f"witness.bench/w{i}")[0]) for i in range(3)]
    signers = [parse_skey(generate_signer(f"signer.bench/{i}")[0]) for i in range(args.signers)]
    manifest = build_manifest(
        deployment="bench",
        log_vkey=log.vkey,
        witnesses=[w.vkey for w in witnesses],
        witness_quorum=2,
        approver_genesis_set="00" * 32,
        signers=[s.vkey for s in signers],
        signer_quorum=args.signers,
        matching_floors=DEFAULT_MATCHING_FLOORS,
    )
    note = sign_manifest(manifest, signers)
    text = Checkpoint("log.bench", 1000, bytes(32)).to_text()
    cosigs = []
    for w in witnesses:
        assert isinstance(w, CosignatureSigner)
        cosigs.append(w.sign(text, timestamp=1_800_000_000))
    checkpoint = add_signatures(sign_note(text, [log]), cosigs)
    policy = LogTrustPolicy(
        origin="log.bench",
        log_verifiers=(log.verifier,),
        witness_verifiers=tuple(w.verifier for w in witnesses),
        witness_quorum=2,
    )
    verified = verify_checkpoint_note(checkpoint, policy)

    with tempfile.TemporaryDirectory() as tmp:
        store = LocalStore(Path(tmp))
        store.initialise("bench passphrase", CHEAP_KDF)
        store.set_log_anchors(LogAnchors.from_manifest(note))
        devices = [
            PinnedDevice("bob", f"D{i}", f"ed{i:040d}", f"cu{i:040d}") for i in range(args.devices)
        ]
        store.replace_devices("bob", devices, now=1)
        results = {
            "verify_manifest_us": per_op_us(lambda: verify_manifest(note), args.rounds),
            "read_pinned_anchors_us": per_op_us(store.log_anchors, args.rounds),
            f"read_{args.devices}_pinned_devices_us": per_op_us(
                lambda: store.pinned_devices("bob"), args.rounds
            ),
            "verify_checkpoint_v1_v2_us": per_op_us(
                lambda: verify_checkpoint_note(checkpoint, policy), args.rounds
            ),
            "v5_freshness_us": per_op_us(
                lambda: verify_checkpoint_fresh(
                    verified, quorum=2, now_s=1_800_000_100, max_age_s=86_400
                ),
                args.rounds,
            ),
        }
        store.close()
    print(
        json.dumps(
            {
                "machine": machine_info(),
                "parameters": vars(args) | {"witnesses": 3, "witness_quorum": 2},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
