"""Shared fixtures: real server processes on SQLite and on PostgreSQL, the command line run in
this process, and clocks that tests move instead of sleeping.

Cost rules: one server per module and database kind, accounts named uniquely per test
(`unique`); the command line runs in-process through click's `CliRunner` except where a test is
about the process boundary (`accord_testing.ProcessCli`); clients made here use a low Argon2id
cost (`accord_testing.TEST_KDF_COST`), which only an in-process caller can choose.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from accord_testing import PASS, TEST_KDF_COST, Cli, TestClock, start_server

# Property tests wait on no clock (a loaded machine must not fail them: Hypothesis' default
# 200 ms deadline is a wall-clock check) and draw the same examples on every run, so a failure
# in CI is one anyone can reproduce; `HYPOTHESIS_PROFILE=explore` draws fresh ones.
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.register_profile("explore", deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
    import psycopg

    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return None
    except psycopg.Error as exc:
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
    with _new_pg_database(PG_ADMIN_URL, "accord_test") as url:
        yield url


class _new_pg_database:
    """CREATE DATABASE on enter, DROP ... WITH (FORCE) on exit."""

    def __init__(self, admin_url: str, prefix: str) -> None:
        self.admin_url = admin_url
        self.name = f"{prefix}_{secrets.token_hex(6)}"

    def __enter__(self) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return f"{self.admin_url.rsplit('/', 1)[0]}/{self.name}"

    def __exit__(self, *_exc: object) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@pytest.fixture
def fresh_pg_url(pg_database: str) -> Iterator[str]:
    """An empty database per test (a new one each time, dropped afterwards)."""
    with _new_pg_database(pg_database, "accord_t") as url:
        yield url


@pytest.fixture(scope="module")
def module_pg_url(pg_database: str) -> Iterator[str]:
    """An empty database per test module."""
    with _new_pg_database(pg_database, "accord_m") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """Run a test once on embedded SQLite (None) and once on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        return None
    return str(request.getfixturevalue("fresh_pg_url"))


# --- clocks ---------------------------------------------------------------------------------


@pytest.fixture
def clock(tmp_path: Path) -> TestClock:
    return TestClock(tmp_path / "clock-offset")


@pytest.fixture(scope="module")
def module_clock(tmp_path_factory: pytest.TempPathFactory) -> TestClock:
    return TestClock(tmp_path_factory.mktemp("clock") / "clock-offset")


# --- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_clock: TestClock,
) -> Iterator[Any]:
    """One real server process per test module and database kind (accounts: `unique`).

    A module's `SERVER_ENV` (a dict) adds to the server's environment: a module about
    housekeeping sets `ACCORD_HOUSEKEEPING_INTERVAL` low, so that what its moved clock made due
    is done within a fraction of a second rather than the default five."""
    db = None if request.param == "sqlite" else str(request.getfixturevalue("module_pg_url"))
    proc = start_server(
        tmp_path_factory.mktemp(f"server-{request.param}"),
        clock=module_clock,
        db_url=db,
        env=getattr(request.module, "SERVER_ENV", None),
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def sqlite_server(
    tmp_path_factory: pytest.TempPathFactory, module_clock: TestClock
) -> Iterator[Any]:
    """One server on SQLite for checks made by the client, where the database kind is moot."""
    proc = start_server(tmp_path_factory.mktemp("server-sqlite"), clock=module_clock)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Account names unique to this test, so that tests can share one server."""
    tag = secrets.token_hex(3)
    return lambda base: f"{base}-{tag}"


@pytest.fixture
def pair(server: Any, tmp_path: Path, unique: Callable[[str], str]) -> Iterator[tuple[Any, Any]]:
    """Two new accounts on the module's `server`: alice and bob (`AccordClient`s)."""
    from accord.client.client import AccordClient

    alice = AccordClient.create_account(
        tmp_path / "a", server.url, unique("alice"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    bob = AccordClient.create_account(
        tmp_path / "b", server.url, unique("bob"), PASS, kdf_cost=TEST_KDF_COST, insecure_dev=True
    )
    yield alice, bob
    alice.close()
    bob.close()


# --- the command line ---------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, module_clock: TestClock) -> Callable[[str], Cli]:
    """`cli("alice")`: a command line with its own home, on the module's clock."""

    def make(name: str) -> Cli:
        return Cli(tmp_path / f"home-{name}", env=module_clock.env)

    return make
