"""Shared by the tests beyond fixtures: the test Argon2id cost, the movable clock, servers, the
command line run in-process, deployment manifests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from accord.client.log_trust import INSECURE_DEV_WARNING
from accord.clock import CLOCK_OFFSET_ENV, OffsetFileClock, write_clock_offset
from accord.primitives.storage_crypto import KdfCost
from accord.protocols.manifest import (
    DEFAULT_MAX_CHECKPOINT_AGE_S,
    DEFAULT_MAX_DISCLOSURE_DELAY_S,
    DEFAULT_MAX_START_SKEW_S,
    MatchingFloors,
    build_manifest,
    sign_manifest,
)
from accord.protocols.private_matching.floors import DEFAULT_MATCHING_FLOORS
from accord.protocols.translog.note import Signer, generate_signer, parse_skey

T = TypeVar("T")

EVENTUALLY_TIMEOUT_S = 60.0
EVENTUALLY_POLL_S = 0.05


def eventually(check: Callable[[], T], what: str, *, timeout_s: float = EVENTUALLY_TIMEOUT_S) -> T:
    """Poll `check` until it returns a true value, and return that value.

    Only for work another process or thread completes on its own (a server's background
    worker, a socket taking its queue, a process starting or cleaning up): time-dependent
    behaviour never waits here, tests move the `TestClock` instead. Bounded: fails naming
    `what` after `timeout_s`, which is a limit for a loaded machine, never a measurement.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what}")
        time.sleep(EVENTUALLY_POLL_S)


PASS = "test passphrase"

# A cheap Argon2id for the local stores tests create (the default is RFC 9106's 64 MiB, t=3).
TEST_KDF_COST = KdfCost(time_cost=1, memory_kib=1024, parallelism=1)


def start_link(home: Path, server_url: str, account: str) -> tuple[Any, str]:
    """A new device of `account` at `home`, waiting for approval: the device and its code."""
    from accord.client.client import AccordClient

    return AccordClient.start_link(
        home, server_url, account, PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )


class TestClock(OffsetFileClock):
    """The system clock plus an offset that the test moves forward; every server process and
    client that reads the same file (`env`) sees the same time."""

    __test__ = False

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._moved = 0.0
        write_clock_offset(path, 0.0)

    @property
    def env(self) -> dict[str, str]:
        return {CLOCK_OFFSET_ENV: str(self.path)}

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._moved += seconds
        write_clock_offset(self.path, self._moved)

    def advance_past(self, when_s: float) -> None:
        """Move forward until the clock reads later than `when_s` (a whole second later)."""
        gap = when_s - self.time()
        if gap >= 0:
            self.advance(gap + 1.0)


def start_server(
    data_dir: Path,
    *,
    clock: TestClock,
    db_url: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> Any:
    from accord.server.process import ServerProcess

    proc = ServerProcess(
        data_dir, db_url=db_url, extra_args=extra_args, env={**clock.env, **(env or {})}
    )
    proc.clock = clock  # type: ignore[attr-defined]
    return proc.start()


NO_APPROVER_SET = "00" * 32
"""A manifest's approver genesis set where the test publishes none."""


def manifest_signer(name: str = "manifest.test/signer") -> Signer:
    return parse_skey(generate_signer(name)[0])


def make_manifest(
    log_vkey: str,
    witnesses: Sequence[str],
    *,
    quorum: int | None = None,
    approver_set: str = NO_APPROVER_SET,
    max_checkpoint_age_s: int = DEFAULT_MAX_CHECKPOINT_AGE_S,
    serial: int = 1,
    signer: Signer | None = None,
    deployment: str = "accord.test",
    matching_floors: MatchingFloors = DEFAULT_MATCHING_FLOORS,
    max_disclosure_delay_s: int = DEFAULT_MAX_DISCLOSURE_DELAY_S,
    max_start_skew_s: int = DEFAULT_MAX_START_SKEW_S,
) -> str:
    """A deployment manifest (signed note) for the log `log_vkey` and `witnesses`, signed by
    `signer` (a fresh key unless given)."""
    signer = signer or manifest_signer()
    manifest = build_manifest(
        deployment=deployment,
        serial=serial,
        log_vkey=log_vkey,
        witnesses=witnesses,
        witness_quorum=quorum,
        approver_genesis_set=approver_set,
        max_checkpoint_age_s=max_checkpoint_age_s,
        signers=[signer.vkey],
        matching_floors=matching_floors,
        max_disclosure_delay_s=max_disclosure_delay_s,
        max_start_skew_s=max_start_skew_s,
    )
    return sign_manifest(manifest, [signer])


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def problems(self) -> str:
        """Standard error without the line that insecure development mode prints on every
        command (for tests about how errors are reported)."""
        lines = self.stderr.splitlines(keepends=True)
        return "".join(line for line in lines if not line.startswith(INSECURE_DEV_WARNING))


class Cli:
    """The real `accord` command line, run in this process (click's CliRunner isolation): the
    same argument parsing, error mapping and exit codes as the installed command."""

    def __init__(self, home: Path, *, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = {"ACCORD_PASSPHRASE": PASS, **(env or {})}

    def setup_args(self, args: tuple[str, ...]) -> list[str]:
        """`args`, with `--insecure-dev` added to a command that sets up a device (account
        create, device link) when it names no manifest: most tests are not about the trust
        anchors, and a test about them passes `--manifest` (or ACCORD_MANIFEST)."""
        sets_up = args[:2] in (("account", "create"), ("device", "link"))
        named = {"--manifest", "--insecure-dev"} & set(args) or "ACCORD_MANIFEST" in self.env
        return [*args, "--insecure-dev"] if sets_up and not named else list(args)

    def run(self, *args: str, check: bool = True, input: str | None = None) -> CliResult:
        from click.testing import CliRunner

        from accord.cli.common import run_cli
        from accord.cli.main import cli

        runner = CliRunner()
        argv = ["--home", str(self.home), *self.setup_args(args)]
        with runner.isolation(input=input, env=self.env) as (out, err, _mixed):
            code = run_cli(cli, argv, obj={"kdf_cost": TEST_KDF_COST})
            sys.stdout.flush()
            sys.stderr.flush()
            result = CliResult(
                code,
                out.getvalue().decode("utf-8", "replace"),
                err.getvalue().decode("utf-8", "replace"),
            )
        if check and result.returncode != 0:
            raise AssertionError(f"accord {' '.join(args)} exited {code}: {result.stderr.strip()}")
        return result


class ProcessCli(Cli):
    """`python -m accord` in a child process: for tests of the process boundary itself
    (signals, exit codes of the real binary, what reaches a terminal)."""

    def run(self, *args: str, check: bool = True, input: str | None = None) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "accord", "--home", str(self.home), *self.setup_args(args)],
            capture_output=True,
            text=True,
            input=input,
            env={**os.environ, **self.env},
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"accord {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)


# Runs the real entry point, then prints every module it loaded (at exit, after click's own).
_MODULES_PROBE = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))\n"
    "sys.argv[0] = 'accord'\n"
    "from accord.cli.main import main\n"
    "main()\n"
)


