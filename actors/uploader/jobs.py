"""The upload queue: one SQLite row per job in ``upload/jobs.db`` (WAL), files beside it.

A job's document is rendered into ``upload/<job>/`` before the job is acknowledged, so
what is sent never changes afterwards. States::

    preparing -> queued -> running -> done | failed | cancelled
                   ^---------'  (a retry: back to queued with next_at in the future)

``preparing`` rows belong to a submit that never answered: they are removed at start.
``running`` rows at start belong to an attempt the process did not finish: queued again
(the receiver takes the resend once, by its Idempotency-Key). A folder whose job is not
unfinished (ended, or gone) is removed at start and on every tick: a crash between a job's
end and the removal of its files must not keep them for ``job_keep``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

FINAL = ("done", "failed", "cancelled")
SCHEMA = """
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
"""


class Jobs:
    """Thread-safe access to the queue (one connection, one lock: the rows are few)."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(folder / "jobs.db", check_same_thread=False,
                                  isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an acknowledged job survives power loss
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _run(self, sql: str, *args) -> list[sqlite3.Row]:
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    def create(self, job: str, session: str, request: dict, key: str) -> None:
        now = time.time()
        self._run("INSERT INTO jobs (id, session, state, request, files, idempotency_key, "
                  "created, updated) VALUES (?, ?, 'preparing', ?, '[]', ?, ?, ?)",
                  job, session, json.dumps(request), key, now, now)

    def queue(self, job: str, files: list[dict]) -> None:
        total = sum(f["bytes"] for f in files)
        self._run("UPDATE jobs SET state = 'queued', files = ?, total = ?, updated = ? "
                  "WHERE id = ? AND state = 'preparing'", json.dumps(files), total,
                  time.time(), job)

    def remove(self, job: str) -> None:
        self._run("DELETE FROM jobs WHERE id = ?", job)

    def get(self, job: str) -> dict | None:
        rows = self._run("SELECT * FROM jobs WHERE id = ?", job)
        return _record(rows[0]) if rows else None

    def of_session(self, session: str) -> list[dict]:
        return [_record(r) for r in
                self._run("SELECT * FROM jobs WHERE session = ? AND state != 'preparing' "
                          "ORDER BY created", session)]

    def take(self, now: float) -> dict | None:
        """The oldest queued job that is due, marked running (one worker gets it)."""
        with self.lock:
            row = self.db.execute("SELECT * FROM jobs WHERE state = 'queued' AND next_at <= ? "
                                  "ORDER BY next_at, created LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE jobs SET state = 'running', attempts = attempts + 1, "
                            "sent = 0, updated = ? WHERE id = ?", (time.time(), row["id"]))
        record = _record(row)
        record["attempts"] += 1
        record["state"] = "running"
        return record

    def next_due(self) -> float | None:
        rows = self._run("SELECT MIN(next_at) AS at FROM jobs WHERE state = 'queued'")
        return rows[0]["at"] if rows and rows[0]["at"] is not None else None

    def progress(self, job: str, sent: int, total: int) -> None:
        """Bytes of the request body sent (``total``: the body, multipart framing too)."""
        self._run("UPDATE jobs SET sent = ?, total = ?, updated = ? WHERE id = ?", sent, total,
                  time.time(), job)

    def retry(self, job: str, at: float, error: dict) -> bool:
        """Back to the queue for another attempt at ``at``; False if it was cancelled."""
        with self.lock:
            done = self.db.execute(
                "UPDATE jobs SET state = 'queued', next_at = ?, error = ?, updated = ? "
                "WHERE id = ? AND state = 'running'",
                (at, json.dumps(error), time.time(), job))
        return done.rowcount == 1

    def finish(self, job: str, state: str, result: dict | None = None,
               error: dict | None = None, only_from: tuple[str, ...] = ()) -> bool:
        """Set a final state; with ``only_from``, only from those states (True if set)."""
        now = time.time()
        where = "id = ?"
        args: list[Any] = [state, json.dumps(result) if result else None,
                           json.dumps(error) if error else None, now, now, job]
        if only_from:
            where += f" AND state IN ({', '.join('?' * len(only_from))})"
            args += list(only_from)
        with self.lock:
            done = self.db.execute(f"UPDATE jobs SET state = ?, result = ?, error = ?, "
                                   f"updated = ?, finished = ? WHERE {where}", args)
        return done.rowcount == 1

    def recover(self) -> tuple[list[str], int]:
        """At start: (ids of unfinished submits to remove, jobs put back in the queue)."""
        with self.lock:
            stale = [r["id"] for r in self.db.execute(
                "SELECT id FROM jobs WHERE state = 'preparing'").fetchall()]
            self.db.execute("DELETE FROM jobs WHERE state = 'preparing'")
            requeued = self.db.execute("UPDATE jobs SET state = 'queued', next_at = 0 "
                                       "WHERE state = 'running'").rowcount
        return stale, requeued

    def unfinished(self) -> set[str]:
        """Ids of the jobs whose files are still needed (preparing, queued, running)."""
        marks = ", ".join("?" * len(FINAL))
        return {r["id"] for r in self._run(f"SELECT id FROM jobs WHERE state NOT IN ({marks})",
                                           *FINAL)}

    def expired(self, before: float) -> list[str]:
        rows = self._run("SELECT id FROM jobs WHERE finished IS NOT NULL AND finished < ?",
                         before)
        ids = [r["id"] for r in rows]
        for job in ids:
            self.remove(job)
        return ids

    def counts(self) -> dict:
        return {r["state"]: r["n"] for r in
                self._run("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}


def _record(row: sqlite3.Row) -> dict:
    record = dict(row)
    for name in ("request", "files", "result", "error"):
        record[name] = json.loads(record[name]) if record[name] else None
    return record
