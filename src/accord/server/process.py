"""Run `accord server` as a child process on a free loopback port (demo, tests, benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from accord.errors import ServiceError

START_TIMEOUT_S = 60.0
START_ATTEMPTS = 3


class _ExitedAtStart(Exception):
    """The child exited before answering (typically: its port was taken meanwhile)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    def __init__(
        self,
        data_dir: Path,
        *,
        db_url: str | None = None,
        port: int | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.db_url = db_url
        self._port_chosen = port is not None
        self.port = port or free_port()
        self.extra_args = extra_args or []
        if "--account-rate" not in self.extra_args:
            # On loopback every client shares one address: the per-address limit on new
            # accounts is off unless asked for.
            self.extra_args = ["--account-rate", "0", *self.extra_args]
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start the server and wait until it answers; starting a running server is a no-op.

        A port this object picked may be taken by someone else before the child binds it: then
        the child exits at once, and the start is tried again on a fresh port (never once the
        server has run, so a restart keeps its address).
        """
        if self.proc is not None and self.proc.poll() is None:
            return self
        for attempt in range(START_ATTEMPTS):
            try:
                return self._start_once()
            except _ExitedAtStart:
                if self._port_chosen or attempt == START_ATTEMPTS - 1:
                    break
                self.port = free_port()
        raise ServiceError(f"server exited at start; see {self.log_path}")

    def _start_once(self) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable,
            "-m",
            "accord",
            "server",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            *self.extra_args,
        ]
        if self.db_url:
            args += ["--db", self.db_url]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise _ExitedAtStart()
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200:
                    self._port_chosen = True  # from now on this server's address is fixed
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ServiceError("server did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing; what was committed must survive."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def admin_token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()
