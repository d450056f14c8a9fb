"""Benchmark: what lawful access costs a sending client, with and without a warrant.

One `accord server` (SQLite) on loopback; the real client library. Three ways of sending a
direct message of --text-bytes (Olm to the recipient's device, franking, HTTP, local store):

- off:      the client with its lawful-access hooks replaced by no-ops (the code path as it
            was before the feature);
- on:       the real client, no warrant active (the hooks run and find nothing to do);
- warrant:  the real client of an account under an active warrant (content and metadata):
            every message is also sealed with HPKE to the agency and uploaded.

It also times the two hooks a send runs (`on_sent`, `flush`) on their own, with no warrant.

"off" and "on" use the same two accounts and alternate round by round, so drift in the
machine's load affects both alike; "warrant" uses a third account. Reported per mode: median
and interquartile range of the per-round medians, in milliseconds per message.

    .venv/bin/python bench/access_send.py --rounds 15 --messages 40
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_info

from accord.client import authority as au
from accord.client.client import AccordClient
from accord.server.process import ServerProcess
from accord.wire.messaging import Conversation

PASS = "bench passphrase"


class _NoAccess:
    """The hooks as no-ops: the client as it sends without the feature."""

    def on_sent(self, _content: Any) -> None:
        pass

    def on_received(self, _message: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def sync_notices(self) -> list[str]:
        return []


def _timed_round(client: AccordClient, to: str, text: str, n: int) -> float:
    per: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.send(to, text)
        per.append(time.perf_counter() - t0)
    return statistics.median(per) * 1000


def _summary(values: list[float]) -> dict[str, float]:
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return {
        "median_ms": round(statistics.median(values), 3),
        "q1_ms": round(q[0], 3),
        "q3_ms": round(q[2], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--messages", type=int, default=40, help="per round and mode")
    parser.add_argument("--text-bytes", type=int, default=200)
    args = parser.parse_args()
    text = "x" * args.text_bytes

    root = Path(tempfile.mkdtemp(prefix="accord-bench-access-"))
    # No per-account rate or queue limit: this measures the client, not the limiter.
    limits = ["--send-rate", "0", "--max-queue", "0"]
    with ServerProcess(root / "server", extra_args=limits) as server:
        url = server.url
        keys = {}
        for name, role in (("judge", "issuing_authority"), ("clerk", "oversight_body")):
            au.generate_approver_key(name, role, root / f"{name}.key")
            keys[name] = au.load_approver_key(root / f"{name}.key")
        signed = au.sign_approver_set_with(
            au.create_approver_set(2, [k.approver for k in keys.values()]), list(keys.values())
        )
        au.publish_approver_set(url, server.admin_token(), signed)
        au.generate_agency_key("agency", root / "agency.key")
        registration, _ = au.register_agency(
            url, root / "agency.key.pub", list(keys.values()), root
        )
        alice = AccordClient.create_account(root / "alice", url, "alice", PASS, insecure_dev=True)
        bob = AccordClient.create_account(root / "bob", url, "bob", PASS, insecure_dev=True)
        target = AccordClient.create_account(  # configured with the genesis approver set
            root / "target",
            url,
            "target",
            PASS,
            insecure_dev=True,
            approver_set=signed.approver_set.set_hash.hex(),
        )
        now = int(time.time())
        warrant = au.draft_warrant(
            target="target",
            agency=registration.key,
            scope=["content", "metadata"],
            start_time=now,
            end_time=now + 86400,
            case_reference="BENCH",
            disclose_after_s=0,
        )
        for key in keys.values():
            warrant = au.sign_warrant(warrant, key, now=now)
        au.submit_warrant(url, warrant)
        target.receive()
        assert target.access.active_warrants(), "the warrant was not accepted"

        for client in (alice, target):  # sessions established, caches warm
            for _ in range(5):
                client.send("bob", text)
        real_access = alice.access
        # The hooks alone, with no warrant: what the feature adds to each send, measured
        # without the network and the disks in the way.
        content = alice._compose(Conversation(account="bob"), text, [])
        hook_calls = 20000
        t0 = time.perf_counter()
        for _ in range(hook_calls):
            real_access.on_sent(content)
            real_access.flush()
        hooks_us = (time.perf_counter() - t0) / hook_calls * 1e6
        results: dict[str, list[float]] = {"off": [], "on": [], "warrant": []}
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for mode in order:
                alice.__dict__["access"] = _NoAccess() if mode == "off" else real_access
                results[mode].append(_timed_round(alice, "bob", text, args.messages))
            results["warrant"].append(_timed_round(target, "bob", text, args.messages))
            bob.receive()
        alice.__dict__["access"] = real_access
        records = len(
            au.fetch_records(
                url, au.load_agency_key(root / "agency.key"), warrant.warrant_id.hex()
            ).records
        )
        for client in (alice, bob, target):
            client.close()

    off, on, with_warrant = (_summary(results[m]) for m in ("off", "on", "warrant"))
    paired = [b - a for a, b in zip(results["off"], results["on"], strict=True)]
    print(
        json.dumps(
            {
                "benchmark": "lawful access: cost of sending",
                "machine": machine_info(),
                "parameters": vars(args)
                | {"database": "sqlite", "server": "loopback, --send-rate 0 --max-queue 0"},
                "results": {
                    "send_without_feature": off,
                    "send_feature_no_warrant": on,
                    "send_under_warrant": with_warrant,
                    "no_warrant_minus_without_ms": _summary(paired),
                    "warrant_extra_ms_per_message": round(
                        with_warrant["median_ms"] - off["median_ms"], 3
                    ),
                    "records_sealed_and_stored": records,
                    "hooks_per_send_no_warrant_us": round(hooks_us, 3),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
