"""`accord server`: its options and defaults (the server's own modules load only when it runs)."""

from __future__ import annotations

from pathlib import Path

import click

from accord.server.limits import (
    DEFAULT_ACCOUNT_BURST,
    DEFAULT_ACCOUNT_RATE_PER_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SEND_BURST,
    DEFAULT_SEND_RATE_PER_S,
)
from accord.server.notify import DEFAULT_SOCKET_POLL_S
from accord.server.translog import DEFAULT_CHECKPOINT_REFRESH_S


@click.command()
@click.option(
    "--db", "db_url", default=None, help="postgresql://... (default: SQLite in --data-dir)"
)
@click.option("--data-dir", type=click.Path(file_okay=False), default="./accord-data")
@click.option("--host", default="127.0.0.1")
@click.option("--port", type=int, default=8000)
@click.option("--max-attachment-bytes", type=int, default=None)
@click.option(
    "--witness", "witnesses", multiple=True, help="Witness base URL; every checkpoint goes to each."
)
@click.option(
    "--log-origin",
    envvar="ACCORD_LOG_ORIGIN",
    default="accord.local/log",
    show_default=True,
    help="The transparency log's origin (name it after your deployment, e.g. "
    "chat.example.org/log: witnesses shared with other logs tell them apart by it). Fixed "
    "once the log key exists.",
)
@click.option(
    "--checkpoint-refresh",
    "checkpoint_refresh_s",
    type=click.FloatRange(min=1),
    default=DEFAULT_CHECKPOINT_REFRESH_S,
    show_default=True,
    help="Seconds after which an unchanged log checkpoint is sent to the witnesses again, so "
    "that clients find it fresh (keep it well under the manifest's maximum checkpoint age).",
)
@click.option(
    "--redis",
    "redis_url",
    default=None,
    envvar="ACCORD_REDIS_URL",
    help="redis://... shared by several server processes (wake-ups, rate limits).",
)
@click.option(
    "--send-rate",
    type=click.FloatRange(min=0),
    default=DEFAULT_SEND_RATE_PER_S,
    show_default=True,
    help="Messages per second an account may send, sustained (0: no limit).",
)
@click.option(
    "--send-burst", type=click.IntRange(min=1), default=DEFAULT_SEND_BURST, show_default=True
)
@click.option(
    "--max-queue",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_QUEUE,
    show_default=True,
    help="Undelivered messages a device may have before sends to it get 429 (0: no limit).",
)
@click.option(
    "--socket-poll",
    "socket_poll_s",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_SOCKET_POLL_S,
    show_default=True,
    help="With --redis: seconds between a socket's own looks at its queue (if a wake-up is lost).",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option(
    "--account-rate",
    type=click.FloatRange(min=0),
    default=DEFAULT_ACCOUNT_RATE_PER_S,
    show_default=True,
    help="New accounts and device link requests per second from one address, sustained "
    "(0: no limit).",
)
@click.option(
    "--account-burst", type=click.IntRange(min=1), default=DEFAULT_ACCOUNT_BURST, show_default=True
)
@click.option(
    "--registration-token-file",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="ACCORD_REGISTRATION_TOKEN_FILE",
    help="A closed deployment: account creation requires the token in this file.",
)
@click.option(
    "--secrets-key-file",
    type=click.Path(dir_okay=False),
    default=None,
    envvar="ACCORD_SECRETS_KEY_FILE",
    help="The key sealing the secrets kept in the database (default: DATA_DIR/secrets.key; "
    "created on first start). Keep it off the database host.",
)
def server(
    db_url: str | None,
    data_dir: str,
    host: str,
    port: int,
    max_attachment_bytes: int | None,
    witnesses: tuple[str, ...],
    log_origin: str,
    checkpoint_refresh_s: float,
    redis_url: str | None,
    send_rate: float,
    send_burst: int,
    max_queue: int,
    socket_poll_s: float,
    log_format: str,
    account_rate: float,
    account_burst: int,
    registration_token_file: str | None,
    secrets_key_file: str | None,
) -> None:
    """Run the Accord server."""
    from accord.console import mount_console
    from accord.server.run import serve

    serve(
        data_dir=Path(data_dir),
        db_url=db_url,
        host=host,
        port=port,
        max_attachment_bytes=max_attachment_bytes,
        witnesses=list(witnesses),
        log_origin=log_origin,
        checkpoint_refresh_s=checkpoint_refresh_s,
        redis_url=redis_url,
        send_rate_per_s=send_rate,
        send_burst=send_burst,
        max_queue=max_queue,
        socket_poll_s=socket_poll_s,
        log_format=log_format,
        account_rate_per_s=account_rate,
        account_burst=account_burst,
        registration_token_file=Path(registration_token_file) if registration_token_file else None,
        secrets_key_file=Path(secrets_key_file) if secrets_key_file else None,
        mounts=[mount_console],
    )
