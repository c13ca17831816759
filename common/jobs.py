"""The one job layer: job states, a job table in SQLite, and the ``job``/``jobs``/``cancel``
operations of the actors that keep one.

A job is long work a caller started and then follows: a scan or a capture, an upload, an
OCR or barcode read. Its states::

    queued -> running -> done | failed | cancelled      (the final states: never left)

(the uploader's queue adds ``preparing`` before ``queued``, see ``actors/uploader/jobs.py``).
The gateway's recognition jobs use the same states in memory (``actors/gateway/jobs.py``);
the JS client reads them from ``static/scanbridge/states.js``, which a unit test compares
with ``JobState``.

A ``JobTable`` is ``<folder>/jobs.db``, one row per job, so a job's end is known even when
its actor died during it. ``ScanJobs`` holds the scanner's and the camera's (``cache/
scanner/``, ``cache/camera/``); ``JobOperations`` gives an actor ``job``, ``jobs`` and
``cancel`` over its table, and ``fail_orphans()``: at start, the jobs a killed process left
queued or running end ``failed`` with ``actor_died``, each told with ``<kind>.error``.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from broker.actor import operation
from broker.protocol import Error

from .sqlite import Schema, connect


class JobState(enum.StrEnum):
    """A job's state, as its records, answers and events name it (a str: it is its name on
    the wire and in SQL)."""
    PREPARING = "preparing"  # an upload being rendered, not yet acknowledged: never shown
    QUEUED = "queued"  # accepted, waiting for its device, worker or turn
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
PUBLIC_STATES = tuple(s for s in JobState if s is not JobState.PREPARING)  # callers see
ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)  # what a dead process leaves behind

KEEP_SECONDS = 7 * 86400  # finished scan jobs are forgotten after a week


def _marks(states: tuple | frozenset) -> str:
    return ", ".join("?" * len(states))


class JobTable:
    """One row per job in ``<folder>/jobs.db`` (made if missing); safe from several threads
    (one connection, one lock: the rows are few and short).

    A subclass declares its ``kind`` (the word in errors and event topics), its ``schema``
    (a ``jobs`` table with at least ``id, session, state, error, created, updated``; a
    ``common.sqlite.Schema``, whose version the file carries), the columns stored as JSON,
    and how a row reads (``record``).
    """

    kind = "job"
    schema: Schema
    json_columns: tuple[str, ...] = ("error",)
    hidden: tuple[JobState, ...] = ()  # states a caller never sees (answered not_found)
    durable = False  # synchronous=FULL (see common.sqlite.connect)

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.db = connect(folder / "jobs.db", durable=self.durable, schema=self.schema)
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def run(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        """One statement under the lock; its rows."""
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def change(self, sql: str, *args: Any) -> int:
        """One statement under the lock; the number of rows it changed."""
        with self.lock:
            return self.db.execute(sql, args).rowcount

    def encode(self, name: str, value: Any) -> Any:
        return (json.dumps(value) if value else None) if name in self.json_columns else value

    def record(self, row: sqlite3.Row) -> dict:
        """A row as a dict, JSON columns decoded."""
        record = dict(row)
        for name in self.json_columns:
            record[name] = json.loads(record[name]) if record[name] else None
        return record

    # --- reading

    def get(self, job: str) -> dict | None:
        rows = self.run("SELECT * FROM jobs WHERE id = ?", job)
        return self.record(rows[0]) if rows else None

    def find(self, job: Any, session: Any = None) -> dict:
        """The job a caller asks for: ``not_found`` if it is of another session (when
        ``session`` is given) or not shown yet."""
        if not isinstance(job, str):
            raise Error("invalid_argument", "job must be a job id")
        rows = self.run("SELECT * FROM jobs WHERE id = ?", job)
        if not rows or rows[0]["state"] in self.hidden or \
                (session is not None and rows[0]["session"] != session):
            raise self.missing(job)
        return self.record(rows[0])

    def missing(self, job: str) -> Error:
        return Error("not_found", f"no {self.kind} job {job}")

    def of_session(self, session: str) -> list[dict]:
        """The session's jobs, oldest first."""
        hidden = f" AND state NOT IN ({_marks(self.hidden)})" if self.hidden else ""
        return [self.record(row) for row in self.run(
            f"SELECT * FROM jobs WHERE session = ?{hidden} ORDER BY created",
            session, *self.hidden)]

    def orphans(self) -> list[dict]:
        """The jobs left queued or running: at start, a previous process's unfinished."""
        return [self.record(row) for row in self.run(
            f"SELECT * FROM jobs WHERE state IN ({_marks(ACTIVE_STATES)})", *ACTIVE_STATES)]

    def event_body(self, record: dict) -> dict:
        """What every ``<kind>.done``/``<kind>.error`` event says of the job."""
        return {"session": record["session"], "job": record["id"], "state": record["state"]}

    # --- writing

    def finish(self, job: str, state: JobState, error: dict | None = None, *,
               only_from: tuple[JobState, ...] = (), **columns: Any) -> bool:
        """Set a final state (and ``error``, and other ``columns``); with ``only_from``,
        only from those states. True if the row changed."""
        values = {"state": state, "error": error, **columns, "updated": time.time()}
        where = "id = ?"
        if only_from:
            where += f" AND state IN ({_marks(only_from)})"
        assignments = ", ".join(f"{name} = ?" for name in values)
        return self.change(f"UPDATE jobs SET {assignments} WHERE {where}",
                           *(self.encode(k, v) for k, v in values.items()), job,
                           *only_from) == 1


