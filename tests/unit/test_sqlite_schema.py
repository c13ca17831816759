"""Schema versions and migrations (common/sqlite.py) on SQLite files in tmp_path: a new file
and a file of 0.1.0 (no version) become version 1 the same way, each step runs in one
transaction with its version bump, a failing step leaves the version before it, a file of
a newer release is refused untouched, and the real databases (the buffer's index, the
upload queue, the scan job tables) carry their versions.

The steps are tested with a schema of this file's own on a scratch table: no production
database has a step yet (its version 1 is what 0.1.0 wrote), and none is made up for a test.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from actors.buffer.store import SCHEMA as BUFFER
from actors.buffer.store import Store
from actors.uploader.jobs import SCHEMA as UPLOADS
from actors.uploader.jobs import UploadJobs
from broker.actor import StartRefused
from common.jobs import ScanJobs
from common.sqlite import Schema, SchemaTooNew, connect, statements, stored_version

V1 = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);"


def fill_kinds(db: sqlite3.Connection) -> None:
    """A step in Python: derives a column from the data."""
    db.execute("UPDATE notes SET kind = CASE WHEN text LIKE 'todo%' THEN 'todo' ELSE 'note' "
               "END")


# Version 2: a column (with a ';' in a string and in a comment, which end no statement) and
# an index; version 3: data filled in by Python.
TWO = ("ALTER TABLE notes ADD COLUMN kind TEXT NOT NULL DEFAULT 'a;b'; -- not here; \n"
       "CREATE INDEX notes_kind ON notes (kind);")
NOTES = Schema("the notes", V1, (TWO, fill_kinds))


def shape(path: Path) -> list[tuple]:
    """The file's tables and indexes as SQLite keeps them."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                          "ORDER BY type, name").fetchall()


