"""`ServerConfig`: how one server process is set up; and the operator token it creates."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accord.clock import Clock, clock_from_env
from accord.errors import ConfigurationError
from accord.server.housekeeping import HOUSEKEEPING_INTERVAL_S
from accord.server.limits import (
    DEFAULT_ACCOUNT_BURST,
    DEFAULT_ACCOUNT_RATE_PER_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SEND_BURST,
    DEFAULT_SEND_RATE_PER_S,
)
from accord.server.notify import DEFAULT_SOCKET_POLL_S
from accord.server.translog import DEFAULT_CHECKPOINT_REFRESH_S, DEFAULT_LOG_ORIGIN
from accord.storage.db import sqlite_url
from accord.wire.common import MAX_REQUEST_BYTES

DEFAULT_MAX_ATTACHMENT_BYTES = 100 * 1000 * 1000
ADMIN_TOKEN_FILE = "admin-token"  # noqa: S105 (a file name)
MAX_REGISTRATION_TOKEN_BYTES = 256
MIN_REGISTRATION_TOKEN_CHARS = 16


@dataclass
class ServerConfig:
    data_dir: Path
    db_url: str | None = None
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT_BYTES
    max_request_bytes: int = MAX_REQUEST_BYTES
    log_origin: str = DEFAULT_LOG_ORIGIN
    witnesses: list[str] = field(default_factory=list)
    # Seconds after which an unchanged checkpoint is sent to the witnesses again (V5).
    checkpoint_refresh_s: float = DEFAULT_CHECKPOINT_REFRESH_S
    # Scale-out and overload (docs/deployment.md): Redis for wake-ups and shared rate limits
    # across processes; per-account send rate (0 turns it off); per-device queue limit.
    redis_url: str | None = None
    send_rate_per_s: float = DEFAULT_SEND_RATE_PER_S
    send_burst: int = DEFAULT_SEND_BURST
    max_queue: int = DEFAULT_MAX_QUEUE
    socket_poll_s: float = DEFAULT_SOCKET_POLL_S
    # Abuse limits on new accounts (docs/deployment.md): accounts created and device links
    # requested per client address (0 turns it off), and, for a closed deployment, a file
    # holding the token that account creation requires.
    account_rate_per_s: float = DEFAULT_ACCOUNT_RATE_PER_S
    account_burst: int = DEFAULT_ACCOUNT_BURST
    registration_token_file: Path | None = None
    # How often each process removes blobs no one needs and stale limit counts.
    housekeeping_interval_s: float = HOUSEKEEPING_INTERVAL_S
    extra: dict[str, Any] = field(default_factory=dict)
    # The key that seals the secrets kept in the database (server.secrets); default
    # DATA_DIR/secrets.key. Keep it off the database host (docs/deployment.md).
    secrets_key_file: Path | None = None
    # Every service reads the time from here: the system clock, or a testing clock moved
    # through ACCORD_CLOCK_OFFSET_FILE (accord.clock).
    clock: Clock = field(default_factory=clock_from_env)

    @property
    def database_url(self) -> str:
        return self.db_url or sqlite_url(self.data_dir)

    def registration_token(self) -> str | None:
        """The token account creation requires, read from `registration_token_file` (None: an
        open deployment). A missing, huge or too short file stops the server at start."""
        if self.registration_token_file is None:
            return None
        try:
            with self.registration_token_file.open("rb") as f:
                raw = f.read(MAX_REGISTRATION_TOKEN_BYTES + 1)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the registration token file: {exc.strerror}"
            ) from None
        token = raw.decode("utf-8", "replace").strip()
        if len(raw) > MAX_REGISTRATION_TOKEN_BYTES or len(token) < MIN_REGISTRATION_TOKEN_CHARS:
            raise ConfigurationError(
                f"the registration token is {MIN_REGISTRATION_TOKEN_CHARS} to "
                f"{MAX_REGISTRATION_TOKEN_BYTES} characters on one line"
            )
        return token


def ensure_admin_token(data_dir: Path) -> str:
    """Create DATA_DIR/admin-token (mode 0600) on first start; return the token."""
    path = data_dir / ADMIN_TOKEN_FILE
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    return path.read_text().strip()
