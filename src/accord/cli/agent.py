"""`accord agent`: the store-key agent, so that commands run without the passphrase's Argon2id
(docs/key-agent.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from accord.cli.common import home_dir
from accord.client.key_agent import (
    DEFAULT_IDLE_TIMEOUT_S,
    AgentRequest,
    KeyAgent,
    ask_agent,
    check_idle_timeout,
    make_undumpable,
    socket_path,
)
from accord.clock import clock_from_env
from accord.errors import ConfigurationError, InvalidInput
from accord.primitives.encoding import b64decode, b64encode
from accord.primitives.storage_crypto import ROOT_KEY_BYTES, StoreKey
from accord.protocols.access.timeparse import format_duration, parse_duration

START_TIMEOUT_S = 30.0
"""How long `agent start` waits for the new agent to say it listens."""
_READY = b"ready\n"


@click.group()
def agent() -> None:
    """Keep this home's store key unlocked for a while (opt-in, like ssh-agent)."""


@agent.command("start")
@click.option(
    "--timeout",
    "timeout",
    default=format_duration(DEFAULT_IDLE_TIMEOUT_S),
    show_default=True,
    help="Exit after this long without a command asking for the key (e.g. 90s, 15m, 8h).",
)
@click.pass_context
def agent_start(ctx: click.Context, timeout: str) -> None:
    """Ask for the passphrase once and hold the store key in memory for later commands.

    Anyone who can run programs as your user can take the key from it while it runs (as with
    ssh-agent); `accord agent stop` ends it, and so does the timeout.
    """
    from accord.cli.messaging import passphrase
    from accord.client.store import LocalStore

    home = home_dir(ctx)
    idle_timeout_s = check_idle_timeout(parse_duration(timeout))
    running = ask_agent(home, AgentRequest.STATUS)
    if running is not None and running.ok:
        click.echo(f"an agent already holds the key of {home}; `accord agent stop` ends it")
        return
    store = LocalStore(home)
    try:
        store.unlock(passphrase())
        key = store.store_key
    finally:
        store.close()
    assert key is not None  # noqa: S101 - set by a successful unlock
    start_agent(home, key, idle_timeout_s)
    click.echo(f"agent started for {home}; it exits after {format_duration(idle_timeout_s)} unused")


def start_agent(home: Path, key: StoreKey, idle_timeout_s: int) -> None:
    """Start the agent process for `home`, handing it `key` on a pipe (never on disk or in
    its arguments or environment), and wait until it listens."""
    env = {k: v for k, v in os.environ.items() if k != "ACCORD_PASSPHRASE"}
    proc = subprocess.Popen(  # noqa: S603 - this very program, no shell
        [
            sys.executable,
            "-m",
            "accord",
            "--home",
            os.fspath(home.absolute()),
            "agent",
            "run",
            "--timeout-s",
            str(idle_timeout_s),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,  # not stopped by the terminal's Ctrl-C or hang-up
        close_fds=True,
    )
    assert proc.stdin is not None and proc.stdout is not None  # noqa: S101 - PIPE above
    try:
        proc.stdin.write(b64encode(key.value).encode("ascii") + b"\n")
        proc.stdin.close()
        ready = proc.stdout.readline()
    finally:
        proc.stdout.close()
    if ready != _READY:
        try:
            proc.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
        raise ConfigurationError(f"the agent for {home} did not start")


@agent.command("run", hidden=True)
@click.option("--timeout-s", "timeout_s", type=int, required=True)
@click.pass_context
def agent_run(ctx: click.Context, timeout_s: int) -> None:
    """The agent process itself (started by `agent start`): the key arrives on stdin."""
    make_undumpable()
    line = sys.stdin.buffer.readline(64)
    try:
        key = StoreKey(b64decode(line.strip().decode("ascii"), max_bytes=ROOT_KEY_BYTES))
    except (InvalidInput, UnicodeDecodeError):
        raise InvalidInput("the agent expects the store key on standard input") from None
    server = KeyAgent(home_dir(ctx), key, idle_timeout_s=timeout_s, clock=clock_from_env())
    del key, line
    sys.stdout.buffer.write(_READY)
    sys.stdout.buffer.flush()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    server.serve()


@agent.command("stop")
@click.pass_context
def agent_stop(ctx: click.Context) -> None:
    """Stop this home's agent (the key is forgotten)."""
    home = home_dir(ctx)
    reply = ask_agent(home, AgentRequest.STOP)
    click.echo(f"agent for {home} stopped" if reply is not None else f"no agent for {home}")


@agent.command("status")
@click.pass_context
def agent_status(ctx: click.Context) -> None:
    """Say whether an agent holds this home's key, and for how long it waits unused."""
    home = home_dir(ctx)
    reply = ask_agent(home, AgentRequest.STATUS)
    if reply is None or not reply.ok or not reply.value.isdigit():
        click.echo(f"no agent for {home}")
        ctx.exit(1)
    click.echo(
        f"agent running for {home} ({socket_path(home)}); "
        f"exits after {format_duration(int(reply.value))} unused"
    )
