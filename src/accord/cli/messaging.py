"""CLI commands for accounts, devices, messages and groups."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

import click

from accord.cli.common import home_dir, kdf_cost, server_option
from accord.cli.manifest import manifest_option, manifest_setting
from accord.cli.output import write_lines
from accord.cli.terminal import json_line, printable
from accord.client.client import ACCOUNT_NAME_RE, AccordClient
from accord.client.history import StoredMessage
from accord.client.key_agent import DEFAULT_IDLE_TIMEOUT_S, agent_store_key
from accord.client.log_trust import INSECURE_DEV_WARNING
from accord.client.received import ReceiveResult
from accord.errors import InvalidInput
from accord.wire.messaging import MAX_TEXT_CHARS

AGENT_ENV = "ACCORD_AGENT"
"""Set to 1: a command that had to ask for the passphrase starts the agent for its home (the
`accord agent` module is imported only then)."""


def passphrase(*, confirm: bool = False) -> str:
    """ACCORD_PASSPHRASE for scripts; otherwise ask on the terminal."""
    value = os.environ.get("ACCORD_PASSPHRASE")
    if value:
        return value
    if not sys.stdin.isatty():
        raise InvalidInput("set ACCORD_PASSPHRASE or run from a terminal to enter a passphrase")
    return str(click.prompt("Passphrase", hide_input=True, confirmation_prompt=confirm))


def open_client(ctx: click.Context) -> AccordClient:
    """The home's client; in insecure development mode every command says so on stderr.

    The store is unlocked with the key the home's agent holds if one runs (`accord agent`),
    else with the passphrase; with ACCORD_AGENT=1 a command that asked for the passphrase
    then starts the agent."""
    home = home_dir(ctx)
    client = _client_from_agent(home)
    if client is None:
        client = AccordClient(home, passphrase())
        if os.environ.get(AGENT_ENV) == "1":
            _start_agent_for(client)
    try:
        insecure = client.insecure_dev
    except BaseException:
        client.close()
        raise
    if insecure:
        click.echo(INSECURE_DEV_WARNING, err=True)
    return client


def _client_from_agent(home: Path) -> AccordClient | None:
    """The client unlocked with the agent's key; None without an agent, or if its key does not
    open this store (the home was made again since)."""
    key = agent_store_key(home)
    if key is None:
        return None
    try:
        return AccordClient(home, key)
    except InvalidInput as exc:
        if exc.code == "wrong_passphrase":
            return None
        raise


def _start_agent_for(client: AccordClient) -> None:
    from accord.cli.agent import start_agent

    key = client.store.store_key
    if key is not None:
        try:
            start_agent(client.home, key, DEFAULT_IDLE_TIMEOUT_S)
        except BaseException:
            client.close()
            raise


def _approver_set(insecure_dev: bool) -> str | None:
    """ACCORD_APPROVER_SET (a set hash), in insecure development mode only: with a manifest,
    the approver set is the manifest's."""
    configured = os.environ.get("ACCORD_APPROVER_SET") or None
    return configured if insecure_dev else None


