"""The upload queue: one SQLite row per job in ``upload/jobs.db`` (a ``common.jobs``
table, ``synchronous=FULL``: an acknowledged job survives a power cut), files beside it.

A job's document is rendered into ``upload/<job>/`` before the job is acknowledged, so
what is sent never changes afterwards. States::

    preparing -> queued -> running -> done | failed | cancelled
                   ^---------'  (a retry: back to queued with next_at in the future)

``preparing`` rows belong to a submit that never answered: they are removed at start.
``running`` rows at start belong to an attempt the process did not finish: queued again
(the receiver takes the resend once, by its Idempotency-Key), not failed as other kinds'
orphans are. A folder whose job is not unfinished (ended, or gone) is removed at start and
on every tick: a crash between a job's end and the removal of its files must not keep them
for ``job_keep``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from broker.protocol import Error
from common.jobs import FINAL_STATES, JobState, JobTable
from common.sqlite import Schema

# Version 1 is what 0.1.0 wrote (without a version stamp); a change is a step appended to
# ``migrations`` (common/sqlite.py), never an edit of these lines.
SCHEMA = Schema("the upload queue", """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    state TEXT NOT NULL,
    request TEXT NOT NULL,      -- JSON: url, method, fields, headers, filename, auth, ...
    files TEXT NOT NULL,        -- JSON: [{path, name, media_type, bytes}]
    total INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    result TEXT,                -- JSON: {status, body, ...} of the receiver
    error TEXT,                 -- JSON: {code, message, status?}
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, next_at);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session);
""")


class UploadJobs(JobTable):
    """The queue (rows keep their ``id``; ``uploader.public()`` makes what callers see)."""

    kind = "upload"
    schema = SCHEMA
    json_columns = ("request", "files", "result", "error")
    hidden = (JobState.PREPARING,)
    durable = True

    def missing(self, job: str) -> Error:
        return Error("not_found", f"no upload job {str(job)[:40]!r} in this session")

    def create(self, job: str, session: str, request: dict, key: str) -> None:
        now = time.time()
        self.change("INSERT INTO jobs (id, session, state, request, files, idempotency_key, "
                    "created, updated) VALUES (?, ?, ?, ?, '[]', ?, ?, ?)", job, session,
                    JobState.PREPARING, json.dumps(request), key, now, now)

    def queue(self, job: str, files: list[dict]) -> None:
        total = sum(f["bytes"] for f in files)
        self.change("UPDATE jobs SET state = ?, files = ?, total = ?, updated = ? "
                    "WHERE id = ? AND state = ?", JobState.QUEUED, json.dumps(files), total,
                    time.time(), job, JobState.PREPARING)

    def remove(self, job: str) -> None:
        self.change("DELETE FROM jobs WHERE id = ?", job)

    def take(self, now: float) -> dict | None:
        """The oldest queued job that is due, marked running (one worker gets it)."""
        with self.lock:
            row = self.db.execute("SELECT * FROM jobs WHERE state = ? AND next_at <= ? "
                                  "ORDER BY next_at, created LIMIT 1",
                                  (JobState.QUEUED, now)).fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE jobs SET state = ?, attempts = attempts + 1, "
                            "sent = 0, updated = ? WHERE id = ?",
                            (JobState.RUNNING, time.time(), row["id"]))
        record = self.record(row)
        record["attempts"] += 1
        record["state"] = JobState.RUNNING
        return record

    def next_due(self) -> float | None:
        rows = self.run("SELECT MIN(next_at) AS at FROM jobs WHERE state = ?", JobState.QUEUED)
        return rows[0]["at"] if rows and rows[0]["at"] is not None else None

    def progress(self, job: str, sent: int, total: int) -> None:
        """Bytes of the request body sent (``total``: the body, multipart framing too)."""
        self.change("UPDATE jobs SET sent = ?, total = ?, updated = ? WHERE id = ?", sent,
                    total, time.time(), job)

    def retry(self, job: str, at: float, error: dict) -> bool:
        """Back to the queue for another attempt at ``at``; False if it was cancelled."""
        return self.change("UPDATE jobs SET state = ?, next_at = ?, error = ?, updated = ? "
                           "WHERE id = ? AND state = ?", JobState.QUEUED, at,
                           json.dumps(error), time.time(), job, JobState.RUNNING) == 1

    def finish(self, job: str, state: JobState, error: dict | None = None, *,
               only_from: tuple[JobState, ...] = (), result: dict | None = None,
               **columns: Any) -> bool:
        """Set a final state, the receiver's answer and the time it ended."""
        return super().finish(job, state, error, only_from=only_from, result=result,
                              finished=time.time(), **columns)

    def recover(self) -> tuple[list[str], int]:
        """At start: (ids of unfinished submits to remove, jobs put back in the queue)."""
        with self.lock:
            stale = [r["id"] for r in self.db.execute(
                "SELECT id FROM jobs WHERE state = ?", (JobState.PREPARING,)).fetchall()]
            self.db.execute("DELETE FROM jobs WHERE state = ?", (JobState.PREPARING,))
            requeued = self.db.execute("UPDATE jobs SET state = ?, next_at = 0 "
                                       "WHERE state = ?",
                                       (JobState.QUEUED, JobState.RUNNING)).rowcount
        return stale, requeued

    def unfinished(self) -> set[str]:
        """Ids of the jobs whose files are still needed (preparing, queued, running)."""
        marks = ", ".join("?" * len(FINAL_STATES))
        return {r["id"] for r in self.run(f"SELECT id FROM jobs WHERE state NOT IN ({marks})",
                                          *FINAL_STATES)}

    def expired(self, before: float) -> list[str]:
        rows = self.run("SELECT id FROM jobs WHERE finished IS NOT NULL AND finished < ?",
                        before)
        ids = [r["id"] for r in rows]
        for job in ids:
            self.remove(job)
        return ids

    def counts(self) -> dict:
        return {r["state"]: r["n"] for r in
                self.run("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}
