"""Configuration: a client home's config.toml names the server (flag > ACCORD_SERVER > file);
`accord server --config FILE` with ACCORD_* variables over it; bad settings stop with exit 2 and
one line; a bank database made by `accord bank` before the server's first start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from accord_testing import Cli, TestClock, start_server

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


def test_home_config_names_the_server(
    sqlite_server: Any, cli: Callable[[str], Cli], unique: Callable[[str], str]
) -> None:
    def home_naming(name: str, server: str) -> Cli:
        person = cli(name)
        person.home.mkdir(parents=True)
        (person.home / "config.toml").write_text(f'server = "{server}"\n')
        return person

    # No --server, no ACCORD_SERVER: the file's.
    home_naming("alice", sqlite_server.url).run("account", "create", unique("alice"))
    # ACCORD_SERVER beats the file.
    bob = home_naming("bob", UNREACHABLE)
    bob.env["ACCORD_SERVER"] = sqlite_server.url
    bob.run("account", "create", unique("bob"))
    # The flag beats both.
    carol = home_naming("carol", UNREACHABLE)
    carol.env["ACCORD_SERVER"] = UNREACHABLE
    carol.run("account", "create", unique("carol"), "--server", sqlite_server.url)


def test_bad_home_config_is_one_line(cli: Callable[[str], Cli]) -> None:
    bob = cli("bob")
    bob.home.mkdir(parents=True)
    (bob.home / "config.toml").write_text('sever = "http://x"\n')
    result = bob.run("account", "create", "bob", check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown setting 'sever'" in result.stderr


def test_bad_server_settings_exit_2_naming_the_setting(
    tmp_path: Path, cli: Callable[[str], Cli]
) -> None:
    config = tmp_path / "server.toml"
    config.write_text("max_queue = -5\n")
    op = cli("operator")
    result = op.run("server", "--config", str(config), "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == result.stderr.strip().splitlines()[0]
    assert "bad setting max_queue (--max-queue, ACCORD_MAX_QUEUE)" in result.stderr
    op.env["ACCORD_PORT"] = "not-a-port"
    result = op.run("server", "--data-dir", str(tmp_path), check=False)
    assert result.returncode == 2 and "bad setting port" in result.stderr


def test_bank_created_before_the_servers_first_start_on_postgres(
    fresh_pg_url: str, tmp_path: Path, module_clock: TestClock, cli: Callable[[str], Cli]
) -> None:
    """Regression: the bank store made its tables beside the migrations, so a bank database
    made by `accord bank create --db` crashed the server's first start (DuplicateTable).

    The same server (one start) reads a configuration file under an ACCORD_* variable."""
    op = cli("bank-operator")
    op.run("bank", "create", "early", "--db", fresh_pg_url)
    op.run("bank", "import", "early", str(_csv(tmp_path)), "--db", fresh_pg_url)
    config = tmp_path / "server.toml"
    config.write_text('log_origin = "file.example/log"\nmax_queue = 3\n')
    proc = start_server(
        tmp_path / "data",
        clock=module_clock,
        db_url=fresh_pg_url,
        extra_args=["--config", str(config)],
        env={"ACCORD_LOG_ORIGIN": "env.example/log"},
    )
    try:
        listed = op.run("bank", "list", "--server", proc.url, "--admin-token", proc.admin_token())
        assert "early" in listed.stdout
        checkpoint = httpx.get(f"{proc.url}/v1/log/checkpoint").text
        assert checkpoint.splitlines()[0] == "env.example/log"
    finally:
        proc.stop()
    # And the other way round: the server's database is one `accord bank` opens as it is.
    assert "early" in op.run("bank", "list", "--db", fresh_pg_url).stdout


def _csv(tmp_path: Path) -> Path:
    path = tmp_path / "list.csv"
    path.write_text("type,hash,label\nmd5," + "ab" * 16 + ",L\nvideo_sha256," + "cd" * 32 + ",V\n")
    return path


# The client with the server's packages (and Accord's server side) unimportable, as in a base
# install: a meta-path finder refuses them in a child process, which then runs the real command
# line. Cheaper than a new virtual environment; `docs/deployment.md` ("Installing") gives what a
# real base install weighs and how it was checked.
BASE_INSTALL = """
import importlib.abc, json, sys

BLOCKED = (
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "redis", "jinja2",
    "prometheus_client", "pydantic_settings", "cv2", "matplotlib", "threatexchange", "numba",
    "accord.server", "accord.storage", "accord.console",
)

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())

from accord.cli.common import run_cli
from accord.cli.main import cli
from accord.primitives.storage_crypto import KdfCost

cost = KdfCost(time_cost=1, memory_kib=1024, parallelism=1)
codes = [run_cli(cli, args, obj={"kdf_cost": cost}) for args in json.loads(sys.argv[1])]
loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
print(json.dumps({"codes": codes, "loaded": loaded}))
"""


def test_client_runs_without_the_server_packages(
    sqlite_server: Any, tmp_path: Path, module_clock: TestClock, unique: Callable[[str], str]
) -> None:
    import json
    import subprocess
    import sys

    home = str(tmp_path / "home")
    commands = [
        ["--version"],
        [
            "--home",
            home,
            "account",
            "create",
            unique("base"),
            "--server",
            sqlite_server.url,
            "--insecure-dev",
        ],
        ["--home", home, "receive"],
        ["--home", home, "bank", "list"],
        ["server", "--port", "1"],
    ]
    child = subprocess.run(
        [sys.executable, "-c", BASE_INSTALL, json.dumps(commands)],
        capture_output=True,
        text=True,
        env={**module_clock.env, "ACCORD_PASSPHRASE": "test passphrase", "PATH": "/usr/bin"},
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    result = json.loads(child.stdout.splitlines()[-1])
    assert result == {"codes": [0, 0, 0, 2, 2], "loaded": []}, child.stderr
    refusals = [line for line in child.stderr.splitlines() if "extra" in line]
    assert refusals == [
        "missing_extra: this command needs the 'server' extra (missing sqlalchemy, alembic, cv2): "
        "pip install 'accord[server]'",
        "missing_extra: this command needs the 'server' extra (missing fastapi, uvicorn, "
        "sqlalchemy, alembic, "
        "jinja2, cv2): pip install 'accord[server]'",
    ]
