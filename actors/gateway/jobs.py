"""The gateway's own jobs: OCR and barcode reads of a session's pages.

A job is an asyncio task that spreads pages over the workers of a service through the
broker; the table here gives it an id, a state, progress, its result or error, cancel,
and the events a page follows (``<topic>.progress|done|failed|cancelled``). Jobs live in
this process only: they are recomputed, never lost data, if the gateway restarts. Their
states are the service's job states (``common.jobs.JobState``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from broker.protocol import Error
from common.jobs import FINAL_STATES, JobState

KEEP_SECONDS = 3600.0  # a finished job's result stays readable this long
MAX_JOBS_PER_SESSION = 100  # finished ones beyond this go first
MAX_RUNNING_PER_SESSION = 8


@dataclass
class Job:
    id: str
    kind: str  # "ocr" | "barcodes": the endpoint
    topic: str  # event prefix: "ocr" | "barcode"
    session: str
    total: int
    state: JobState = JobState.QUEUED
    done: int = 0
    created: float = field(default_factory=time.time)
    finished: float | None = None
    result: Any = None
    error: dict | None = None
    files: dict = field(default_factory=dict)  # output name -> (path or bytes, media type)
    task: asyncio.Task | None = None
    table: Jobs | None = field(default=None, repr=False)

    def advance(self, **extra: Any) -> None:
        """One more page done: count it and tell the session."""
        self.done += 1
        if self.table is not None:
            self.table.event(self, "progress", done=self.done, total=self.total, **extra)

    def view(self) -> dict:
        view = {"job": self.id, "kind": self.kind, "session": self.session,
                "state": self.state, "progress": {"done": self.done, "total": self.total},
                "created": self.created, "finished": self.finished}
        if self.error is not None:
            view["error"] = self.error
        if self.result is not None:
            view["result"] = self.result
        return view


class Jobs:
    """Jobs by session; ``publish(topic, body)`` sends a session event."""

    def __init__(self, publish: Callable[[str, dict], None], log):
        self.publish = publish
        self.log = log
        self.by_session: dict[str, dict[str, Job]] = {}

    def start(self, kind: str, topic: str, session: str, total: int,
              work: Callable[[Job], Awaitable[Any]]) -> Job:
        """Run ``work(job)`` as a task; its return value becomes the result."""
        self._expire()
        jobs = self.by_session.setdefault(session, {})
        running = [j for j in jobs.values() if j.state not in FINAL_STATES]
        if len(running) >= MAX_RUNNING_PER_SESSION:
            raise Error("busy", f"this session already runs {len(running)} jobs; wait for "
                                "one to finish or cancel one")
        job = Job(id=secrets.token_hex(8), kind=kind, topic=topic, session=session,
                  total=total, table=self)
        jobs[job.id] = job
        while len(jobs) > MAX_JOBS_PER_SESSION:
            oldest = min((j for j in jobs.values() if j.finished), key=lambda j: j.created,
                         default=None)
            if oldest is None:
                break
            self._drop(jobs.pop(oldest.id))
        job.task = asyncio.create_task(self._run(job, work))
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[Any]]) -> None:
        job.state = JobState.RUNNING
        try:
            job.result = await work(job)
            job.state = JobState.DONE
            self.event(job, job.state)
        except asyncio.CancelledError:
            job.state = JobState.CANCELLED
            self.event(job, job.state)
        except Error as exc:
            job.state, job.error = JobState.FAILED, exc.to_wire()
            self.event(job, job.state, error=job.error)
        except Exception as exc:
            self.log.exception("job failed", job=job.id, kind=job.kind)
            job.state = JobState.FAILED
            job.error = {"code": "internal", "message": f"the job failed: {exc}"}
            self.event(job, job.state, error=job.error)
        finally:
            job.finished = time.time()

    def event(self, job: Job, what: str, **extra: Any) -> None:
        self.publish(f"{job.topic}.{what}", {"session": job.session, "job": job.id,
                                             "kind": job.kind, **extra})

    def get(self, session: str, job_id: str, kind: str) -> Job:
        job = self.by_session.get(session, {}).get(job_id)
        if job is None or job.kind != kind:
            raise Error("not_found", f"no {kind} job {job_id!r} in this session")
        return job

    def list(self, session: str, kind: str) -> list[dict]:
        self._expire()
        return [j.view() for j in self.by_session.get(session, {}).values() if j.kind == kind]

    def cancel(self, session: str, job_id: str, kind: str) -> Job:
        job = self.get(session, job_id, kind)
        if job.task is not None and not job.task.done():
            job.task.cancel()
        return job

    def forget(self, session: str) -> None:
        """The session closed: stop its jobs, drop their results."""
        for job in self.by_session.pop(session, {}).values():
            self._drop(job)

    def _drop(self, job: Job) -> None:
        if job.task is not None and not job.task.done():
            job.task.cancel()
        job.files.clear()

    def _expire(self) -> None:
        limit = time.time() - KEEP_SECONDS
        for session, jobs in list(self.by_session.items()):
            for job_id in [i for i, j in jobs.items() if j.finished and j.finished < limit]:
                self._drop(jobs.pop(job_id))
            if not jobs:
                del self.by_session[session]
