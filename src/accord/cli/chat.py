"""`accord chat`: the chat app in this terminal, or served to a browser on loopback."""

from __future__ import annotations

import ipaddress
import os
import shlex
import sys

import click

from accord.cli.common import home_dir
from accord.cli.messaging import open_client, passphrase
from accord.errors import InvalidInput

LOOPBACK_NAMES = {"localhost"}


def _loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("chat")
@click.option("--to", "to", default=None, help="Open the direct conversation with NAME.")
@click.option("--group", "group", default=None, help="Open the conversation of group NAME.")
@click.option("--web", is_flag=True, help="Serve the app to a browser instead (loopback only).")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --web: address.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.pass_context
def chat(
    ctx: click.Context, to: str | None, group: str | None, web: bool, host: str, port: int
) -> None:
    """Chat: conversations, live messages, groups, attachments, devices and safety notices."""
    if to and group:
        raise InvalidInput("give --to or --group, not both")
    if web:
        _serve(ctx, to, group, host, port)
        return
    from accord.chat.app import ChatApp

    client = open_client(ctx)  # the app closes it
    ChatApp(client, to=to, group=group).run()


def _serve(ctx: click.Context, to: str | None, group: str | None, host: str, port: int) -> None:
    """textual-serve runs `accord chat` anew for each browser tab. The app is unlocked, so it is
    served only on a loopback address, to this machine's own browser."""
    if not _loopback(host):
        raise InvalidInput("the browser chat is served on a loopback address only")
    from textual_serve.server import Server

    os.environ["ACCORD_PASSPHRASE"] = passphrase()  # asked once here, inherited by each tab
    command = [sys.executable, "-m", "accord", "--home", str(home_dir(ctx)), "chat"]
    if to:
        command += ["--to", to]
    if group:
        command += ["--group", group]
    click.echo(f"chat served at http://{host}:{port} (Ctrl-C stops it)")
    Server(shlex.join(command), host=host, port=port, title="Accord").serve()
