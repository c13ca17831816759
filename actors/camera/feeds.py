"""Open cameras: one reader thread per source, however many viewers and captures.

A feed keeps only the newest frame. Viewers ask for "a frame newer than N" and get the
latest one, so a slow viewer skips frames instead of queueing them, and the camera never
waits for anyone. Viewers renew a lease with every frame they take; a feed nobody leased
for ``release_after`` seconds, and that no capture holds, is closed, which frees the device.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from broker.protocol import Error

from .readers import jpeg_size, open_reader


class Feed:
    def __init__(self, source: dict, size: tuple[int, int] | None, quality: int, log):
        self.source = source
        self.asked_size = size
        self.quality = quality
        self.log = log
        self.cond = threading.Condition()
        self.seq = 0
        self.jpeg: bytes | None = None
        self.size: tuple[int, int] | None = None
        self.fps: float | None = None
        self.measured: float | None = None
        self.last_frame = 0.0
        self.error: Error | None = None
        self.ended = False
        self.stopping = False
        self.leases: dict[str, float] = {}  # viewer -> monotonic time of its last frame
        self.holds = 0  # captures running on it
        self.idle_since = time.monotonic()
        self.reader: Any = None
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"feed-{source['id']}")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.reader = open_reader(self.source, self.asked_size, self.quality)
            self.fps = getattr(self.reader, "fps", None)
            self.log.info("camera opened", source=self.source["id"], kind=self.source["kind"])
            for jpeg in self.reader.frames():
                size = self.size or jpeg_size(jpeg)
                if self.asked_size and tuple(self.asked_size) != size:
                    raise Error("invalid_option", f"the camera gives {size[0]}x{size[1]}, "
                                                  f"not {self.asked_size[0]}x"
                                                  f"{self.asked_size[1]}")
                now = time.monotonic()
                if getattr(self.reader, "fps", None) is None and self.seq:
                    # A stream that does not say its rate: measure it (smoothed).
                    rate = 1.0 / max(now - self.last_frame, 1e-3)
                    self.measured = rate if self.measured is None else \
                        0.9 * self.measured + 0.1 * rate
                    self.fps = round(self.measured, 1)
                self.last_frame = now
                with self.cond:
                    self.seq += 1
                    self.jpeg, self.size = jpeg, size
                    self.cond.notify_all()
                self.opened.set()
                if self.stopping:
                    break
        except Error as exc:
            self.error = exc
        except Exception as exc:  # a driver's surprise: the camera is unusable, not us
            self.log.exception("camera reader failed", source=self.source["id"])
            self.error = Error("device_gone", f"the camera failed: {exc}")
        finally:
            if self.reader is not None:
                try:
                    self.reader.close()
                except Exception:
                    pass
            with self.cond:
                self.ended = True
                self.cond.notify_all()
            self.opened.set()
            if self.error is not None and not self.stopping:
                self.log.warning("camera ended", source=self.source["id"],
                                 code=self.error.code, error=self.error.message)
            else:
                self.log.info("camera closed", source=self.source["id"])

    def frame(self, after: int, timeout: float, viewer: str | None = None) -> tuple:
        """(seq, jpeg, size) of a frame newer than ``after``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            if viewer:
                self.leases[viewer] = time.monotonic()
            while self.seq <= after and not self.ended:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Error("timeout", "the camera sent no new frame in time")
                self.cond.wait(remaining)
            if self.seq <= after:  # ended without a new frame
                raise self.error or Error("device_gone", "the camera was closed")
            if viewer:
                self.leases[viewer] = time.monotonic()
            return self.seq, self.jpeg, self.size

    def release(self, viewer: str) -> None:
        with self.cond:
            self.leases.pop(viewer, None)

    def idle(self, release_after: float) -> bool:
        """Nobody leased a frame for ``release_after`` s and no capture holds it."""
        now = time.monotonic()
        with self.cond:
            self.leases = {v: t for v, t in self.leases.items() if now - t < release_after}
            if self.leases or self.holds:
                self.idle_since = now
                return False
        return now - self.idle_since >= release_after

    def close(self) -> None:
        self.stopping = True
        self.thread.join(timeout=3.0)

    def describe(self) -> dict:
        with self.cond:
            return {"source": self.source["id"], "frames": self.seq,
                    "size": list(self.size) if self.size else None, "fps": self.fps,
                    "viewers": len(self.leases), "captures": self.holds,
                    "ended": self.ended,
                    "error": self.error.to_wire() if self.error else None}
