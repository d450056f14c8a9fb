"""`PeriodicThread`: a job run every so often in a daemon thread of a server process until
closed. A run that fails is logged (without its message: see server.observability) and the job
is tried again on the next tick."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class PeriodicThread:
    def __init__(
        self,
        job: Callable[[], object],
        *,
        interval_s: float,
        name: str,
        log: logging.Logger,
    ) -> None:
        self.job = job
        self.interval_s = interval_s
        self.name = name
        self.log = log
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_forever, name=self.name, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run_forever(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.job()
            except Exception:  # try again on the next tick
                self.log.exception("%s failed; retrying", self.name)
