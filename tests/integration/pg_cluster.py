"""A private PostgreSQL cluster in a temporary directory, on a free port, for tests that stop or
restart the database (the machine's shared cluster is never touched).

Needs the server binaries (`initdb`, `pg_ctl`); as root, the cluster runs as the `postgres` user,
since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from accord.server.process import free_port

START_TIMEOUT_S = 60


def pg_bin_dir() -> Path | None:
    """Where initdb and pg_ctl live: on PATH, or Debian's /usr/lib/postgresql/N/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


class PrivateCluster:
    """Lives in a directory of its own under the system's temporary directory (pytest's are
    private to root, and the cluster may run as another user); `remove()` deletes it."""

    def __init__(self) -> None:
        bin_dir = pg_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="accord-pg-"))
        root = self.root
        self.data = root / "pgdata"
        self.port = free_port()
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            pw = pwd.getpwnam(self._user)
            root.mkdir(parents=True, exist_ok=True)
            os.chown(root, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=START_TIMEOUT_S, cwd="/")
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> PrivateCluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        return self

    def _options(self) -> str:
        return f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"

    def start(self) -> None:
        self._pg_ctl("start")

    def restart(self) -> None:
        self._pg_ctl("restart", "-m", "fast")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def _pg_ctl(self, action: str, *extra: str) -> None:
        # The log file keeps the server's output off our pipes (else the call never returns).
        log = str(self.root / "log")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", self._options(), *extra, action
        )

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        import psycopg

        admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