def modules_loaded(args: Sequence[str], env: dict[str, str] | None = None) -> tuple[str, set[str]]:
    """Run `accord ARGS` in a child process: its standard output and every module it loaded."""
    result = subprocess.run(
        [sys.executable, "-c", _MODULES_PROBE, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout, set(json.loads(result.stderr.strip().splitlines()[-1]))


def within(modules: set[str], packages: Sequence[str]) -> list[str]:
    """The modules that are `packages` or inside them, sorted."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
"""Any JSON value (for fuzzing parsers of outside data)."""


class server_database:
    """The database of a `start_server` process, opened beside it as its operator would (to
    look at what it stored, or to change it behind its back): `with server_database(p) as
    engine`."""

    def __init__(self, server: Any) -> None:
        from accord.storage.db import make_engine, sqlite_url

        self.engine = make_engine(server.db_url or sqlite_url(server.data_dir))

    def __enter__(self) -> Any:
        return self.engine

    def __exit__(self, *_exc: object) -> None:
        self.engine.dispose()


SENDER_BACKOFF_S = 0.05


class SendingThread(threading.Thread):
    """Sends numbered messages (`m1`, `m2`, ...) as fast as the server takes them, remembering
    which sends the server acknowledged; a refused or failed send is counted and, after a short
    backoff (a load generator's, not a wait for a result), the next is tried."""

    def __init__(self, client: Any, to: str) -> None:
        super().__init__(daemon=True)
        self.client, self.to = client, to
        self.acked: list[str] = []
        self.failed = 0
        self.stop = threading.Event()

    def run(self) -> None:
        from accord.errors import AccordError

        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                self.client.send(self.to, f"m{n}")
            except AccordError:
                self.failed += 1
                self.stop.wait(SENDER_BACKOFF_S)
                continue
            self.acked.append(f"m{n}")


def _port_open(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def start_witness(
    root: Path, key: Path, log_vkey: str, port: int, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`accord witness serve` on a loopback port (its key and state under ``root``), dating its
    cosignatures by the clock `env` names (a `TestClock.env`), answering once it listens."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "accord", "witness", "serve", "--key", str(key),
            "--log-vkey", log_vkey, "--port", str(port), "--state", str(root / "witness-state"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    try:
        eventually(lambda: proc.poll() is not None or _port_open(port), "the witness listening")
    except AssertionError:
        proc.kill()
        raise
    if proc.poll() is not None:
        raise AssertionError("the witness exited at start")
    return proc


def plant_threshold_event(engine: Any, account: str, at_ms: int) -> str:
    """A private-matching threshold event with one matched image, written to the server's
    database as the matching worker writes one (without its crossing in the log): for tests
    of what reviewers do with events, where the path from vouchers to an event is not the
    point (that path: tests/integration/test_private_matching.py)."""
    import base64
    import secrets

    from sqlalchemy import insert

    from accord.storage.schema import pm_event_images, pm_events

    event_id = "e_" + base64.urlsafe_b64encode(secrets.token_bytes(16)).decode().rstrip("=")
    with engine.begin() as conn:
        pk = conn.execute(
            insert(pm_events)
            .values(
                event_id=event_id,
                kind="threshold",
                status="open",
                matching_account="m_" + secrets.token_hex(8),
                account=account,
                device_id="DEVICE1",
                epoch=1,
                table_version=1,
                images=1,
                discarded=0,
                created_at=at_ms,
            )
            .returning(pm_events.c.id)
        ).scalar_one()
        conn.execute(
            insert(pm_event_images).values(
                event_pk=pk,
                idx=0,
                voucher_id=secrets.token_bytes(16),
                pdq=bytes(32),
                bank="standins",
                entry_id=7,
                label="stand-in",
                distance=3,
                derivative=bytes(64 * 64),
            )
        )
    return event_id
