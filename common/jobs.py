"""Scan job records in SQLite (``cache/<actor>/jobs.db``, for the scanner and the camera),
so a job's end is known even when its actor died during it: at start, jobs left
``running`` become ``failed`` with ``actor_died`` (see ``Scanner.on_start``)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from broker.protocol import Error

KEEP_SECONDS = 7 * 86400  # finished jobs are forgotten after a week
ACTIVE = ("queued", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, session TEXT NOT NULL, source TEXT NOT NULL,
    state TEXT NOT NULL, request TEXT NOT NULL, images TEXT NOT NULL DEFAULT '[]',
    error TEXT, created REAL NOT NULL, updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_session ON jobs (session);
"""


class JobStore:
    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(root / "jobs.db", check_same_thread=False,
                                  isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(SCHEMA)
        self.lock = threading.Lock()

    def create(self, job: str, session: str, source: str, request: dict) -> None:
        now = time.time()
        with self.lock:
            self.db.execute("INSERT INTO jobs (id, session, source, state, request, created, "
                            "updated) VALUES (?, ?, ?, 'running', ?, ?, ?)",
                            (job, session, source, json.dumps(request), now, now))

    def page(self, job: str, images: list[str]) -> None:
        with self.lock:
            self.db.execute("UPDATE jobs SET images = ?, updated = ? WHERE id = ?",
                            (json.dumps(images), time.time(), job))

    def finish(self, job: str, state: str, error: dict | None = None) -> None:
        with self.lock:
            self.db.execute("UPDATE jobs SET state = ?, error = ?, updated = ? WHERE id = ?",
                            (state, json.dumps(error) if error else None, time.time(), job))

    def get(self, job: Any, session: Any = None) -> dict:
        if not isinstance(job, str):
            raise Error("invalid_argument", "job must be a job id")
        with self.lock:
            row = self.db.execute("SELECT * FROM jobs WHERE id = ?", (job,)).fetchone()
        if row is None or (session is not None and row[1] != session):
            raise Error("not_found", f"no scan job {job}")
        return self._describe(row)

    def of_session(self, session: str) -> list[dict]:
        with self.lock:
            rows = self.db.execute("SELECT * FROM jobs WHERE session = ? ORDER BY created",
                                   (session,)).fetchall()
        return [self._describe(row) for row in rows]

    def orphans(self) -> list[dict]:
        """Jobs a previous process left unfinished."""
        with self.lock:
            rows = self.db.execute(f"SELECT * FROM jobs WHERE state IN {ACTIVE}").fetchall()
        return [self._describe(row) for row in rows]

    def prune(self) -> None:
        with self.lock:
            self.db.execute(f"DELETE FROM jobs WHERE state NOT IN {ACTIVE} AND updated < ?",
                            (time.time() - KEEP_SECONDS,))

    def close(self) -> None:
        with self.lock:
            self.db.close()

    @staticmethod
    def _describe(row: tuple) -> dict:
        job, session, source, state, request, images, error, created, updated = row
        images = json.loads(images)
        return {"job": job, "session": session, "source": source, "state": state,
                "request": json.loads(request), "pages": len(images), "images": images,
                "error": json.loads(error) if error else None,
                "created": created, "updated": updated}
