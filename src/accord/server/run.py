"""Start the server under uvicorn."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from accord.clock import CLOCK_OFFSET_ENV, Clock, OffsetFileClock
from accord.server.app import Mount, create_app
from accord.server.config import DEFAULT_MAX_ATTACHMENT_BYTES, ServerConfig
from accord.server.limits import (
    DEFAULT_ACCOUNT_BURST,
    DEFAULT_ACCOUNT_RATE_PER_S,
    DEFAULT_MAX_QUEUE,
    DEFAULT_SEND_BURST,
    DEFAULT_SEND_RATE_PER_S,
)
from accord.server.notify import DEFAULT_SOCKET_POLL_S
from accord.server.observability import configure_logging
from accord.server.translog import DEFAULT_CHECKPOINT_REFRESH_S, DEFAULT_LOG_ORIGIN

log = logging.getLogger("accord.server")

GC_GEN0_THRESHOLD = 50_000
PRIVATE_UMASK = 0o077


def tune_garbage_collection() -> None:
    """What is made at start-up (the app, connection pools, keys, indexes) lives as long as the
    process: freeze it so full collections stop walking it, and collect the young generation
    less often (each request allocates many short-lived objects). Measured in
    docs/benchmarks.md ("Messaging relay"): full collections over everything took 200-290 ms
    and set the latency tail under load."""
    if os.environ.get("ACCORD_GC_DEFAULTS") == "1":  # for comparisons in benchmarks
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def warn_if_testing_clock(clock: Clock) -> None:
    """A server whose time a file can move (ACCORD_CLOCK_OFFSET_FILE) is for tests only."""
    if isinstance(clock, OffsetFileClock):
        log.warning(
            "TESTING CLOCK: this server's time is the system time plus the offset in %s "
            "(set by %s); never run a deployment like this",
            clock.path,
            CLOCK_OFFSET_ENV,
        )


def serve(
    *,
    data_dir: Path,
    db_url: str | None,
    host: str,
    port: int,
    max_attachment_bytes: int | None = None,
    witnesses: list[str] | None = None,
    checkpoint_refresh_s: float = DEFAULT_CHECKPOINT_REFRESH_S,
    redis_url: str | None = None,
    send_rate_per_s: float = DEFAULT_SEND_RATE_PER_S,
    send_burst: int = DEFAULT_SEND_BURST,
    max_queue: int = DEFAULT_MAX_QUEUE,
    socket_poll_s: float = DEFAULT_SOCKET_POLL_S,
    log_format: str = "text",
    account_rate_per_s: float = DEFAULT_ACCOUNT_RATE_PER_S,
    account_burst: int = DEFAULT_ACCOUNT_BURST,
    registration_token_file: Path | None = None,
    secrets_key_file: Path | None = None,
    log_origin: str = DEFAULT_LOG_ORIGIN,
    mounts: Sequence[Mount] = (),
) -> None:
    configure_logging(log_format)
    # Everything this process creates (database, blobs, keys, review vault) is for its own user
    # only, whatever umask it was started with (docs/threat-model.md, "server at rest").
    os.umask(PRIVATE_UMASK)
    config = ServerConfig(
        data_dir=data_dir,
        db_url=db_url,
        max_attachment_bytes=max_attachment_bytes or DEFAULT_MAX_ATTACHMENT_BYTES,
        witnesses=witnesses or [],
        checkpoint_refresh_s=checkpoint_refresh_s,
        redis_url=redis_url,
        send_rate_per_s=send_rate_per_s,
        send_burst=send_burst,
        max_queue=max_queue,
        socket_poll_s=socket_poll_s,
        account_rate_per_s=account_rate_per_s,
        account_burst=account_burst,
        registration_token_file=registration_token_file,
        secrets_key_file=secrets_key_file,
        log_origin=log_origin,
    )
    warn_if_testing_clock(config.clock)
    app = create_app(config, mounts=mounts)
    tune_garbage_collection()
    print(f"accord server listening on http://{host}:{port} (data in {data_dir})", flush=True)
    # Access logs are off: paths carry blob ids, which are capabilities. Uvicorn's own records
    # (an error it catches, say) go through the same handler, so their tracebacks are redacted.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
