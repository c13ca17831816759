"""Durable storage of the buffer: page files in ``cache/buffer/`` indexed in SQLite.

Layout::

    cache/buffer/index.sqlite      sessions, images (order, tags), versions (edit history)
    cache/buffer/files/ab/<name>   one file per stored version's pixels, never rewritten
    cache/buffer/derived/<name>.*  encodings and thumbnails made on demand (a cache)

``Store`` is the index, here, on top of the files (``pagefiles.PageFiles``, its base).

The rules that make ``kill -9`` harmless: a file is written to a temp name, fsynced and
renamed before the row naming it is committed (``synchronous=FULL``); rows are removed
before their files. So a crash can leave a file no row names (removed by ``recover()`` at
start-up) but never a row whose file is missing or half written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from broker.protocol import Error
from common.sqlite import Schema, connect

from .imaging import describe_mode
from .pagefiles import PageFiles, new_id

# Version 1 is what 0.1.0 wrote (without a version stamp); a change is a step appended to
# ``migrations`` (common/sqlite.py), never an edit of these lines.
SCHEMA = Schema("the buffer's index", """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    used REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    created REAL NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    tags TEXT NOT NULL DEFAULT '[]',
    meta TEXT NOT NULL DEFAULT '{}',
    key TEXT
);
CREATE INDEX IF NOT EXISTS images_order ON images(session, position);
CREATE UNIQUE INDEX IF NOT EXISTS images_key ON images(session, key) WHERE key IS NOT NULL;
CREATE TABLE IF NOT EXISTS versions (
    image TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    file TEXT NOT NULL,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    mode TEXT NOT NULL,
    dpi_x REAL NOT NULL,
    dpi_y REAL NOT NULL,
    bytes INTEGER NOT NULL,
    edit TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (image, seq)
);
CREATE INDEX IF NOT EXISTS versions_file ON versions(file);
""")

# The newest version of every image of a session, in page order.
CURRENT = """
SELECT i.id, i.session, i.position, i.created, i.source, i.tags, i.meta, i.key,
       v.seq, v.file, v.format, v.width, v.height, v.mode, v.dpi_x, v.dpi_y, v.bytes
FROM images i JOIN versions v ON v.image = i.id
 AND v.seq = (SELECT max(seq) FROM versions WHERE image = i.id)
