"""Start the server under uvicorn."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from accord.server.app import DEFAULT_MAX_ATTACHMENT_BYTES, ServerConfig, create_app
from accord.server.limits import DEFAULT_MAX_QUEUE, DEFAULT_SEND_BURST, DEFAULT_SEND_RATE_PER_S
from accord.server.observability import configure_logging


def serve(
    *,
    data_dir: Path,
    db_url: str | None,
    host: str,
    port: int,
    max_attachment_bytes: int | None = None,
    witnesses: list[str] | None = None,
    redis_url: str | None = None,
    send_rate_per_s: float = DEFAULT_SEND_RATE_PER_S,
    send_burst: int = DEFAULT_SEND_BURST,
    max_queue: int = DEFAULT_MAX_QUEUE,
    log_format: str = "text",
) -> None:
    configure_logging(log_format)
    config = ServerConfig(
        data_dir=data_dir,
        db_url=db_url,
        max_attachment_bytes=max_attachment_bytes or DEFAULT_MAX_ATTACHMENT_BYTES,
        witnesses=witnesses or [],
        redis_url=redis_url,
        send_rate_per_s=send_rate_per_s,
        send_burst=send_burst,
        max_queue=max_queue,
    )
    app = create_app(config)
    print(f"accord server listening on http://{host}:{port} (data in {data_dir})", flush=True)
    # Access logs are off: paths carry blob ids, which are capabilities.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
