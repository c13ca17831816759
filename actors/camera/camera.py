"""The camera actor: sources, live-view frames, and capture jobs into the buffer.

On demand, like the scanner. Live view is pulled: the gateway asks ``frame(after=N)`` for
each frame it streams, so the actor never pushes frames nobody takes. Captures are scan
jobs (``scan``/``job``/``jobs``/``cancel``, events ``scan.page``/``scan.done``/
``scan.error``) whose pages are frames, each stored by the buffer as the JPEG it came as
(or, in document mode, as the page found in it, straightened).
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from typing import Annotated, Any

from broker.actor import Actor, Result, operation
from broker.protocol import Error
from common.jobs import JobOperations, JobState, ScanJobs

from . import sources as sourcelib
from . import v4l2
from .document import document as straighten
from .feeds import Feed

FRAME_WAIT = 5.0  # seconds a viewer waits for the next frame
OPEN_WAIT = 10.0  # seconds a capture waits for a camera's first frame
MAX_FRAMES = 1000  # frames one capture may take
MAX_INTERVAL = 3600.0
ADD_TIMEOUT = 60.0
SCAN_OPTIONS = {"resolution", "interval", "document"}


def parse_size(value: Any) -> tuple[int, int] | None:
    if value is None or value == "":
        return None
    match = re.fullmatch(r"\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*", str(value))
    if not match:
        raise Error("invalid_argument", "resolution must be WIDTHxHEIGHT, e.g. 1280x720")
    return int(match[1]), int(match[2])


class Camera(JobOperations, Actor):
    service = "camera"
    capacity = 16  # viewers wait for frames on actor threads
    tick_interval = 0.5

    def on_start(self) -> None:
        self.feeds: dict[str, Feed] = {}
        self.feeds_lock = threading.Lock()
        self.job_table = ScanJobs(self.home.cache / "camera")
        self.fail_orphans("the camera actor stopped during the capture")
        self.running: dict[str, threading.Event] = {}  # job -> cancel flag
        self.listed: list[dict] = self._listing()

    def on_stop(self) -> None:
        for flag in self.running.values():
            flag.set()
        with self.feeds_lock:
            feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            feed.close()
        self.job_table.close()

    def on_tick(self) -> None:
        release_after = self.cfg.camera.release_after
        with self.feeds_lock:
            done = [sid for sid, feed in self.feeds.items()
                    if feed.ended or feed.idle(release_after)]
            closing = [self.feeds.pop(sid) for sid in done]
        for feed in closing:
            feed.close()

    def _listing(self) -> list[dict]:
        self.listed = sourcelib.listing(self.cfg.camera.sources, self.cfg.camera.v4l2)
        return self.listed

    def _entry(self, source: Any) -> dict:
        """A source by id or device, from the last listing (not read again for every frame
        a viewer takes); a miss lists again, for a camera plugged in since."""
        try:
            return sourcelib.find(self.listed, source)
        except Error:
            return sourcelib.find(self._listing(), source)

    @staticmethod
    def _check_offered(entry: dict, size: tuple[int, int]) -> None:
        if entry["kind"] != "v4l2":
            return
        offered = {(m["width"], m["height"]) for m in v4l2.modes(entry["device"])}
        if offered and size not in offered:
            raise Error("invalid_option", f"the camera does not offer {_size_text(size)} "
                        f"(it offers: {', '.join(_size_text(s) for s in sorted(offered))})")

    def _feed(self, source: Any, size: tuple[int, int] | None = None) -> Feed:
        entry = self._entry(source)
        with self.feeds_lock:
            feed = self.feeds.get(entry["id"])
            if feed is not None and feed.ended:
                self.feeds.pop(entry["id"])
                feed = None
            if feed is None:
                if size:
                    self._check_offered(entry, size)
                feed = self.feeds[entry["id"]] = Feed(entry, size, self.cfg.camera.jpeg_quality,
                                                      self.log)
                return feed
        if size and feed.asked_size != size and (feed.size is None or feed.size != size):
            if entry["kind"] != "v4l2":  # a file or stream has one size only
                raise Error("invalid_option", f"the camera gives "
                                              f"{_size_text(feed.size or feed.asked_size)}, "
                                              f"not {_size_text(size)}")
            self._check_offered(entry, size)
            raise Error("busy", f"the camera is open at another resolution for another "
                                f"viewer or capture ({_size_text(feed.size or feed.asked_size)})")
        return feed

    # --- sources and live view

    @operation
    def sources(self, refresh: bool = False) -> list:
        """The cameras: named ones from the ini, then V4L2 devices."""
        with self.feeds_lock:
            open_ids = {sid for sid, feed in self.feeds.items() if not feed.ended}
        return [{**sourcelib.public(entry), "open": entry["id"] in open_ids}
                for entry in self._listing()]

    @operation
    def options(self, source: str) -> dict:
        """What the camera offers: resolution, frame rate, adjustable properties."""
        feed = self._feed(source)
        feed.opened.wait(OPEN_WAIT)
        if feed.error is not None and feed.seq == 0:
            raise feed.error
        if feed.size is None:
            raise Error("timeout", "the camera sent no frame in time")
        size = _size_text(feed.size)
        reader = feed.reader
        properties = reader.properties() if hasattr(reader, "properties") else {}
        modes = v4l2.modes(feed.source["device"]) if feed.source["kind"] == "v4l2" else []
        sizes = sorted({(m["width"], m["height"]) for m in modes}) or [feed.size]
        options = [
            {"name": "resolution", "type": "string", "list": [_size_text(s) for s in sizes],
             "default": size, "title": "frame size (WIDTHxHEIGHT)"},
            {"name": "interval", "type": "float", "unit": "s",
             "range": {"min": 0, "max": MAX_INTERVAL}, "default": 0,
             "title": "time between frames of one capture"},
            {"name": "document", "type": "bool", "default": False,
             "title": "find the page in the frame, straighten and crop it"},
        ]
        options += [{"name": name, "type": "float", "default": value, "settable": True}
                    for name, value in properties.items()]
        if not modes:  # a file or stream offers what it sends
            modes = [{"format": "MJPG", "width": feed.size[0], "height": feed.size[1],
                      "fps": [feed.fps] if feed.fps else []}]
        return {"source": feed.source["id"], "kind": feed.source["kind"], "size": size,
                "fps": feed.fps, "modes": modes, "properties": properties,
                "options": options}

    @operation
    def frame(self, source: str, after: Annotated[int, "a frame number"] = 0,
              viewer: Annotated[str, "a short id"] | None = None,
              resolution: Any = None, timeout: float = FRAME_WAIT) -> Result:
        """The newest frame after ``after`` (a JPEG blob); opens the camera if needed."""
        if after < 0:
            raise Error("invalid_argument", "after must be a frame number")
        if viewer is not None and len(viewer) > 64:
            raise Error("invalid_argument", "viewer must be a short id")
        feed = self._feed(source, parse_size(resolution))
        seq, jpeg, size = feed.frame(after, min(float(timeout), FRAME_WAIT * 4), viewer)
        return Result({"source": feed.source["id"], "seq": seq, "width": size[0],
                       "height": size[1], "fps": feed.fps}, [jpeg])

    @operation
    def release(self, source: str, viewer: str) -> dict:
        """A viewer left: the camera closes once nobody else watches."""
        with self.feeds_lock:
            feed = self.feeds.get(self._entry(source)["id"])
        if feed is not None:
            feed.release(viewer)
        return {"released": feed is not None}

    def _properties(self, source: Any) -> dict:
        """The adjustable properties of the camera (opening it for a moment if needed)."""
        if self._entry(source)["kind"] != "v4l2":
            return {}  # files and streams have none: no need to open them
        feed = self._feed(source)
        feed.opened.wait(OPEN_WAIT)
        reader = feed.reader
        return reader.properties() if hasattr(reader, "properties") else {}

    @operation(name="set")
    def set_properties(self, source: str,
                       values: Annotated[dict, "an object of property: number"]) -> dict:
        """Set adjustable properties (brightness, focus, exposure, ...) of an open camera."""
        if not values:
            raise Error("invalid_argument", "values must be an object of property: number")
        available = self._properties(source)
        for name, value in values.items():
            if name not in available:
                raise Error("invalid_option", f"this camera has no property {name!r} "
                            f"(it has: {', '.join(available) or 'none'})")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Error("invalid_argument", f"{name} must be a number")
        reader = self._feed(source).reader
        for name, value in values.items():
            if not reader.set_property(name, float(value)):
                raise Error("invalid_option", f"the camera refused {name} = {value}")
        return {"properties": reader.properties()}

    @operation
    def status(self) -> dict:
        with self.feeds_lock:
            return {"feeds": [feed.describe() for feed in self.feeds.values()],
                    "captures": len(self.running)}

    # --- captures (scan jobs)

    @operation
    def scan(self, session: str, source: str, options: dict | None = None, pages: Any = 1,
             batch: Any = None) -> dict:
        """Capture ``pages`` frames into the session, ``interval`` seconds apart."""
        options = options or {}
        count = MAX_FRAMES if batch else pages
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_FRAMES:
            raise Error("invalid_argument", f"pages must be 1..{MAX_FRAMES} frames")
        interval = options.get("interval", 0)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) \
                or not 0 <= interval <= MAX_INTERVAL:
            raise Error("invalid_option", f"interval must be 0..{MAX_INTERVAL:g} seconds")
        document = options.get("document", False)
        if not isinstance(document, bool):
            raise Error("invalid_option", "document must be true or false")
        size = parse_size(options.get("resolution"))
        properties = {k: v for k, v in options.items() if k not in SCAN_OPTIONS}
        if properties:  # the device's own (brightness, focus, ...): set before the frames
            offered = self._properties(source)
            unknown = sorted(set(properties) - set(offered))
            if unknown:
                raise Error("invalid_option", f"a camera capture has no option "
                            f"{', '.join(unknown)} (it has: {', '.join(sorted(SCAN_OPTIONS))}"
                            f"; this camera's properties: {', '.join(offered) or 'none'})")
            self.set_properties(source, properties)
        feed = self._feed(source, size)
        with feed.cond:
            feed.holds += 1
        job = f"cam-{secrets.token_hex(6)}"
        request = {"source": feed.source["id"], "pages": count, "options": options}
        self.job_table.create(job, session, feed.source["id"], request)
        cancel = self.running[job] = threading.Event()
        threading.Thread(target=self._capture, name=f"capture-{job}", daemon=True,
                         args=(job, session, feed, count, float(interval), document,
                               cancel)).start()
        return self.job_table.find(job)

    def _capture(self, job: str, session: str, feed: Feed, count: int, interval: float,
                 document: bool, cancel: threading.Event) -> None:
        images: list[str] = []
        error: Error | None = None
        client = self.client()
        try:
            seq = 0
            next_at = time.monotonic()
            for number in range(1, count + 1):
                if cancel.wait(max(0.0, next_at - time.monotonic())):
                    break
                next_at = time.monotonic() + interval
                seq, jpeg, size = feed.frame(seq, OPEN_WAIT)
                meta = {"job": job, "frame": seq, "device": feed.source["device"]}
                if document:
                    jpeg, found = straighten(jpeg, self.cfg.camera.jpeg_quality)
                    meta["document"] = found
                info = client.call("buffer", "add", {
                    "session": session, "source": feed.source["id"],
                    "key": f"{job}:{number}", "meta": meta}, blobs=[jpeg],
                    timeout=ADD_TIMEOUT, idempotent=True)
                images.append(info["id"])
                self.job_table.page(job, images)
                self.publish("scan.page", {"session": session, "job": job, "page": number,
                                           "image": info, "pages": len(images)})
        except Error as exc:
            error = exc
        except Exception as exc:
            self.log.exception("capture failed", job=job)
            error = Error("internal", f"the capture failed: {exc}")
        finally:
            with feed.cond:
                feed.holds -= 1
            self.running.pop(job, None)
        state = JobState.FAILED if error else JobState.CANCELLED if cancel.is_set() \
            else JobState.DONE
        self.job_table.finish(job, state, error.to_wire() if error else None)
        body = {"session": session, "job": job, "state": state, "pages": len(images),
                "images": images}
        if error is not None:
            self.publish("scan.error", {**body, "error": error.to_wire(), "code": error.code,
                                        "message": error.message})
        else:
            self.publish("scan.done", body)

    # --- job, jobs, cancel (common.jobs.JobOperations)

    def job_cancel(self, record: dict) -> dict:
        """Tell the capture to stop (before its next frame); answered at once."""
        flag = self.running.get(record["job"])
        if flag is not None:
            flag.set()
        return self.job_table.find(record["job"])


def _size_text(size: Any) -> str:
    return f"{size[0]}x{size[1]}" if size else "unknown"
