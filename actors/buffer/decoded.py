"""Decoded pages kept in memory, least recently used dropped first.

The limit is ``buffer_memory_limit``: the sum of the decoded sizes of the images held
(Pillow keeps one byte per pixel for B/W). Everything is on disk anyway; this only saves
decoding a page again when it is edited or encoded several times in a row.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from PIL import Image

from .imaging import memory_size


class DecodedCache:
    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self._images: OrderedDict[str, tuple[Image.Image, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.held = 0
        self.hits = self.misses = 0

    def get(self, key: str) -> Image.Image | None:
        with self._lock:
            entry = self._images.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._images.move_to_end(key)
            self.hits += 1
            return entry[0]

    def put(self, key: str, image: Image.Image) -> None:
        size = memory_size(image)
        if size > self.limit // 2:  # one huge page must not push out all the others
            return
        with self._lock:
            old = self._images.pop(key, None)
            if old is not None:
                self.held -= old[1]
            self._images[key] = (image, size)
            self.held += size
            while self.held > self.limit and self._images:
                _, (_, dropped) = self._images.popitem(last=False)
                self.held -= dropped

    def forget(self, key: str) -> None:
        with self._lock:
            old = self._images.pop(key, None)
            if old is not None:
                self.held -= old[1]

    def stats(self) -> dict:
        with self._lock:
            return {"images": len(self._images), "bytes": self.held, "limit": self.limit,
                    "hits": self.hits, "misses": self.misses}
