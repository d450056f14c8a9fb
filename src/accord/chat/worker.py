"""The chat app's one thread that uses the client: it follows the server and, between frames,
runs what the user asked for. The client's store is one SQLite connection whose transactions
must not interleave, so nothing else touches the client while the app runs."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from accord.client.client import AccordClient
from accord.client.history import StoredMessage
from accord.client.received import ReceiveResult
from accord.errors import AccordError


@dataclass(frozen=True)
class Incoming:
    """One frame as the app shows it: the notices and the messages not shown before."""

    notices: list[str]
    rejected: list[str]
    messages: list[StoredMessage]


Job = Callable[[AccordClient], Any]


class ClientWorker:
    """Runs `AccordClient.follow` on a thread of its own and the app's jobs between frames.

    `deliver(incoming)` is called (on the worker thread) for every frame; it must return only
    once the messages are on screen, because they are then marked shown. Each job's answer (or
    its `AccordError`) goes to the callbacks given with it, on the worker thread too.
    """

    def __init__(self, client: AccordClient, deliver: Callable[[Incoming], None]) -> None:
        self.client = client
        self._deliver = deliver
        self._jobs: queue.Queue[tuple[Job, Callable[[Any], None], Callable[[str], None]]] = (
            queue.Queue()
        )
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="accord-chat-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=10)

    def submit(self, job: Job, done: Callable[[Any], None], failed: Callable[[str], None]) -> None:
        self._jobs.put((job, done, failed))

    def _run(self) -> None:
        try:
            for result in self.client.follow(self.stop):
                self._show(result)
                self._run_jobs()
        except AccordError as exc:
            self._deliver(Incoming([f"receiving stopped: {exc.diagnostics()}"], [], []))

    def _show(self, result: ReceiveResult) -> None:
        unshown = self.client.unshown_messages()
        if not (result.notices or result.rejected or unshown):
            return
        self._deliver(Incoming(list(result.notices), list(result.rejected), unshown))
        for stored in unshown:
            self.client.mark_shown(stored)

    def _run_jobs(self) -> None:
        while True:
            try:
                job, done, failed = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                answer = job(self.client)
            except AccordError as exc:
                failed(exc.diagnostics())
            except OSError as exc:  # a file the user named
                failed(f"{exc.strerror or type(exc).__name__}: {exc.filename or ''}".strip())
            else:
                done(answer)
