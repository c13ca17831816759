"""The buffer actor: per-session pages on disk, edited and saved on request."""

from __future__ import annotations

import ctypes
import io
import os
import re
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, Callable

from PIL import Image

from broker.actor import Actor, Result, operation
from broker.procutil import atomic_write_with
from broker.protocol import SESSION_CLOSED, SESSION_OPENED, Error

from . import documents, imaging, importing, textlayer
from .decoded import DecodedCache
from .store import DISK_ERRORS, Store, describe, new_id

THUMBNAIL_SIZE = 200
OUTPUT_KEEP = 900.0  # seconds a saved document stays in cache/buffer/out/
STAGED_KEEP = 600.0  # seconds a staged page waits for its commit before its file goes
SESSION_ID = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
CHANGED = "buffer.changed"


def release_freed_memory() -> None:
    """Make glibc give large freed blocks (decoded pages) back to the system.

    By default each thread keeps its own arena and the mmap threshold grows with use, so
    RSS stays at its peak long after pages were dropped. Measured in bench/buffer.py.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD: blocks over 1 MB are mmapped
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


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


def _ids(value: Any, name: str = "images") -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Error("invalid_argument", f"{name} must be a list of image ids")
    return value


def _box(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise Error("invalid_argument", f"{name} must be a whole number 1..65535")
    return value


def _quality(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise Error("invalid_argument", "quality must be a whole number 1..100")
    return value


def _tags(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, str) and 0 < len(t) <= 64
                                              for t in value):
        raise Error("invalid_argument", "tags must be a list of strings of 1..64 characters")
    return list(dict.fromkeys(value))


class Buffer(Actor):
    service = "buffer"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.capacity = cfg.buffer.threads
        # Expiry is checked a few times per expiry period, at least every 30 s.
        self.tick_interval = min(30.0, max(0.5, cfg.buffer.session_expiry / 4))
        # "Last used" is written at most this often (a write per read would be wasteful),
        # well inside the expiry so a session in use never looks idle.
        self.touch_every = min(30.0, cfg.buffer.session_expiry / 8)
        self.pixel_limit = cfg.limits.max_image_megapixels * 1_000_000
        self.limits = importing.Limits(self.pixel_limit, cfg.limits.max_import_mb << 20,
                                       cfg.limits.max_pdf_pages)
        self.png_level = cfg.buffer.png_compression
        self.decoded = DecodedCache(cfg.buffer.buffer_memory_limit << 20)
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()
        self.store: Store | None = None
        # Staged pages: durable files not listed yet, token -> (session, page, when).
        self.staged: dict[str, tuple[str, dict, float]] = {}
        self.staged_lock = threading.Lock()

    def on_start(self) -> None:
        release_freed_memory()
        Image.MAX_IMAGE_PIXELS = self.pixel_limit
        self.store = Store(self.home.buffer, self.cfg.buffer.disk_cache_limit << 20)
        self.outputs = self.store.root / "out"
        self.outputs.mkdir(exist_ok=True)
        found = self.store.recover()
        self.log.info("buffer recovered", **found)
        self.on_tick()

    def on_stop(self) -> None:
        if self.store is not None:
            self.store.close()

    def on_tick(self) -> None:
        with self.staged_lock:
            stale = [t for t, (_, _, when) in self.staged.items()
                     if when < time.monotonic() - STAGED_KEEP]
            pages = [self.staged.pop(t)[1] for t in stale]
        self.store.remove_files([page["file"] for page in pages])
        for path in self.outputs.iterdir():
            try:
                if path.stat().st_mtime < time.time() - OUTPUT_KEEP:
                    path.unlink()
            except FileNotFoundError:
                pass
        for session in self.store.expired(self.cfg.buffer.session_expiry):
            ids = self.store.close_session(session)
            self.log.info("session expired", session=session, images=len(ids))
            self._closed(session, ids, "expired")

    # --- helpers

    def _changed(self, session: str, action: str, ids: list[str], **extra: Any) -> None:
        self.publish(CHANGED, {"session": session, "action": action, "ids": ids, **extra})

    def _closed(self, session: str, ids: list[str], reason: str) -> None:
        self._changed(session, "remove", ids, closed=True)
        self.publish(SESSION_CLOSED, {"session": session, "reason": reason})

    def _lock(self, image: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks[image]

    def _touch(self, session: Any) -> None:
        if not isinstance(session, str):
            raise Error("invalid_argument", "session must be a string")
        self.store.touch(session, self.touch_every)

    def _row(self, session: Any, image: Any):
        if not isinstance(session, str) or not isinstance(image, str):
            raise Error("invalid_argument", "session and image must be strings")
        self._touch(session)
        return self.store.image(session, image)

    def _decode(self, row) -> Image.Image:
        """The newest version's pixels (memory first, else the file)."""
        key = row["file"]
        image = self.decoded.get(key)
        if image is None:
            image = Image.open(self.store.path(key))
            image = imaging.upright(imaging.load_checked(image, f"stored page {key}"))
            self.decoded.put(key, image)
        return image

    def _write_pixels(self, image: Image.Image, dpi: tuple[float, float]) -> dict:
        """Store pixels losslessly: PNG; TIFF LZW for modes PNG cannot hold; uncompressed
        TIFF when ``png_compression = 0`` (the fastest: a page is written as it is)."""
        raw = self.png_level == 0 and image.mode in imaging.KEEPS["TIFF"]
        fmt = "PNG" if image.mode in imaging.KEEPS["PNG"] and not raw else "TIFF"
        name, size = self.store.write(
            imaging.EXTENSION[fmt],
            lambda out: imaging.encode(image, fmt, out, dpi, png_level=self.png_level,
                                       shared=False,
                                       tiff_compression="raw" if raw else None))
        self.decoded.put(name, image)
        return {"file": name, "format": fmt, "width": image.width, "height": image.height,
                "mode": image.mode, "dpi": dpi, "bytes": size}

    def _write_kept(self, data: bytes, fmt: str, image: Image.Image,
                    dpi: tuple[float, float]) -> dict:
        name, size = self.store.write(imaging.KEPT_AS_IS[fmt], lambda out: out.write(data))
        self.decoded.put(name, image)
        return {"file": name, "format": fmt, "width": image.width, "height": image.height,
                "mode": image.mode, "dpi": dpi, "bytes": size}

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

    def _selection(self, session: str, images: Any, order: str = "given") -> list:
        self._touch(session)
        if order not in ("given", "buffer"):
            raise Error("invalid_argument", "order must be given or buffer")
        if images is None:
            return self.store.images(session)
        rows = [self.store.image(session, image) for image in _ids(images)]
        if order == "buffer":
            rows.sort(key=lambda row: row["position"])
        return rows

    def _derived(self, name: str, make: Callable[[io.BufferedIOBase], Any]) -> bytes:
        """An encoding from the derived cache, made (and cached when there is room)."""
        path = self.store.derived_path(name)
        if path is None:
            try:
                path = self.store.put_derived(name, make)
            except Error as exc:
                if exc.code != "disk_full":
                    raise
                out = io.BytesIO()  # no room to cache it: serve it all the same
                make(out)
                return out.getvalue()
        return path.read_bytes()

    # --- sessions

    @operation
    def open_session(self, session: str | None = None, meta: dict | None = None) -> dict:
        """Open a session (or reopen it by id: its pages are still there)."""
        if session is not None and (not 8 <= len(session) <= 64
                                    or set(session) - set(SESSION_ID)):
            raise Error("invalid_argument", "session must be 8..64 letters, digits, _ or -")
        info, created = self.store.open_session(session, meta)
        self.publish(SESSION_OPENED, {"session": info["session"], "new": created})
        return {**info, "new": created, "expires_after": self.cfg.buffer.session_expiry}

    @operation
    def close_session(self, session: str) -> dict:
        """Close a session: its images and files are removed."""
        ids = self.store.close_session(session)
        self._closed(session, ids, "closed")
        return {"session": session, "removed": len(ids)}

    @operation
    def session(self, session: str) -> dict:
        """One session: created, last used, image count, meta."""
        return self.store.session(session)

    @operation
    def sessions(self) -> list:
        """All open sessions."""
        return self.store.sessions()

    @operation
    def status(self) -> dict:
        """Memory and disk use, session count."""
        return {"memory": self.decoded.stats(), "disk": self.store.disk_usage(),
                "sessions": len(self.store.sessions())}

    # --- adding pages

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
        return {**stored, "source": str(source)[:200], "tags": _tags(tags),
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
        tag_list = _tags(tags)
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

    # --- reading

    @operation(name="list")
    def list_images(self, session: str, tags: Any = None, match: str = "any") -> list:
        """The session's images in order; ``tags`` filters (``match`` any|all)."""
        self._touch(session)
        wanted = set(_tags(tags))
        if match not in ("any", "all"):
            raise Error("invalid_argument", "match must be any or all")
        found = [describe(row) for row in self.store.images(session)]
        if not wanted:
            return found
        test = wanted.issubset if match == "all" else (lambda t: bool(wanted & t))
        return [info for info in found if test(set(info["tags"]))]

    @operation
    def info(self, session: str, image: str) -> dict:
        """One image with its edit history."""
        row = self._row(session, image)
        return {**describe(row), "history": self.store.history(image)}

    @operation
    def locate(self, session: str, image: str) -> dict:
        """Where the stored file is (for serving it as it is)."""
        row = self._row(session, image)
        return {"path": str(self.store.path(row["file"])), "format": row["format"].lower(),
                "media_type": imaging.MEDIA_TYPE[row["format"]], "bytes": row["bytes"],
                "etag": describe(row)["etag"]}

    @operation
    def get(self, session: str, image: str, format: str | None = None, quality: int = 85,
            width: int | None = None, height: int | None = None) -> Result:
        """The image as jpeg|png|tiff|bmp|gif, optionally shrunk to fit width x height."""
        row = self._row(session, image)
        fmt = imaging.OUTPUT.get(format.lower() if isinstance(format, str) else "",
                                 row["format"] if format is None else None)
        if fmt is None:
            raise Error("invalid_argument", f"format {format!r} is not one of "
                                            "jpeg, png, tiff, bmp, gif")
        quality, width, height = _quality(quality), _box(width, "width"), _box(height, "height")
        fits = (width or row["width"]) >= row["width"] and (height or row["height"]) >= row[
            "height"]
        if fmt == row["format"] and fits:
            data = self.store.path(row["file"]).read_bytes()
        else:
            stem = row["file"].split(".")[0]
            dpi = (row["dpi_x"], row["dpi_y"])
            name = (f"{stem}.{fmt.lower()}.{width or 0}x{height or 0}.q{quality}."
                    f"{round(dpi[0])}x{round(dpi[1])}.{imaging.EXTENSION[fmt]}")

            def make(out):
                shown = imaging.fit(self._decode(row), width, height)
                scale = shown.width / row["width"]
                imaging.encode(shown, fmt, out, (dpi[0] * scale, dpi[1] * scale), quality)
            data = self._derived(name, make)
        return Result({"id": image, "format": fmt.lower(), "media_type": imaging.MEDIA_TYPE[fmt],
                       "bytes": len(data), "etag": describe(row)["etag"]}, [data])

    @operation
    def thumbnail(self, session: str, image: str, size: int = THUMBNAIL_SIZE) -> Result:
        """A JPEG that fits in size x size (made once, then served from the cache)."""
        row = self._row(session, image)
        size = _box(size, "size")
        name = f"{row['file'].split('.')[0]}.thumb{size}.jpg"

        def make(out):
            source = self._decoded_or_draft(row, size)
            imaging.encode(imaging.fit(source, size, size), "JPEG", out, (72, 72), 80)
        data = self._derived(name, make)
        return Result({"id": image, "format": "jpeg", "media_type": "image/jpeg",
                       "bytes": len(data), "etag": describe(row)["etag"]}, [data])

    def _decoded_or_draft(self, row, size: int) -> Image.Image:
        cached = self.decoded.get(row["file"])
        if cached is not None:
            return cached
        draft = imaging.thumbnail_source(str(self.store.path(row["file"])), size)
        return imaging.upright(imaging.load_checked(draft, "stored page"))

    @operation
    def blank(self, session: str, images: Any = None, threshold: float | None = None) -> list:
        """Which pages are blank: ink percent under ``threshold`` (ini blank_threshold)."""
        limit = self.cfg.buffer.blank_threshold if threshold is None else threshold
        if not 0 <= limit <= 100:
            raise Error("invalid_argument", "threshold must be a percentage 0..100")
        results = []
        for row in self._selection(session, images):
            ink = imaging.ink_percent(self._decode(row))
            results.append({"id": row["id"], "blank": ink < limit, "ink": ink})
        return results

    # --- editing

    @operation
    def edit(self, session: str, ops: Any, image: str | None = None,
             images: Any = None) -> list:
        """Apply ``ops`` ([{op: rotate, angle: 90}, ...]) to images as one undoable edit."""
        imaging.check_ops(ops)
        targets = _ids(images) if images is not None else _ids(image, "image")
        results = []
        for target in targets:
            with self._lock(target):
                row = self._row(session, target)
                base = self._decode(row)
                edited, dpi = imaging.apply(base, (row["dpi_x"], row["dpi_y"]), ops,
                                            self.pixel_limit)
                if edited is base:  # only the DPI changed: keep sharing the file
                    page = {"file": row["file"], "format": row["format"], "width": row["width"],
                            "height": row["height"], "mode": row["mode"], "dpi": dpi,
                            "bytes": row["bytes"]}
                else:
                    page = self._write_pixels(edited, dpi)
                try:
                    self.store.add_version(session, target, row["seq"], page, ops)
                except BaseException:
                    if page["file"] != row["file"]:
                        self.store.remove_files([page["file"]])
                    raise
            results.append(describe(self.store.image(session, target)))
        self._changed(session, "modify", targets)
        return results

    @operation
    def undo(self, session: str, image: str) -> dict:
        """Undo the last edit of an image."""
        with self._lock(image):
            self._row(session, image)
            self.store.remove_files(self.store.undo(session, image))
        self._changed(session, "modify", [image])
        return describe(self.store.image(session, image))

    @operation
    def delete(self, session: str, images: Any) -> dict:
        """Delete images (their files go too)."""
        ids = _ids(images)
        self._touch(session)
        self.store.remove_files(self.store.delete(session, ids))
        with self._locks_lock:
            for image in ids:
                self._locks.pop(image, None)
        self._changed(session, "remove", ids)
        return {"deleted": ids}

    @operation
    def reorder(self, session: str, order: Any) -> list:
        """Set the page order: ``order`` lists every image id once."""
        self._touch(session)
        self.store.reorder(session, _ids(order, "order"))
        self._changed(session, "reorder", _ids(order, "order"))
        return [row["id"] for row in self.store.images(session)]

    @operation
    def move(self, session: str, images: Any,
             index: Annotated[int, "a whole number >= 0"]) -> list:
        """Move images (in the order given) so the first lands at ``index``."""
        moving = _ids(images)
        if index < 0:
            raise Error("invalid_argument", "index must be a whole number >= 0")
        self._touch(session)
        current = [row["id"] for row in self.store.images(session)]
        missing = [image for image in moving if image not in current]
        if missing or len(set(moving)) != len(moving):
            raise Error("not_found" if missing else "invalid_argument",
                        f"cannot move {missing or 'an image twice'} in session {session}")
        rest = [image for image in current if image not in set(moving)]
        order = rest[:index] + moving + rest[index:]
        self.store.reorder(session, order)
        self._changed(session, "reorder", order)
        return order

    @operation
    def tag(self, session: str, images: Any, add: Any = None, remove: Any = None) -> list:
        """Add and/or remove tags on images."""
        adding, removing = _tags(add), set(_tags(remove))
        results = []
        for image in _ids(images):
            with self._lock(image):
                row = self._row(session, image)
                tags = [t for t in describe(row)["tags"] if t not in removing]
                tags += [t for t in adding if t not in tags]
                self.store.set_tags(session, image, tags)
            results.append(describe(self.store.image(session, image)))
        self._changed(session, "modify", _ids(images))
        return results

    # --- documents

    @operation
    def save(self, session: str, images: Any = None, format: str = "pdf", order: str = "given",
             title: str = "", author: str = "", subject: str = "", keywords: Any = None,
             pdfa: bool = False, compression: str = "auto", quality: int = 85,
             tiff_compression: str = "lzw", output: str = "blob",
             dest: str | None = None, text_layers: Any = None) -> Result:
        """Save images as one PDF or TIFF, or each as jpeg|png|bmp|gif|tiff (one blob each).

        A PDF or TIFF can go to a file instead of a blob: ``output: "file"`` writes it under
        cache/buffer/out/ (removed after OUTPUT_KEEP s; for the gateway to stream), ``dest``
        durably under upload/ (for the uploader). Either way the result has its ``path``.
        ``text_layers`` (PDF only, one per page) makes it searchable: see textlayer.py.
        """
        for name, value in (("title", title), ("author", author), ("subject", subject)):
            if len(value) > 1000:
                raise Error("invalid_argument", f"{name} must be text of up to 1000 characters")
        try:
            keywords = _tags(keywords)
        except Error:
            raise Error("invalid_argument", "keywords must be a list of strings of 1..64 "
                        "characters") from None
        rows = self._selection(session, images, order)
        if not rows:
            raise Error("conflict", "there are no images to save")
        quality = _quality(quality)
        kind = {"tif": "tiff", "jpg": "jpeg"}.get(str(format).lower(), str(format).lower())
        if kind not in ("pdf", "tiff") and kind not in imaging.OUTPUT:
            raise Error("invalid_argument", f"format {format!r} is not one of pdf, tiff, "
                                            "jpeg, png, bmp, gif")
        if output not in ("blob", "file"):
            raise Error("invalid_argument", "output must be blob or file")
        ids = [row["id"] for row in rows]
        if kind not in ("pdf", "tiff"):
            if dest is not None or output == "file":
                raise Error("invalid_argument", "a file output takes one document (pdf or tiff)")
            blobs = [self.get(session, image, kind, quality).blobs[0] for image in ids]
            fmt = imaging.OUTPUT[kind]
            return Result({"format": fmt.lower(), "media_type": imaging.MEDIA_TYPE[fmt],
                           "pages": len(blobs), "bytes": [len(b) for b in blobs],
                           "images": ids}, blobs)
        pages = [self._page(row) for row in rows]
        progress = self._progress(session, len(pages))
        if text_layers is not None:
            if kind != "pdf":
                raise Error("invalid_argument", "text_layers are for PDF documents")
            text_layers = textlayer.check_layers(text_layers, len(pages))

        def write(out) -> None:
            if kind == "pdf":
                images_only = io.BytesIO() if text_layers is not None else out
                documents.write_pdf(pages, images_only, title=title, author=author,
                                    subject=subject, keywords=keywords, pdfa=pdfa,
                                    compression=compression, quality=quality,
                                    icc_folder=self.store.root, progress=progress)
                if text_layers is not None:
                    textlayer.add(images_only.getvalue(), text_layers, out)
            else:
                documents.write_tiff(pages, out, compression=tiff_compression,
                                     quality=quality, progress=progress)
        meta = {"format": kind, "media_type": "application/pdf" if kind == "pdf" else
                "image/tiff", "pages": len(pages), "images": ids}
        target = self._target(dest, output, kind)
        if target is None:
            out = io.BytesIO()
            write(out)
            return Result({**meta, "bytes": out.tell()}, [out.getbuffer()])
        try:
            size = atomic_write_with(target, write, 0o600, durable=dest is not None)
        except OSError as exc:
            if exc.errno in DISK_ERRORS:
                raise Error("disk_full", f"the disk is full ({exc.strerror})") from None
            raise
        return Result({**meta, "bytes": size, "path": str(target)})

    def _target(self, dest: Any, output: str, kind: str) -> Path | None:
        if dest is not None:
            target = (self.home.upload / str(dest)).resolve()
            if self.home.upload.resolve() not in target.parents:
                raise Error("invalid_argument", "dest must be a file name inside upload/")
            target.parent.mkdir(parents=True, exist_ok=True)
            return target
        if output == "file":
            return self.outputs / f"{new_id(16)}.{'pdf' if kind == 'pdf' else 'tif'}"
        return None

    def _page(self, row) -> documents.Page:
        return documents.Page(self.store.path(row["file"]), row["format"], row["mode"],
                              (row["dpi_x"], row["dpi_y"]), lambda: self._decode(row))

    def _progress(self, session: str, total: int) -> Callable[[int], None]:
        def report(done: int) -> None:
            if total > 1:
                self.publish("buffer.save", {"session": session, "done": done, "total": total})
        return report