def _split_names(value: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise InvalidInput("give at least one name")
    return names


@click.group()
def account() -> None:
    """Create and inspect your account."""


@account.command("create")
@click.argument("name")
@server_option
@manifest_option
@click.option(
    "--registration-token",
    envvar="ACCORD_REGISTRATION_TOKEN",
    default=None,
    help="The token a closed deployment requires of new accounts.",
)
@click.pass_context
def account_create(
    ctx: click.Context,
    name: str,
    server: str,
    manifest_path: Path | None,
    insecure_dev: bool,
    registration_token: str | None,
) -> None:
    """Create account NAME with this device as its first device.

    An interrupted creation (Ctrl-C, a kill, a lost answer) is finished by running the same
    command again with the same home."""
    home = home_dir(ctx)
    with AccordClient.create_account(
        home,
        server,
        name,
        passphrase(confirm=True),
        manifest=manifest_setting(manifest_path, insecure_dev),
        insecure_dev=insecure_dev,
        approver_set=_approver_set(insecure_dev),
        kdf_cost=kdf_cost(ctx),
        registration_token=registration_token or None,
    ) as client:
        if insecure_dev:
            click.echo(INSECURE_DEV_WARNING, err=True)
        click.echo(f"account {client.account_name} created; this device is {client.device_id}")


@account.command("devices")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def account_devices(ctx: click.Context, as_json: bool) -> None:
    """List this account's devices (verified)."""
    with open_client(ctx) as client:
        devices, notices = client.devices()
        for notice in notices:
            click.echo(f"warning: {notice}", err=True)
        for d in devices:
            row = {
                "device_id": d.device_id,
                "ed25519": d.ed25519,
                "this": d.device_id == client.device_id,
            }
            click.echo(
                json.dumps(row)
                if as_json
                else f"{d.device_id}  {d.ed25519}" + ("  (this device)" if row["this"] else "")
            )


@click.group()
def contact() -> None:
    """Contacts' keys: the safety code to compare in person, and verification."""


@contact.command("verify")
@click.argument("name")
@click.option(
    "--confirm",
    is_flag=True,
    help="Mark NAME verified: you compared the code with NAME in person and it matched.",
)
@click.pass_context
def contact_verify(ctx: click.Context, name: str, confirm: bool) -> None:
    """Show the safety code shared with NAME (it changes when either account's devices do).

    A verified contact whose devices change is not sent to until verified again.
    """
    if not ACCOUNT_NAME_RE.match(name):
        raise InvalidInput("not an account name")
    with open_client(ctx) as client:
        code, verified = client.verify_contact(name, confirm=confirm)
        click.echo(f"safety code with {name}: {code}")
        if verified:
            click.echo(f"{name} is verified")
        else:
            click.echo(
                f"not verified: compare this code with {name} in person, then run "
                f"`accord contact verify {name} --confirm`"
            )


@click.group()
def device() -> None:
    """Link a new device to an account."""


@device.command("remove")
@click.argument("device_id")
@click.pass_context
def device_remove(ctx: click.Context, device_id: str) -> None:
    """Remove DEVICE_ID (a lost phone, say) from your account; it can be this device.

    The removal is signed here and logged; the account's other devices and your contacts see
    the smaller set. An account keeps at least one device.
    """
    with open_client(ctx) as client:
        client.remove_device(device_id)
        click.echo(f"device {device_id} removed from {client.account_name}")


@device.command("link")
@click.argument("name")
@server_option
@manifest_option
@click.pass_context
def device_link(
    ctx: click.Context, name: str, server: str, manifest_path: Path | None, insecure_dev: bool
) -> None:
    """On a new device: ask to join account NAME; prints a one-time code."""
    client, code = AccordClient.start_link(
        home_dir(ctx),
        server,
        name,
        passphrase(confirm=True),
        manifest=manifest_setting(manifest_path, insecure_dev),
        insecure_dev=insecure_dev,
        approver_set=_approver_set(insecure_dev),
        kdf_cost=kdf_cost(ctx),
    )
    with client:
        if insecure_dev:
            click.echo(INSECURE_DEV_WARNING, err=True)
        click.echo(code)


@device.command("approve")
@click.argument("code")
@click.pass_context
def device_approve(ctx: click.Context, code: str) -> None:
    """On an existing device: admit the device that printed CODE."""
    with open_client(ctx) as client:
        keys = client.approve_device(code)
        click.echo(f"device {keys.device_id} approved for {keys.account}")


@click.command()
@click.argument("args", nargs=-1, required=True)
@click.option("--group", "group", default=None, help="Send to a group instead of an account.")
@click.option("--attach", "attach", multiple=True, type=click.Path(dir_okay=False))
@click.pass_context
def send(
    ctx: click.Context, args: tuple[str, ...], group: str | None, attach: tuple[str, ...]
) -> None:
    """send NAME TEXT, or send --group GROUP TEXT. Prints the message id.

    TEXT "-" reads the message from standard input (one final line break dropped).
    """
    if group is None:
        if len(args) != 2:
            raise InvalidInput("usage: accord send NAME TEXT [--attach FILE]...")
        to, text = args
    else:
        if len(args) != 1:
            raise InvalidInput("usage: accord send --group GROUP TEXT [--attach FILE]...")
        (text,) = args
    if text == "-":
        text = _text_from_stdin()
    files = [Path(a) for a in attach]
    with open_client(ctx) as client:
        if group is None:
            message_id = client.send(to, text, files)
        else:
            message_id = client.send_group(group, text, files)
    click.echo(message_id)


def _text_from_stdin() -> str:
    """The message on standard input, up to the longest a message may be."""
    raw = sys.stdin.read(MAX_TEXT_CHARS + 3)  # room for a final CR LF, and one more to tell
    text = raw.removesuffix("\n").removesuffix("\r")
    if len(raw) > MAX_TEXT_CHARS + 2 or len(text) > MAX_TEXT_CHARS:
        raise InvalidInput(f"a message has at most {MAX_TEXT_CHARS} characters")
    return text


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@click.option(
    "--follow",
    is_flag=True,
    help="Keep the connection open and print messages as they arrive, until Ctrl-C or "
    "SIGTERM (it reconnects by itself after a server restart).",
)
@click.pass_context
def receive(ctx: click.Context, as_json: bool, follow: bool) -> None:
    """Fetch, verify, decrypt, store and print new messages."""
    with open_client(ctx) as client:
        if follow:
            _follow(client, as_json)
            return
        _show(client, client.receive(), as_json)


def _show(client: AccordClient, result: ReceiveResult, as_json: bool) -> None:
    for notice in result.notices:
        click.echo(f"warning: {printable(notice)}", err=True)
    for reason in result.rejected:
        click.echo(f"warning: {printable(reason)}", err=True)
    # Messages stored but not shown (this run's, and any an earlier run could not print): each
    # is marked shown only once its lines are out, so a closed pipe or Ctrl-C leaves the rest
    # for the next `receive`.
    for stored in client.unshown_messages():
        m = stored.message
        if as_json:  # for a program, every control character escaped (`json_line`)
            write_lines([json_line(m.to_json())])
        else:
            write_lines(_message_lines(stored))
        client.mark_shown(stored)


def _follow(client: AccordClient, as_json: bool) -> None:
    """`receive --follow`: each frame is shown before it is acknowledged (`AccordClient.follow`).

    SIGTERM and the first Ctrl-C ask it to stop between frames, so a message is never left
    printed but unmarked (shown again by the next `receive`) or marked but unacknowledged; a
    second Ctrl-C interrupts at once. Either way it exits 0.
    """
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT and stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for result in client.follow(stop):
            _show(client, result, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@click.command()
@click.argument("name", required=False)
@click.option("--group", "group", default=None, help="A group's conversation instead.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the last N.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per message.")
@click.pass_context
def history(
    ctx: click.Context, name: str | None, group: str | None, limit: int | None, as_json: bool
) -> None:
    """Print the stored conversation with NAME, or in --group (every message if neither)."""
    if name is not None and group is not None:
        raise InvalidInput("give NAME or --group, not both")
    with open_client(ctx) as client:
        messages = client.history(name=name, group=group, limit=limit)
    for stored in messages:
        if as_json:
            click.echo(json_line(stored.to_json()))
        else:
            for line in _message_lines(stored):
                click.echo(line)


def _message_lines(stored: StoredMessage) -> list[str]:
    """A message as a person reads it: one line, then one per attachment."""
    m = stored.message
    where = f" in {m.group}" if m.group else ""
    if stored.outgoing and m.group is None and m.to is not None:
        where = f" to {m.to}"
    lines = [
        f"[{m.to_json()['sent_at']}] {printable(m.sender)}{printable(where)}: {printable(m.text)}"
    ]
    for a in m.attachments:
        name = printable(a.name)
        target = f" -> {printable(a.path)}" if a.path else ""
        lines.append(f"    attachment {name} ({a.size} bytes){target}")
    return lines


@click.group()
def group() -> None:
    """Create groups and change their members."""


@group.command("create")
@click.argument("name")
@click.option("--members", required=True, help="Comma-separated account names.")
@click.pass_context
def group_create(ctx: click.Context, name: str, members: str) -> None:
    with open_client(ctx) as client:
        state = client.create_group(name, _split_names(members))
    click.echo(f"group {state.group} created with {', '.join(state.members)}")


@group.command("add")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@click.pass_context
def group_add(ctx: click.Context, name: str, members: tuple[str, ...]) -> None:
    with open_client(ctx) as client:
        state = client.change_members(name, add=members)
    click.echo(f"group {state.group} version {state.version}: {', '.join(state.members)}")


@group.command("remove")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@click.pass_context
def group_remove(ctx: click.Context, name: str, members: tuple[str, ...]) -> None:
    with open_client(ctx) as client:
        state = client.change_members(name, remove=members)
    click.echo(f"group {state.group} version {state.version}: {', '.join(state.members)}")
