"""Shared fixtures: real server processes on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("ACCORD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_HOW_TO = (
    "PostgreSQL is not reachable at {url}; start one (trust auth, user postgres, database test) "
    "or point ACCORD_TEST_PG_URL at it to run the PostgreSQL tests"
)


def shared_dir() -> Path:
    """The project's shared data (test images, vectors): ../shared beside the repository."""
    return Path(os.environ.get("ACCORD_SHARED_DIR", REPO.parent / "shared"))


def _pg_available() -> str | None:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # any failure means: not reachable here
        return f"{type(exc).__name__}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for this test session."""
    problem = _pg_available()
    if problem is not None:
        message = PG_HOW_TO.format(url=PG_ADMIN_URL) + f" ({problem})"
        if os.environ.get("ACCORD_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    import psycopg

    name = f"accord_test_{secrets.token_hex(6)}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url(pg_database: str) -> Iterator[str]:
    """An empty database per test (a new one each time, dropped afterwards)."""
    import psycopg

    name = f"accord_t_{secrets.token_hex(6)}"
    admin = pg_database
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """Run a test once on embedded SQLite (None) and once on PostgreSQL."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("fresh_pg_url"))


@pytest.fixture
def server(tmp_path: Path, db_url: str | None) -> Iterator[object]:
    from accord.server.process import ServerProcess

    proc = ServerProcess(tmp_path / "server", db_url=db_url)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class Cli:
    """Runs the real `accord` command line in a subprocess."""

    def __init__(self, home: Path, passphrase: str = "test passphrase") -> None:
        self.home = home
        self.env = {**os.environ, "ACCORD_PASSPHRASE": passphrase}

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "accord", "--home", str(self.home), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=300,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"accord {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
            )
        return proc


@pytest.fixture
def cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    def make(name: str) -> Cli:
        return Cli(tmp_path / f"home-{name}")

    return make