def version(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


def raw(path: Path, *statements_: str) -> None:
    """Write with plain sqlite3, as a release that knew no versions did."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements_:
            db.executescript(statement)
    finally:
        db.close()


# --- the steps

def test_a_new_file_takes_every_step_to_the_newest_version(tmp_path):
    db = connect(tmp_path / "n.db", durable=True, schema=NOTES)
    db.execute("INSERT INTO notes (text) VALUES ('todo: x')")
    assert db.execute("SELECT kind FROM notes").fetchone()[0] == "a;b"  # the default
    db.close()
    assert NOTES.version == 3 and version(tmp_path / "n.db") == 3
    assert [name for _, name, _, _ in shape(tmp_path / "n.db")] == ["notes_kind", "notes"]


def test_a_file_without_a_version_is_version_1_s_shape_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    raw(path, V1, "INSERT INTO notes (text) VALUES ('todo: call'), ('a note')")
    connect(path, durable=True, schema=Schema("the notes", V1)).close()
    assert version(path) == 1
    db = connect(path, durable=True, schema=NOTES)
    assert [tuple(r) for r in db.execute("SELECT id, text, kind FROM notes ORDER BY id")] == [
        (1, "todo: call", "todo"), (2, "a note", "note")]
    db.close()
    made = tmp_path / "new.db"
    connect(made, durable=True, schema=NOTES).close()
    assert shape(path) == shape(made)  # an upgraded file and a new one do not differ


def test_0_to_1_changes_nothing_of_a_0_1_0_file_but_its_stamp(tmp_path):
    """The real schemas: a file written with version 1's statements and no stamp (what
    0.1.0 wrote; tests/test_upgrade.py runs 0.1.0 itself) is only stamped."""
    for schema in (BUFFER, UPLOADS, ScanJobs.schema):
        path = tmp_path / f"{schema.name}.db"
        raw(path, schema.create)
        before = shape(path)
        connect(path, durable=True, schema=schema).close()
        assert (shape(path), version(path)) == (before, 1), schema.name


def test_a_failing_step_leaves_the_version_before_it_and_the_next_open_goes_on(tmp_path):
    path = tmp_path / "n.db"
    connect(path, durable=True, schema=Schema("the notes", V1)).close()
    broken = Schema("the notes", V1, (TWO + "\nCREATE INDEX notes_kind ON nowhere (x);",))
    with pytest.raises(sqlite3.OperationalError, match="no such table: main.nowhere"):
        connect(path, durable=True, schema=broken)
    assert version(path) == 1  # the column added before the failure went with it
    assert [name for _, name, _, _ in shape(path)] == ["notes"]
    connect(path, durable=True, schema=NOTES).close()
    assert version(path) == 3


def test_a_failing_python_step_is_rolled_back_too(tmp_path):
    path = tmp_path / "n.db"
    raw(path, V1, "INSERT INTO notes (text) VALUES ('todo')")

    def half_done(db):
        db.execute("DELETE FROM notes")
        raise RuntimeError("step failed")
    with pytest.raises(RuntimeError):
        connect(path, durable=True, schema=Schema("the notes", V1, (half_done,)))
    assert version(path) == 1
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 1


def test_connections_opening_at_once_take_each_step_once(tmp_path):
    path = tmp_path / "n.db"
    connect(path, durable=True, schema=Schema("the notes", V1)).close()
    runs = []

    def counted(db):
        runs.append(1)
        db.execute("INSERT INTO notes (text) VALUES ('added once')")
    schema = Schema("the notes", V1, (counted,))
    start = threading.Barrier(4)
    errors = []

    def open_it():
        start.wait()
        try:
            connect(path, durable=True, schema=schema).close()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (errors, len(runs), version(path)) == ([], 1, 2)


def test_statements_split_on_semicolons_that_end_a_statement():
    assert statements("SELECT 'a;b'; -- c;d\nSELECT 2;;  \n") == [
        "SELECT 'a;b';", " -- c;d\nSELECT 2;"]
    assert statements("SELECT 1") == ["SELECT 1"]


# --- a file of a newer release

def test_a_file_of_a_newer_release_is_refused_and_left_as_it_was(tmp_path):
    path = tmp_path / "n.db"
    connect(path, durable=True, schema=NOTES).close()
    raw(path, "PRAGMA user_version = 4; CREATE TABLE later (x); PRAGMA journal_mode=DELETE;")
    before = path.read_bytes()
    with pytest.raises(SchemaTooNew) as caught:
        connect(path, durable=True, schema=NOTES)
    refused = caught.value
    assert isinstance(refused, StartRefused) and refused.code == "schema_too_new"
    assert str(refused) == (
        f"{path}: the notes is at schema version 4, newer than this Scanbridge knows (3): "
        "it was written by a newer release and is left untouched; install that release "
        "again (a downgrade would lose its data)")
    assert (refused.found, refused.known) == (4, 3)
    assert path.read_bytes() == before  # not even the journal mode was set
    assert not (tmp_path / "n.db-wal").exists()


# --- the real databases

def test_the_buffer_index_the_upload_queue_and_the_job_tables_carry_their_version(tmp_path):
    store = Store(tmp_path / "buffer", 1 << 30)
    store.close()
    UploadJobs(tmp_path / "upload").close()
    ScanJobs(tmp_path / "scanner").close()
    assert version(tmp_path / "buffer" / "index.sqlite") == BUFFER.version == 1
    assert version(tmp_path / "upload" / "jobs.db") == UPLOADS.version == 1
    assert version(tmp_path / "scanner" / "jobs.db") == ScanJobs.schema.version == 1


@pytest.mark.parametrize("make, name", [
    (lambda folder: Store(folder, 1 << 30), "index.sqlite"),
    (UploadJobs, "jobs.db"),
    (ScanJobs, "jobs.db"),
])
def test_a_store_of_a_newer_release_is_refused(tmp_path, make, name):
    made = make(tmp_path)
    made.close()
    raw(tmp_path / name, "PRAGMA user_version = 2")
    with pytest.raises(SchemaTooNew, match="schema version 2, newer than this Scanbridge "
                                           r"knows \(1\)"):
        make(tmp_path)


def test_stored_version_reads_without_making_or_changing_a_file(tmp_path):
    path = tmp_path / "n.db"
    assert stored_version(path) is None and not path.exists()
    connect(path, durable=True, schema=NOTES).close()  # a WAL file, closed: no -wal left
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert list(before) == ["n.db"]
    assert stored_version(path) == 3
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    db = connect(path, durable=True)  # open, as the running service has it
    db.execute("PRAGMA user_version = 5")  # in the write-ahead log only, for now
    assert (tmp_path / "n.db-wal").stat().st_size and stored_version(path) == 5
    db.close()
