"""Start the server under uvicorn."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Sequence

import uvicorn

from accord.clock import CLOCK_OFFSET_ENV, Clock, OffsetFileClock
from accord.server.app import Mount, create_app
from accord.server.observability import configure_logging
from accord.server.settings import ServerSettings

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


def serve(settings: ServerSettings, *, mounts: Sequence[Mount] = ()) -> None:
    configure_logging(settings.log_format)
    # Everything this process creates (database, blobs, keys, review vault) is for its own user
    # only, whatever umask it was started with (docs/threat-model.md, "server at rest").
    os.umask(PRIVATE_UMASK)
    config = settings.to_config()
    warn_if_testing_clock(config.clock)
    app = create_app(config, mounts=mounts)
    tune_garbage_collection()
    host, port = settings.host, settings.port
    print(
        f"accord server listening on http://{host}:{port} (data in {config.data_dir})", flush=True
    )
    # Access logs are off: paths carry blob ids, which are capabilities. Uvicorn's own records
    # (an error it catches, say) go through the same handler, so their tracebacks are redacted.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, log_config=None)
