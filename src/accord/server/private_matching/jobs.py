"""Publishing a table in the background (docs/protocol/private-matching.md, S1-S5): the
operator's request checks the parameters and banks, starts the build and is answered 202 with a
job; the build (minutes for a million banked hashes) runs in a thread of this server process,
its blinding in worker processes, and the operator follows it by job id.

Jobs live in this process's memory: one build at a time per process, and a job is gone when the
process restarts (the table is then not published; publish again). The table itself, once
logged, is in the database and on disk like any other.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field

from accord.clock import SYSTEM_CLOCK, Clock, now_ms
from accord.errors import AccordError, Conflict, NotFound
from accord.primitives.encoding import b64url
from accord.server.private_matching.tables import MatchingTables
from accord.wire.matching import JobError, PublishJob, PublishTableRequest, TableSummary

log = logging.getLogger("accord.server.private_matching")

#: Finished jobs kept for their status (the oldest are dropped beyond this).
MAX_FINISHED_JOBS = 32


@dataclass
class _Job:
    job_id: str
    started_at: int
    state: str = "reading"
    slots_done: int = 0
    slots: int = 0
    table: TableSummary | None = None
    error: JobError | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def progress(self, done: int, total: int) -> None:
        with self.lock:
            self.slots_done, self.slots = done, total

    def phase(self, state: str) -> None:
        with self.lock:
            self.state = state

    def view(self) -> PublishJob:
        with self.lock:
            return PublishJob(
                job_id=self.job_id,
                state=self.state,  # type: ignore[arg-type]
                slots_done=self.slots_done,
                slots=self.slots,
                started_at=self.started_at,
                table=self.table,
                error=self.error,
            )


class PublishJobs:
    """Table builds started by the operator, followed by job id."""

    def __init__(self, tables: MatchingTables, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.tables = tables
        self.clock = clock
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def start(self, req: PublishTableRequest) -> PublishJob:
        """Check the request (refused at once if it cannot make a table), start the build and
        return its job. One build at a time."""
        self.tables.check_request(req)
        with self._lock:
            running = [j for j in self._jobs.values() if j.state not in ("done", "failed")]
            if running:
                raise Conflict(
                    f"table job {running[0].job_id} is still running", code="publish_in_progress"
                )
            job = _Job(job_id="j_" + b64url(secrets.token_bytes(16)), started_at=now_ms(self.clock))
            self._jobs[job.job_id] = job
            finished = [k for k, j in self._jobs.items() if j.state in ("done", "failed")]
            for stale in finished[: max(0, len(finished) - MAX_FINISHED_JOBS)]:
                del self._jobs[stale]
        threading.Thread(target=self._run, args=(job, req), name="pm-publish", daemon=True).start()
        return job.view()

    def _run(self, job: _Job, req: PublishTableRequest) -> None:
        try:
            summary = self.tables.publish(req, progress=job.progress, phase=job.phase)
        except AccordError as exc:
            with job.lock:
                job.state, job.error = "failed", JobError(code=exc.code, message=exc.message)
            return
        except Exception as exc:  # the job must end; the log gets the type only
            log.error("table build failed: %s", type(exc).__name__)
            with job.lock:
                job.state = "failed"
                job.error = JobError(code="internal", message="the build failed; see the log")
            return
        with job.lock:
            job.state, job.table = "done", summary

    def get(self, job_id: str) -> PublishJob:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound("no such table job in this server process")
        return job.view()
