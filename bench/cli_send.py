"""Wall time of one `accord send NAME TEXT` from the command line, end to end.

Each send is a fresh `accord` process (the installed entry point next to this Python) against a
local `accord server` on loopback with SQLite, for homes made with the default passphrase cost
(Argon2id, RFC 9106: 64 MiB, t=3, p=4). Cases:
  first     the first send to a contact (fetches and verifies the contact's devices, makes an Olm
            session from a one-time key), one fresh sender per run
  repeat    a later send to the same contact (the session and pinned devices exist)
each without the store-key agent (the passphrase from ACCORD_PASSPHRASE, so Argon2id runs in
every process) and with it (`accord agent start` once, then no Argon2id per command).
For reference the same run times `python -c pass` and `accord --help`.

Prints one JSON document (machine, load average, parameters, medians and quartiles in ms).
Usage: python bench/cli_send.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info

from accord.server.process import ServerProcess

PASSPHRASE = "bench passphrase"  # noqa: S105
ACCORD = str(Path(sys.executable).with_name("accord"))


def run(home: Path, *args: str, env: dict[str, str]) -> float:
    """Seconds from starting `accord --home HOME ARGS` to its exit (which must be 0)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [ACCORD, "--home", str(home), *args], capture_output=True, text=True, env=env, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"accord {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return elapsed


def wall(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, capture_output=True, env=env, check=True)
    return time.perf_counter() - start


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3
    return {"median_ms": round(q[1], 1), "p25_ms": round(q[0], 1), "p75_ms": round(q[2], 1)}


def create(home: Path, name: str, url: str, env: dict[str, str]) -> None:
    run(home, "account", "create", name, "--server", url, "--insecure-dev", env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {**os.environ, "ACCORD_PASSPHRASE": PASSPHRASE}
    env.pop("ACCORD_AGENT", None)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = ServerProcess(root / "server", extra_args=["--send-rate", "0"]).start()
        try:
            bob = root / "bob"
            create(bob, "bob", server.url, env)
            results["python -c pass"] = summary(
                [wall([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
            )
            results["accord --help"] = summary(
                [wall([ACCORD, "--help"], env) for _ in range(args.runs)]
            )
            for agent in (False, True):
                label = "agent" if agent else "passphrase"
                firsts, repeats = [], []
                for i in range(args.runs):
                    home = root / f"{label}{i}"
                    create(home, f"{label}{i}", server.url, env)
                    if agent:
                        run(home, "agent", "start", env=env)
                    send_env = {**env, "ACCORD_PASSPHRASE": ""} if agent else env
                    firsts.append(run(home, "send", "bob", f"first {i}", env=send_env))
                    repeats.append(run(home, "send", "bob", f"again {i}", env=send_env))
                    if agent:
                        run(home, "agent", "stop", env=send_env)
                results[f"first send, {label}"] = summary(firsts)
                results[f"repeated send, {label}"] = summary(repeats)
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "machine": machine_info(load_average=[round(x, 2) for x in os.getloadavg()]),
                "runs": args.runs,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
