"""Wall time of one `accord send NAME TEXT` from the command line, end to end.

Each send is a fresh `accord` process (the installed entry point next to this Python) against a
local `accord server` on loopback with SQLite, for homes made with the default passphrase cost
(Argon2id, RFC 9106: 64 MiB, t=3, p=4). Cases:
  first     the first send to a contact (fetches and verifies the contact's devices, makes an Olm
            session from a one-time key), one fresh sender per run
  repeat    a later send to the same contact (the session and pinned devices exist)
each without the store-key agent (the passphrase from ACCORD_PASSPHRASE, so Argon2id runs in
every process) and with it (`accord agent start` once, then no Argon2id per command).
For reference the same run times `python -c pass` and `accord --help`. Bytecode is written and
used as in a normal installation (PYTHONDONTWRITEBYTECODE is cleared for the children, and one
warm-up command runs first). `--no-agent` measures only the passphrase cases (for a version
without the agent, put on PYTHONPATH).

Prints one JSON document (machine, load average, parameters, medians and quartiles in ms).
Usage: python bench/cli_send.py [--runs 15] [--no-agent]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from machine import machine_info

from accord.server.process import ServerProcess

PASSPHRASE = "bench passphrase"  # noqa: S105
ACCORD = str(Path(sys.executable).with_name("accord"))


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float
    """User plus system time of the command's process (and its threads: Argon2id uses 4)."""


def timed(argv: list[str], env: dict[str, str]) -> Timing:
    """Wall and CPU time of running `argv` to its exit (which must be 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(elapsed, cpu)


def run(home: Path, *args: str, env: dict[str, str]) -> Timing:
    return timed([ACCORD, "--home", str(home), *args], env)


def _quartiles(values: list[float]) -> list[float]:
    ms = sorted(v * 1000 for v in values)
    return statistics.quantiles(ms, n=4) if len(ms) > 1 else [ms[0]] * 3


def summary(timings: list[Timing]) -> dict[str, float]:
    wall = _quartiles([t.wall_s for t in timings])
    cpu = _quartiles([t.cpu_s for t in timings])
    return {
        "wall_median_ms": round(wall[1], 1),
        "wall_p25_ms": round(wall[0], 1),
        "wall_p75_ms": round(wall[2], 1),
        "cpu_median_ms": round(cpu[1], 1),
    }


def create(home: Path, name: str, url: str, env: dict[str, str]) -> None:
    run(home, "account", "create", name, "--server", url, "--insecure-dev", env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-agent", action="store_true", help="Only the passphrase cases.")
    args = parser.parse_args()
    env = {**os.environ, "ACCORD_PASSPHRASE": PASSPHRASE}
    for name in ("ACCORD_AGENT", "PYTHONDONTWRITEBYTECODE", "ACCORD_SERVER"):
        env.pop(name, None)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = ServerProcess(root / "server", extra_args=["--send-rate", "0"]).start()
        try:
            bob = root / "bob"
            create(bob, "bob", server.url, env)
            results["python -c pass"] = summary(
                [timed([sys.executable, "-c", "pass"], env) for _ in range(args.runs)]
            )
            results["accord --help"] = summary(
                [timed([ACCORD, "--help"], env) for _ in range(args.runs)]
            )
            create(root / "warm", "warm", server.url, env)
            run(root / "warm", "send", "bob", "warm-up", env=env)
            load_before = os.getloadavg()
            for agent in (False,) if args.no_agent else (False, True):
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
                "machine": machine_info(
                    load_average_before=[round(x, 2) for x in load_before],
                    load_average_after=[round(x, 2) for x in os.getloadavg()],
                ),
                "runs": args.runs,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