"""


class Store(PageFiles):
    """The index and the files; safe to use from several threads."""

    def __init__(self, root: Path, disk_limit: int):
        super().__init__(root, disk_limit)
        self.index = root / "index.sqlite"
        self._local = threading.local()
        self.db()  # made, or brought to SCHEMA's version, now: a refusal stops the start

    # --- SQLite

    def db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # durable: a commit survives a power cut too; a connection per thread
            db = connect(self.index, durable=True, shared=False, foreign_keys=True,
                         schema=SCHEMA)
            self._local.db = db
        return db

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (taken at once, so concurrent writers queue up)."""
        db = self.db()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        except sqlite3.OperationalError as exc:
            if "full" in str(exc):  # SQLITE_FULL: the disk, not the index, is the problem
                raise Error("disk_full", "the disk is full; the index was not changed") from None
            raise

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def integrity(self) -> str:
        return self.db().execute("PRAGMA integrity_check").fetchone()[0]

    def unreferenced(self, names: list[str]) -> list[str]:
        db = self.db()
        return [n for n in names
                if db.execute("SELECT 1 FROM versions WHERE file = ?", (n,)).fetchone() is None]

    def recover(self) -> dict:
        """At start-up: remove temp files and files no row names; count what is on disk."""
        referenced = {row[0] for row in self.db().execute("SELECT DISTINCT file FROM versions")}
        return self.recover_files(referenced)

    # --- sessions

    def open_session(self, session: str | None, meta: dict | None) -> tuple[dict, bool]:
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT * FROM sessions WHERE id = ?", (session,)).fetchone() \
                if session else None
            if row is not None:
                db.execute("UPDATE sessions SET used = ? WHERE id = ?", (now, session))
                if meta is not None:
                    db.execute("UPDATE sessions SET meta = ? WHERE id = ?",
                               (json.dumps(meta), session))
                created = False
            else:
                session = session or new_id(16)
                db.execute("INSERT INTO sessions (id, created, used, meta) VALUES (?,?,?,?)",
                           (session, now, now, json.dumps(meta or {})))
                created = True
        return self.session(session), created

    def session(self, session: str) -> dict:
        row = self.db().execute(
            "SELECT s.*, (SELECT count(*) FROM images WHERE session = s.id) AS images "
            "FROM sessions s WHERE s.id = ?", (session,)).fetchone()
        if row is None:
            raise Error("not_found", f"no session {session!r} (closed or expired)")
        return {"session": row["id"], "created": row["created"], "used": row["used"],
                "images": row["images"], "meta": json.loads(row["meta"])}

    def sessions(self) -> list[dict]:
        rows = self.db().execute("SELECT id FROM sessions ORDER BY created").fetchall()
        return [self.session(row[0]) for row in rows]

    def touch(self, session: str, every: float = 30.0) -> None:
        """Mark the session used (written at most every ``every`` seconds)."""
        now = time.time()
        db = self.db()
        row = db.execute("SELECT used FROM sessions WHERE id = ?", (session,)).fetchone()
        if row is None:
            raise Error("not_found", f"no session {session!r} (closed or expired)")
        if now - row[0] > every:
            with self.transaction() as db:
                db.execute("UPDATE sessions SET used = ? WHERE id = ?", (now, session))

    def close_session(self, session: str) -> list[str]:
        """Remove the session, its images and their files; returns the image ids."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session,)).fetchone() is None:
                raise Error("not_found", f"no session {session!r} (closed or expired)")
            ids = [r[0] for r in db.execute("SELECT id FROM images WHERE session = ? "
                                            "ORDER BY position", (session,))]
            files = [r[0] for r in db.execute(
                "SELECT DISTINCT v.file FROM versions v JOIN images i ON i.id = v.image "
                "WHERE i.session = ?", (session,))]
            db.execute("DELETE FROM sessions WHERE id = ?", (session,))
        self.remove_files(self.unreferenced(files))
        return ids

    def expired(self, max_idle: float) -> list[str]:
        cutoff = time.time() - max_idle
        return [r[0] for r in self.db().execute("SELECT id FROM sessions WHERE used < ?",
                                                (cutoff,))]

    # --- images

    def images(self, session: str) -> list[sqlite3.Row]:
        return self.db().execute(CURRENT + " WHERE i.session = ? ORDER BY i.position",
                                 (session,)).fetchall()

    def image(self, session: str, image: str) -> sqlite3.Row:
        row = self.db().execute(CURRENT + " WHERE i.session = ? AND i.id = ?",
                                (session, image)).fetchone()
        if row is None:
            self.session(session)  # a missing session says so first
            raise Error("not_found", f"no image {image!r} in session {session}")
        return row

    def by_key(self, session: str, key: str) -> sqlite3.Row | None:
        return self.db().execute(CURRENT + " WHERE i.session = ? AND i.key = ?",
                                 (session, key)).fetchone()

    def history(self, image: str) -> list[dict]:
        rows = self.db().execute("SELECT seq, edit, created, width, height, mode FROM versions "
                                 "WHERE image = ? ORDER BY seq", (image,)).fetchall()
        return [{"seq": r["seq"], "edit": json.loads(r["edit"]) if r["edit"] else None,
                 "time": r["created"], "width": r["width"], "height": r["height"],
                 "mode": r["mode"]} for r in rows]

    def add(self, session: str, pages: list[dict], index: int | None) -> list[str]:
        """Index new images (their files are already durable) at ``index`` (None = end).

        Each page: ``{file, format, width, height, mode, dpi, bytes, source, tags, meta,
        key}``. All or nothing: one transaction.
        """
        now = time.time()
        ids = []
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", (session,)).fetchone() is None:
                raise Error("not_found", f"no session {session!r} (closed or expired)")
            count = db.execute("SELECT count(*) FROM images WHERE session = ?",
                               (session,)).fetchone()[0]
            at = count if index is None or index > count else max(0, index)
            if at < count:
                db.execute("UPDATE images SET position = position + ? WHERE session = ? "
                           "AND position >= ?", (len(pages), session, at))
            for offset, page in enumerate(pages):
                image = new_id()
                db.execute("INSERT INTO images (id, session, position, created, source, tags, "
                           "meta, key) VALUES (?,?,?,?,?,?,?,?)",
                           (image, session, at + offset, now, page.get("source", ""),
                            json.dumps(page.get("tags", [])), json.dumps(page.get("meta", {})),
                            page.get("key")))
                self._insert_version(db, image, 0, page, None, now)
                ids.append(image)
            db.execute("UPDATE sessions SET used = ? WHERE id = ?", (now, session))
        return ids

    @staticmethod
    def _insert_version(db, image: str, seq: int, page: dict, edit: Any, now: float) -> None:
        db.execute("INSERT INTO versions (image, seq, file, format, width, height, mode, "
                   "dpi_x, dpi_y, bytes, edit, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (image, seq, page["file"], page["format"], page["width"], page["height"],
                    page["mode"], page["dpi"][0], page["dpi"][1], page["bytes"],
                    json.dumps(edit) if edit is not None else None, now))

    def add_version(self, session: str, image: str, base_seq: int, page: dict,
                    edit: Any) -> None:
        """Record an edit's result on top of version ``base_seq`` (else ``conflict``)."""
        with self.transaction() as db:
            current = db.execute("SELECT max(seq) FROM versions v JOIN images i ON "
                                 "i.id = v.image WHERE i.id = ? AND i.session = ?",
                                 (image, session)).fetchone()[0]
            if current is None:
                raise Error("not_found", f"no image {image!r} in session {session}")
            if current != base_seq:
                raise Error("conflict", f"image {image} changed while it was being edited")
            self._insert_version(db, image, base_seq + 1, page, edit, time.time())

    def undo(self, session: str, image: str) -> list[str]:
        """Drop the newest version; returns files that became unreferenced."""
        with self.transaction() as db:
            row = self.image(session, image)
            if row["seq"] == 0:
                raise Error("conflict", f"image {image} has no edit to undo")
            db.execute("DELETE FROM versions WHERE image = ? AND seq = ?", (image, row["seq"]))
        return self.unreferenced([row["file"]])

    def delete(self, session: str, images: list[str]) -> list[str]:
        """Remove images; returns files that became unreferenced."""
        with self.transaction() as db:
            for image in images:
                self.image(session, image)
            files = []
            for image in images:
                files += [r[0] for r in db.execute("SELECT file FROM versions WHERE image = ?",
                                                   (image,))]
                db.execute("DELETE FROM images WHERE id = ?", (image,))
            self._renumber(db, session)
        return self.unreferenced(sorted(set(files)))

    def reorder(self, session: str, order: list[str]) -> None:
        with self.transaction() as db:
            current = [r[0] for r in db.execute("SELECT id FROM images WHERE session = ? "
                                                "ORDER BY position", (session,))]
            if sorted(order) != sorted(current):
                self.session(session)
                raise Error("invalid_argument", "order must list every image of the session "
                                                f"exactly once ({len(current)} images)")
            for position, image in enumerate(order):
                db.execute("UPDATE images SET position = ? WHERE id = ?", (position, image))

    def _renumber(self, db: sqlite3.Connection, session: str) -> None:
        ids = [r[0] for r in db.execute("SELECT id FROM images WHERE session = ? "
                                        "ORDER BY position", (session,))]
        for position, image in enumerate(ids):
            db.execute("UPDATE images SET position = ? WHERE id = ?", (position, image))

    def set_tags(self, session: str, image: str, tags: list[str]) -> None:
        with self.transaction() as db:
            self.image(session, image)
            db.execute("UPDATE images SET tags = ? WHERE id = ?", (json.dumps(tags), image))


def describe(row: sqlite3.Row) -> dict:
    """What a page shows of an image: the newest version's facts."""
    kind, bits = describe_mode(row["mode"])
    return {"id": row["id"], "index": row["position"], "width": row["width"],
            "height": row["height"], "dpi": [row["dpi_x"], row["dpi_y"]], "mode": kind,
            "bit_depth": bits, "pixel_mode": row["mode"], "format": row["format"].lower(),
            "bytes": row["bytes"], "source": row["source"], "created": row["created"],
            "tags": json.loads(row["tags"]), "edits": row["seq"],
            "meta": json.loads(row["meta"]),
            "etag": f'"{row["file"].split(".")[0]}-{row["seq"]}"'}
