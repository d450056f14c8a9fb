"""Benchmark of message franking: its cost per message next to the cost of sending one.

Franking per message (docs/protocol/franking.md):
- sender: draw the franking key, encode the message canonically, HMAC-SHA256 (step 2);
- server: HMAC-SHA256 tag under the period's key (step 3);
- recipient: recompute and compare the commitment (step 4).

The cost of sending is measured on the same machine through the real client and a real server
process on loopback (SQLite): wall time of `AccordClient.send` per message, and the server's
share of it. Both for a text message and for one with a 100 kB attachment (whose franking cost
includes the attachment's digest and key, not its bytes). Prints one JSON document.

    .venv/bin/python bench/franking.py --messages 300
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import machine_info

from accord.client.client import AccordClient
from accord.primitives.encoding import b64encode
from accord.protocols.franking import (
    FrankingKey,
    TagContext,
    commit_message,
    new_franking_key,
    tag_commitment,
    verify_commitment,
)
from accord.server.process import ServerProcess
from accord.wire.franking import franked_message
from accord.wire.messaging import AttachmentRef, Content, Conversation, DeviceRef

TEXT = "x" * 200


def _content(with_attachment: bool) -> Content:
    attachments = []
    if with_attachment:
        attachments.append(
            AttachmentRef(
                blob_id="A" * 32,
                name="photo.jpg",
                media_type="image/jpeg",
                size=100_000,
                sha256=b64encode(os.urandom(32)),
                key=b64encode(os.urandom(32)),
            )
        )
    return Content(
        message_id="M" * 22,
        sender=DeviceRef(account="alice", device_id="DEVICE01"),
        to=Conversation(account="bob"),
        sent_at=time.time_ns() // 1_000_000,
        text=TEXT,
        attachments=attachments,
        extensions={"franking_key": b64encode(new_franking_key())},
    )


def _per_op_us(fn: Any, n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def franking_costs(with_attachment: bool, n: int) -> dict[str, float]:
    content = _content(with_attachment)
    server_key = os.urandom(32)
    key = FrankingKey(os.urandom(32))
    message = franked_message(content)
    commitment = commit_message(key, message)
    context = TagContext("alice", "DEVICE01", "account:bob", 1, content.message_id)

    def sender() -> None:
        k = new_franking_key()
        commit_message(k, franked_message(content))

    def server() -> None:
        tag_commitment(server_key, commitment, context)

    def recipient() -> None:
        verify_commitment(key, franked_message(content), commitment)

    costs = {
        "sender_us": _per_op_us(sender, n),
        "server_us": _per_op_us(server, n),
        "recipient_us": _per_op_us(recipient, n),
    }
    costs["total_us"] = sum(costs.values())
    return costs


def send_costs(messages: int, with_attachment: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "server") as server:
        alice = AccordClient.create_account(
            Path(tmp) / "a", server.url, "alice", "bench passphrase", insecure_dev=True
        )
        bob = AccordClient.create_account(
            Path(tmp) / "b", server.url, "bob", "bench passphrase", insecure_dev=True
        )
        files = []
        if with_attachment:
            f = Path(tmp) / "photo.bin"
            f.write_bytes(os.urandom(100_000))
            files = [f]
        alice.send("bob", "warm-up", files)
        times = []
        for _ in range(messages):
            start = time.perf_counter()
            alice.send("bob", TEXT, files)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        received = 0
        while received < messages + 1:
            got = bob.receive().messages
            if not got:
                break
            received += len(got)
        receive_us = (time.perf_counter() - start) / max(received, 1) * 1e6
        alice.close()
        bob.close()
    return {
        "send_median_us": statistics.median(times) * 1e6,
        "send_mean_us": statistics.fmean(times) * 1e6,
        "receive_mean_us": receive_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--ops", type=int, default=20_000)
    args = parser.parse_args()
    results = {}
    for label, with_attachment in (("text", False), ("text+100kB attachment", True)):
        fr = franking_costs(with_attachment, args.ops)
        sc = send_costs(args.messages, with_attachment)
        per_message = sc["send_median_us"] + sc["receive_mean_us"]
        results[label] = {
            "franking": {k: round(v, 1) for k, v in fr.items()},
            "messaging": {k: round(v, 1) for k, v in sc.items()},
            "franking_share_of_send_and_receive_pct": round(100 * fr["total_us"] / per_message, 3),
        }
    print(
        json.dumps(
            {
                "machine": machine_info(),
                "parameters": {"messages": args.messages, "ops": args.ops, "text_bytes": len(TEXT)},
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
