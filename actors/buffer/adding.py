"""The buffer's operations that add pages: ``add`` (one page), ``stage`` and ``commit`` (an
add in two halves, so a scanner can compress pages in parallel and list them in scan order)
and ``import`` (every page of a file). A page is listed only once its file is durable.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from broker.actor import operation
from broker.protocol import Error

from . import checks, imaging, importing
from .core import BufferCore
from .pagefiles import new_id
from .store import describe

STAGED_KEEP = 600.0  # seconds a staged page waits for its commit before its file goes


def _one_blob(blobs: Any, op: str, what: str) -> bytes:
    if len(blobs) != 1:
        raise Error("invalid_argument", f"{op} takes exactly one blob ({what})")
    blob = blobs[0]
    return bytes(blob.buffer if hasattr(blob, "buffer") else blob)


def _incoming(folder: Path, name: Any) -> bytes:
    """A file the gateway spooled into ``folder``: a name there, never a path."""
    if not isinstance(name, str) or not re.fullmatch(r"import-[a-z0-9_]{1,64}", name):
        raise Error("invalid_argument", "incoming must name a file the gateway spooled")
    try:
        handle = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise Error("not_found", f"no spooled file {name} (the gateway gave up on it)") \
            from None
    except OSError as exc:  # ELOOP: a symbolic link, which the gateway never makes
        raise Error("invalid_argument", f"the spooled file {name} cannot be read: "
                    f"{exc.strerror}") from None
    with os.fdopen(handle, "rb") as spooled:
        return spooled.read()


class AddOperations(BufferCore):
    @operation
    def add(self, session: str, blobs=(), format: str | None = None, width: int | None = None,
            height: int | None = None, mode: str | None = None, dpi: Any = None,
            source: str = "", tags: Any = None, meta: dict | None = None,
            index: int | None = None, key: str | None = None) -> dict:
        """Add one page: an encoded image kept as it is, or raw pixels (format=raw)."""
        self._touch(session)
        existing = self._keyed(session, key)
        if existing is not None:  # a retried add: the page is already here
            return existing
        stored = self._store_page(blobs, format, width, height, mode, dpi, "add")
        return self._commit(session, [self._new_page(stored, source, tags, meta, key)], index)[0]

    @operation
    def stage(self, session: str, blobs=(), format: str | None = None,
              width: int | None = None, height: int | None = None, mode: str | None = None,
              dpi: Any = None) -> dict:
        """First half of an add: store the page durably, unlisted; ``commit`` lists it.

        A scanner stages several pages at once (compressing them in parallel) and commits
        them one by one in scan order."""
        self._touch(session)
        stored = self._store_page(blobs, format, width, height, mode, dpi, "stage")
        token = new_id(16)
        with self.staged_lock:
            self.staged[token] = (session, stored, time.monotonic())
        return {"stage": token, **{k: stored[k] for k in ("width", "height", "mode", "bytes")}}

    @operation
    def commit(self, session: str, stage: str, source: str = "", tags: Any = None,
               meta: dict | None = None, index: int | None = None,
               key: str | None = None) -> dict:
        """Second half of an add: list a staged page (``not_found`` once it expired or
        the buffer restarted: stage it again)."""
        self._touch(session)
        with self.staged_lock:
            entry = self.staged.get(stage) if isinstance(stage, str) else None
            if entry is None or entry[0] != session:
                raise Error("not_found", f"no staged page {stage!r} (it expired, or the "
                            "buffer restarted): stage it again", stage_lost=True)
            del self.staged[stage]
        stored = entry[1]
        existing = self._keyed(session, key)
        if existing is not None:  # a retried commit: this copy of the page is not needed
            self.store.remove_files([stored["file"]])
            return existing
        return self._commit(session, [self._new_page(stored, source, tags, meta, key)], index)[0]

    def _keyed(self, session: str, key: Any) -> dict | None:
        """The page added earlier with this key, answered as a duplicate; else None."""
        existing = None if key is None else self.store.by_key(session, str(key))
        return None if existing is None else {**describe(existing), "duplicate": True}

    @staticmethod
    def _new_page(stored: dict, source: Any, tags: Any, meta: Any, key: Any) -> dict:
        return {**stored, "source": str(source)[:200], "tags": checks.tags(tags),
                "meta": meta if isinstance(meta, dict) else {},
                "key": None if key is None else str(key)}

    def _store_page(self, blobs: Any, format: Any, width: Any, height: Any, mode: Any,
                    dpi: Any, op: str) -> dict:
        """Write one page's file durably: encoded bytes as they are, or raw pixels."""
        data = _one_blob(blobs, op, "the image")
        page_dpi = self._dpi(dpi)
        if format == "raw":
            if not isinstance(width, int) or not isinstance(height, int):
                raise Error("invalid_argument", "raw pixels need width and height")
            imaging.check_pixels(width, height, self.pixel_limit)
            image = imaging.from_raw(data, width, height, mode or "RGB")
            stored = self._write_pixels(image, page_dpi or (200.0, 200.0))
        elif format is None:
            image = importing.decode_one(data, self.pixel_limit)
            if getattr(image, "n_frames", 1) > 1:
                raise Error("invalid_argument", "this file has several pages: use import")
            page_dpi = page_dpi or imaging.dpi_of(image, 200)
            stored = self._write_kept(data, image.format, imaging.upright(image),
                                      page_dpi)
        else:
            raise Error("invalid_argument", "format is raw, or left out for an encoded file")
        return stored

    @staticmethod
    def _dpi(value: Any) -> tuple[float, float] | None:
        if value is None:
            return None
        pair = value if isinstance(value, list) and len(value) == 2 else [value, value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v <= 100000
                   for v in pair):
            raise Error("invalid_argument", "dpi must be a number 1..100000 or [x, y]")
        return float(pair[0]), float(pair[1])

    @operation(name="import")
    def import_file(self, session: str, blobs=(), password: str | None = None,
                    dpi: int | None = None, index: int | None = None,
                    source: str = "import", tags: Any = None,
                    incoming: str | None = None) -> dict:
        """Import a file: JPEG, PNG, TIFF (all pages), BMP, GIF or PDF (rasterised); the
        blob, or ``incoming``, a file the gateway spooled in cache/incoming/."""
        self._touch(session)
        data = _one_blob(blobs, "import", "the file") if incoming is None else \
            _incoming(self.home.incoming, incoming)
        render_dpi = dpi if dpi is not None else self.cfg.buffer.import_dpi
        if not 10 <= render_dpi <= 1200:
            raise Error("invalid_argument", "dpi must be a whole number 10..1200")
        tag_list = checks.tags(tags)
        written: list[dict] = []
        try:
            for page in importing.pages(data, self.limits, password=password, dpi=render_dpi):
                if page.keep is not None:
                    stored = self._write_kept(page.keep, page.format, page.image, page.dpi)
                else:
                    stored = self._write_pixels(page.image, page.dpi)
                written.append({**stored, "source": str(source)[:200], "tags": tag_list,
                                "meta": {"page": page.number, "pages": page.total}})
                if page.total > 1:
                    self.publish("buffer.import", {"session": session, "done": page.number,
                                                   "total": page.total})
                if self.call:
                    self.call.check()
        except BaseException:
            self.store.remove_files([page["file"] for page in written])
            raise
        return {"images": self._commit(session, written, index)}

    def _commit(self, session: str, pages: list[dict], index: Any) -> list[dict]:
        """Index durable files as new images; on any failure their files go again."""
        if index is not None and (isinstance(index, bool) or not isinstance(index, int)):
            raise Error("invalid_argument", "index must be a whole number")
        try:
            ids = self.store.add(session, pages, index)
        except BaseException:
            self.store.remove_files([page["file"] for page in pages])
            raise
        self._changed(session, "add", ids)
        return [describe(self.store.image(session, image)) for image in ids]

    def _forget_stale_stages(self) -> None:
        """Staged pages never committed: their files go after STAGED_KEEP."""
        with self.staged_lock:
            stale = [t for t, (_, _, when) in self.staged.items()
                     if when < time.monotonic() - STAGED_KEEP]
            pages = [self.staged.pop(t)[1] for t in stale]
        self.store.remove_files([page["file"] for page in pages])
