"""The one way Scanbridge opens a SQLite file: the job tables (``common/jobs.py``, the
uploader's queue) and the buffer's index all go through ``connect()``.

Every connection is in autocommit mode (``isolation_level=None``: a caller that needs a
transaction says ``BEGIN``), in WAL mode (readers never wait for the writer), waits up to
``BUSY_TIMEOUT`` for another connection's lock instead of failing at once, and gives rows
that are read by column name (``sqlite3.Row``, which also unpacks like a tuple).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another connection's write lock


def connect(path: Path, *, durable: bool, shared: bool = True,
            foreign_keys: bool = False) -> sqlite3.Connection:
    """Open (creating if missing) the database at ``path``.

    Args:
        durable: ``synchronous=FULL``, a commit survives a power cut (what a caller
            acknowledged: buffered pages, accepted uploads); else ``NORMAL``, a commit
            survives the process being killed but the last ones may go with a power cut
            (records a restart can do without: scan and capture job records).
        shared: the connection may be used from several threads (the caller serialises
            its use with a lock); False for a connection per thread.
        foreign_keys: enforce the schema's ``REFERENCES`` clauses.
    """
    db = sqlite3.connect(path, timeout=BUSY_TIMEOUT, isolation_level=None,
                         check_same_thread=not shared)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    if foreign_keys:
        db.execute("PRAGMA foreign_keys=ON")
    return db