class ScanJobs(JobTable):
    """Scan and capture jobs (the scanner's and the camera's): the pages stored so far are
    recorded as they come, so a job cut by a crash still says which pages it made."""

    kind = "scan"
    json_columns = ("request", "images", "error")
    # Version 1 is what 0.1.0 wrote (broker/jobstore.py then, without a version stamp).
    schema = Schema("a scan job table", """
    CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY, session TEXT NOT NULL, source TEXT NOT NULL,
        state TEXT NOT NULL, request TEXT NOT NULL, images TEXT NOT NULL DEFAULT '[]',
        error TEXT, created REAL NOT NULL, updated REAL NOT NULL
    );
    CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session);
    """)

    def create(self, job: str, session: str, source: str, request: dict) -> None:
        """A job that starts running now."""
        now = time.time()
        self.change("INSERT INTO jobs (id, session, source, state, request, created, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", job, session, source, JobState.RUNNING,
                    json.dumps(request), now, now)

    def page(self, job: str, images: list[str]) -> None:
        """The job's stored pages so far (image ids, in order)."""
        self.change("UPDATE jobs SET images = ?, updated = ? WHERE id = ?",
                    json.dumps(images), time.time(), job)

    def prune(self) -> None:
        """Forget the jobs that ended more than ``KEEP_SECONDS`` ago."""
        self.change(f"DELETE FROM jobs WHERE state IN ({_marks(FINAL_STATES)}) "
                    "AND updated < ?", *FINAL_STATES, time.time() - KEEP_SECONDS)

    def record(self, row: sqlite3.Row) -> dict:
        images = json.loads(row["images"])
        return {"job": row["id"], "session": row["session"], "source": row["source"],
                "state": row["state"], "request": json.loads(row["request"]),
                "pages": len(images), "images": images,
                "error": json.loads(row["error"]) if row["error"] else None,
                "created": row["created"], "updated": row["updated"]}

    def event_body(self, record: dict) -> dict:
        return {"session": record["session"], "job": record["job"], "state": record["state"],
                "pages": record["pages"], "images": record["images"]}


class JobOperations:
    """``job``, ``jobs`` and ``cancel`` for an actor that keeps its jobs in ``job_table``
    (set in ``on_start``). Put it before ``Actor`` in the bases; override ``job_view``
    (what a caller sees of a record) and ``job_cancel`` (stop an unfinished job)."""

    job_table: JobTable

    def job_view(self, record: dict) -> dict:
        return record

    def job_cancel(self, record: dict) -> dict:
        """Stop the job ``record`` (not final yet) and answer what it is now."""
        raise NotImplementedError

    @operation
    def job(self, job: str, session: str | None = None) -> dict:
        """A job's state, progress and result or error."""
        return self.job_view(self.job_table.find(job, session))

    @operation
    def jobs(self, session: str) -> list:
        """The session's jobs, oldest first."""
        return [self.job_view(record) for record in self.job_table.of_session(session)]

    @operation
    def cancel(self, job: str, session: str | None = None) -> dict:
        """Cancel a queued or running job (a finished one is answered as it is)."""
        record = self.job_table.find(job, session)
        if record["state"] in FINAL_STATES:
            return self.job_view(record)
        return self.job_cancel(record)

    def fail_orphans(self, message: str) -> list[dict]:
        """At start: end the jobs a previous process left queued or running ``failed`` with
        ``actor_died`` (``message`` formatted with the record's fields), and publish
        ``<kind>.error`` for each, as a job failing now would. Returns their records."""
        table = self.job_table
        ended = []
        for record in table.orphans():
            error = Error("actor_died", message.format(**record))
            table.finish(table.event_body(record)["job"], JobState.FAILED, error.to_wire())
            record = {**record, "state": JobState.FAILED, "error": error.to_wire()}
            self.publish(f"{table.kind}.error", {  # type: ignore[attr-defined]
                **table.event_body(record), "error": error.to_wire(), "code": error.code,
                "message": error.message})
            ended.append(record)
        return ended
