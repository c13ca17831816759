"""What every group of the buffer's operations shares: its state and the steps they repeat.

``BufferCore`` holds the state (the store, decoded pages, per-image locks, staged pages)
and the steps several operations take: checking a session is in use, reading a row,
decoding a page, writing pixels, publishing ``buffer.changed``. The operations themselves
are in ``sessions``, ``adding``, ``reading``, ``editing`` and ``saving``; ``buffer.Buffer``
is all of them on one ``BufferCore``.
"""

from __future__ import annotations

import io
import threading
from collections import defaultdict
from typing import Any, Callable

from PIL import Image

from broker.actor import Actor
from broker.protocol import SESSION_CLOSED, Error

from . import checks, imaging, importing
from .decoded import DecodedCache
from .store import Store

CHANGED = "buffer.changed"


class BufferCore(Actor):
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
        self.outputs = self.home.buffer / "out"  # saved documents the gateway streams
        # Staged pages: durable files not listed yet, token -> (session, page, when).
        self.staged: dict[str, tuple[str, dict, float]] = {}
        self.staged_lock = threading.Lock()

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

    def _selection(self, session: str, images: Any, order: str = "given") -> list:
        self._touch(session)
        if order not in ("given", "buffer"):
            raise Error("invalid_argument", "order must be given or buffer")
        if images is None:
            return self.store.images(session)
        rows = [self.store.image(session, image) for image in checks.ids(images)]
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
