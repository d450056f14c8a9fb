"""Start the server under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from accord.server.app import DEFAULT_MAX_ATTACHMENT_BYTES, ServerConfig, create_app


def serve(
    *,
    data_dir: Path,
    db_url: str | None,
    host: str,
    port: int,
    max_attachment_bytes: int | None = None,
    witnesses: list[str] | None = None,
) -> None:
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    config = ServerConfig(
        data_dir=data_dir,
        db_url=db_url,
        max_attachment_bytes=max_attachment_bytes or DEFAULT_MAX_ATTACHMENT_BYTES,
        witnesses=witnesses or [],
    )
    app = create_app(config)
    print(f"accord server listening on http://{host}:{port} (data in {data_dir})", flush=True)
    # Access logs are off: paths carry blob ids, which are capabilities.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
