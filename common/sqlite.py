"""The one way Scanbridge opens a SQLite file: the job tables (``common/jobs.py``, the
uploader's queue) and the buffer's index all go through ``connect()``.

Every connection is in autocommit mode (``isolation_level=None``: a caller that needs a
transaction says ``BEGIN``), in WAL mode (readers never wait for the writer), waits up to
``BUSY_TIMEOUT`` for another connection's lock instead of failing at once, and gives rows
that are read by column name (``sqlite3.Row``, which also unpacks like a tuple).

Schema versions. A database is made and upgraded by its ``Schema``: ``create``, the SQL of
version 1, then ``migrations``, the steps to versions 2, 3... The version a file is at is
its ``PRAGMA user_version``. Version 0 is a file no release stamped: a new, empty file, or
one written by Scanbridge 0.1.0, whose tables already have version 1's shape; both become
version 1 by running ``create`` (``CREATE ... IF NOT EXISTS``: nothing of 0.1.0's tables
changes). A new file takes the same steps as an old one, so a new home and an upgraded one
cannot differ. Each step runs in one transaction with its version bump: a crash or a failing
step leaves the file at the version before it, and the next start tries again. A file at a
version newer than its Schema knows was written by a newer release: ``SchemaTooNew``, and
the file is not touched (going on would drop what the newer release keeps there).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Union

from broker.actor import StartRefused

BUSY_TIMEOUT = 30.0  # seconds a statement waits for another connection's write lock

# A migration step: SQL (one or more statements), or a function given the connection,
# inside the step's transaction (it must not commit).
Step = Union[str, Callable[[sqlite3.Connection], None]]


@dataclass(frozen=True)
class Schema:
    """How one database is made and taken forward (see the module docstring)."""
    name: str  # what the file is, for messages: "the buffer's index"
    create: str  # version 1, every statement ``IF NOT EXISTS``
    migrations: tuple[Step, ...] = ()  # migrations[0] takes version 1 to 2, and so on

    @property
    def version(self) -> int:
        """The version this code writes and reads."""
        return 1 + len(self.migrations)

    def steps(self) -> list[tuple[int, Step]]:
        """(version reached, step) from version 0."""
        return [(1, self.create)] + [(n + 2, step) for n, step in enumerate(self.migrations)]


class SchemaTooNew(StartRefused):
    """A database written by a newer release than this one; it was left as it is."""

    code = "schema_too_new"

    def __init__(self, path: Path, schema: Schema, found: int):
        super().__init__(
            f"{path}: {schema.name} is at schema version {found}, newer than this "
            f"Scanbridge knows ({schema.version}): it was written by a newer release and is "
            "left untouched; install that release again (a downgrade would lose its data)")
        self.path, self.found, self.known = path, found, schema.version


def connect(path: Path, *, durable: bool, shared: bool = True, foreign_keys: bool = False,
            schema: Schema | None = None) -> sqlite3.Connection:
    """Open (creating if missing) the database at ``path``; with ``schema``, brought to its
    version first (raises ``SchemaTooNew`` for a file of a newer release).

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
    try:
        if schema is not None:
            # Before anything writes (even the journal mode): a newer file stays as it is.
            found = version_of(db)
            if found > schema.version:
                raise SchemaTooNew(path, schema, found)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        if foreign_keys:
            db.execute("PRAGMA foreign_keys=ON")
        if schema is not None:
            migrate(db, path, schema)
    except BaseException:
        db.close()
        raise
    return db


def version_of(db: sqlite3.Connection) -> int:
    return db.execute("PRAGMA user_version").fetchone()[0]


def stored_version(path: Path) -> int | None:
    """The schema version of the file at ``path`` (None when there is no file), read
    without changing or making a file: ``scanbridge doctor`` may run as root in a home of
    another user, where a ``-shm`` file of root's would lock the service out. With no
    write-ahead log beside it (the service stopped cleanly), everything is in the file
    and it is read as immutable (no lock, no ``-shm``); else the files of the running
    service are there already."""
    if not path.exists():
        return None
    wal = path.with_name(f"{path.name}-wal")
    mode = "ro" if wal.exists() and wal.stat().st_size else "ro&immutable=1"
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True,
                         timeout=BUSY_TIMEOUT)
    try:
        return version_of(db)
    finally:
        db.close()


def migrate(db: sqlite3.Connection, path: Path, schema: Schema) -> None:
    """Run the steps from the file's version to ``schema.version``, each in a transaction
    with its version bump. The version is read again under the write lock: another
    connection may have taken the step meanwhile."""
    if version_of(db) == schema.version:
        return
    for reached, step in schema.steps():
        db.execute("BEGIN IMMEDIATE")
        try:
            found = version_of(db)
            if found > schema.version:
                raise SchemaTooNew(path, schema, found)
            if found < reached:
                if callable(step):
                    step(db)
                else:
                    for statement in statements(step):
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {reached:d}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def statements(script: str) -> list[str]:
    """The statements of ``script`` one by one: ``executescript`` would commit the step's
    transaction before it runs. A ``;`` inside a string or a comment does not end one."""
    found, start = [], 0
    for at, char in enumerate(script):
        if char == ";" and sqlite3.complete_statement(script[start:at + 1]):
            found.append(script[start:at + 1])
            start = at + 1
    if script[start:].strip():
        found.append(script[start:])  # no ";" at the end: execute() says what is wrong
    return [s for s in found if s.strip().strip(";").strip()]
