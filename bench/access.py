"""Benchmark of lawful-access record sealing: the per-message cost on the target's device.

Measures, for a typical record (1 KiB plaintext, one attachment key and digest, metadata):

- seal: `RecordSealer.seal` (canonical payload, SHA-256 of it and the device's Ed25519
  signature with its vodozemac identity key, then HPKE base-mode seal with a fresh ephemeral
  X25519 key, AES-128-GCM), per message, on the device;
- seal_unsigned: the same with a signer that returns a constant (sealing alone: the difference
  is the cost of record authentication on the device);
- open: `RecordOpener.open` (HPKE open, payload checks and the Ed25519 verification against
  the device's logged key), per message, at the agency;
- the raw `hpke_seal` of the same 1 KiB for comparison, and the sealed record's size.

Prints one JSON document: machine, parameters, results.

    .venv/bin/python bench/access.py --records 2000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

from machine import machine_info

from accord.primitives.hpke import generate_hpke_key_pair, hpke_seal
from accord.primitives.olm import DeviceAccount
from accord.protocols.access.agency import AgencyKey
from accord.protocols.access.approvers import ApproverRole, ApproverSet, ApproverSigner
from accord.protocols.access.device import VerifiedWarrant
from accord.protocols.access.records import (
    Direction,
    InterceptedAttachment,
    InterceptedMessage,
    RecordOpener,
    RecordSealer,
)
from accord.protocols.access.warrant import approve_warrant, draft_warrant
from accord.protocols.translog.note import Checkpoint


def setup() -> tuple[VerifiedWarrant, AgencyKey, Any]:
    now = int(time.time())
    signers = [ApproverSigner.generate(i) for i in ("a1", "a2", "a3")]
    roles = list(ApproverRole)
    aset = ApproverSet(
        1,
        2,
        tuple(s.approver(name=s.approver_id, role=r) for s, r in zip(signers, roles, strict=True)),
    )
    private = generate_hpke_key_pair()
    key = AgencyKey("agency", "Agency", private.public_key(), aset.set_hash, now)
    warrant = draft_warrant(
        authorisation_reference="REF-1",
        legal_type="interception",
        case_reference="CASE-1",
        target_identifier="alice",
        start_time=now - 60,
        end_time=now + 86400,
        delivery_key_id=key.key_id,
        scope=["content", "metadata"],
        disclosure_time=now + 180 * 86400,
        approver_set=aset,
    )
    signed = approve_warrant(warrant, signers[0], aset, now=now - 120)
    signed = approve_warrant(signed, signers[1], aset, now=now - 120)
    # Sealing needs a VerifiedWarrant; the device checks are measured by the tests, not here.
    verified = VerifiedWarrant(
        signed, b"\0" * 32, ("a1", "a2"), key, Checkpoint("b", 0, b"\0" * 32)
    )  # type: ignore[arg-type]
    return verified, key, private


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--plaintext-bytes", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    verified, key, private = setup()
    now = int(time.time())
    message = InterceptedMessage(
        direction=Direction.SENT,
        occurred_at=now,
        sender="alice",
        recipients=("bob",),
        conversation_id="c" * 32,
        message_id="m" * 32,
        plaintext=os.urandom(args.plaintext_bytes),
        attachments=(InterceptedAttachment(os.urandom(32), os.urandom(32)),),
    )
    device = DeviceAccount()
    seal_rates, unsigned_rates, open_rates, raw_rates = [], [], [], []
    size = 0
    for _ in range(args.repeats):
        unsigned = RecordSealer(verified, device_id="dev", sign=lambda _m: "unsigned")
        t0 = time.perf_counter()
        for _ in range(args.records):
            unsigned.seal(message, now=now)
        unsigned_rates.append(args.records / (time.perf_counter() - t0))
        sealer = RecordSealer(verified, device_id="dev", sign=device.sign)
        t0 = time.perf_counter()
        records = [sealer.seal(message, now=now) for _ in range(args.records)]
        seal_rates.append(args.records / (time.perf_counter() - t0))
        size = len(records[0].to_bytes())
        opener = RecordOpener(
            verified.signed_warrant.warrant, key, private, device_keys={"dev": device.ed25519}
        )
        t0 = time.perf_counter()
        for r in records:
            opener.open(r)
        open_rates.append(args.records / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for _ in range(args.records):
            hpke_seal(key.public_key, message.plaintext, info=b"i", aad=b"a")
        raw_rates.append(args.records / (time.perf_counter() - t0))

    def summary(rates: list[float]) -> dict[str, float]:
        best = max(rates)
        return {
            "per_s_median": round(statistics.median(rates)),
            "per_s_best": round(best),
            "us_per_record_median": round(1e6 / statistics.median(rates), 1),
        }

    print(
        json.dumps(
            {
                "benchmark": "access record sealing",
                "machine": machine_info(),
                "parameters": vars(args)
                | {"suite": "DHKEM(X25519,HKDF-SHA256)/HKDF-SHA256/AES-128-GCM"},
                "results": {
                    "seal_record": summary(seal_rates),
                    "seal_record_unsigned": summary(unsigned_rates),
                    "authentication_us_per_record": round(
                        1e6 / statistics.median(seal_rates)
                        - 1e6 / statistics.median(unsigned_rates),
                        1,
                    ),
                    "open_record": summary(open_rates),
                    "raw_hpke_seal_1kib": summary(raw_rates),
                    "sealed_record_bytes_json": size,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
