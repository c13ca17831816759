"""One scan job: read pages from an open device, hand each to the buffer, report events.

The reader thread drives SANE (start, read line by line with progress, next page). Each
page read is *staged* in the buffer at once by a pool of ``Stagers`` (the buffer
compresses and writes it durably, unlisted), so several pages are compressed in
parallel while the device reads on. The storer thread then *commits* staged pages in scan
order and publishes ``scan.page`` only after the buffer acknowledged the commit. At most
``pages_in_flight + 1`` pages wait in memory; then the reader waits.

Each commit carries ``key = JOB:PAGE``: if the buffer restarts meanwhile, the page is
staged again and the key makes sure it is listed once.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image

from broker.client import Client
from broker.protocol import Error
from common.jobs import JobState

from .devices import error_of

PROGRESS_EVERY = 0.2  # seconds between two scan.progress events of one page
SIGNALS_EVERY = 0.02  # seconds between two restores of our signal handlers while reading
ADD_TIMEOUT = 120.0  # seconds the buffer may take to store one page (it may be restarting)


def _device_error(exc: BaseException, doing: str) -> Error:
    error = error_of(exc, doing)
    if error.code == "cancelled":  # nobody asked: the device gave up by itself
        return Error("io_error", f"{doing}: the device cancelled the scan")
    return error


class Stagers:
    """Threads that stage pages in the buffer, each with its own broker connection."""

    def __init__(self, client: Callable[[], Client], count: int):
        self.client = client  # the calling thread's broker client
        self.pool = ThreadPoolExecutor(count, thread_name_prefix="stage")

    def stage(self, session: str, page: "Page") -> Future:
        return self.pool.submit(self._stage, session, page)

    def _stage(self, session: str, page: "Page") -> str:
        return stage(self.client(), session, page)


def stage(client: Client, session: str, page: "Page") -> str:
    """Store one page durably (unlisted) in the buffer; returns its stage token."""
    return client.call("buffer", "stage", {
        "session": session, "format": "raw", "width": page.width, "height": page.height,
        "mode": page.mode, "dpi": list(page.dpi)},
        blobs=[page.data], timeout=ADD_TIMEOUT, idempotent=True)["stage"]


@dataclass
class Page:
    number: int
    width: int
    height: int
    mode: str  # the buffer's raw layout: 1, L, RGB, I;16
    data: bytes
    dpi: tuple[float, float]
    depth: int


@dataclass
class Context:
    """What every job of the scanner shares."""
    client: Callable[[], Client]  # the calling thread's broker client
    devices: Any  # devices.Devices
    stagers: Stagers
    in_flight: int  # pages queued for storing before the reader waits
    publish: Callable[[str, dict], None]
    on_page: Callable[["ScanJob"], None]  # after each stored page
    on_end: Callable[["ScanJob"], None]  # once, before the final event
    log: Any


class ScanJob:
    def __init__(self, job: str, session: str, source: dict, handle: Any, settings: Any,
                 pages: int, batch: bool, context: Context):
        self.id, self.session, self.source = job, session, source
        self.handle, self.settings = handle, settings
        self.limit = pages  # a batch stops earlier, when the feeder is empty
        self.batch = batch
        self.context = context
        self.publish, self.log = context.publish, context.log
        self.cancelled = threading.Event()
        self.failure: Error | None = None  # the first error; ends the job
        self.store_failed = False
        self.images: list[str] = []
        self.read = 0  # pages read from the device
        self.percent: int | None = 0
        self.state = JobState.RUNNING
        self.queue: queue.Queue = queue.Queue(maxsize=context.in_flight)
        self.finished = threading.Event()
        self.phase = threading.Lock()  # guards reading and reader_done
        self.reading = False  # the reader is inside a page read
        self.reader_done = False  # the reader has ended (and cancels the device itself)

    # --- control

    def start(self) -> None:
        threading.Thread(target=self._read_pages, name=f"scan-{self.id}", daemon=True).start()
        threading.Thread(target=self._store_pages, name=f"store-{self.id}",
                         daemon=True).start()

    def cancel(self) -> None:
        """Stop now; the pages read so far are still stored."""
        if self.cancelled.is_set() or self.finished.is_set():
            return
        self.cancelled.set()
        self.interrupt()

    def interrupt(self) -> None:
        """Make the device stop what it does. During a read, the progress callback calls
        sane_cancel at the next line, on the reading thread (see ``_progress``);
        otherwise the reader may be waiting in sane_start (lamp warm-up, paper), which
        sane_cancel from here ends."""
        with self.phase:
            if not self.reading and not self.reader_done:
                try:
                    self.handle.cancel()
                except Exception:
                    pass

    def describe(self) -> dict:
        return {"job": self.id, "session": self.session, "source": self.source["id"],
                "state": self.state, "pages": len(self.images), "images": list(self.images),
                "read": self.read, "progress": self.percent, "error": self._error_dict()}

    def _error_dict(self) -> dict | None:
        return self.failure.to_wire() if self.failure else None

    def fail(self, error: Error) -> None:
        if self.failure is None:
            self.failure = error

    # --- reader

    def _read_pages(self) -> None:
        try:
            self._read_loop()
        except Exception as exc:  # a bug must still end the job, with the pages kept
            self.log.error("scan reader failed", job=self.id, error=repr(exc))
            self.fail(Error("internal", f"the scan stopped: {exc!r}"))
        finally:
            with self.phase:  # from now on only this thread cancels (never two at once)
                self.reader_done = True
            try:
                self.handle.cancel()  # SANE: cancel ends the batch after the last page
            except Exception:
                pass
            self.queue.put(None)

    def _read_loop(self) -> None:
        while self.read < self.limit:
            if self.cancelled.is_set() or self.failure is not None:
                return
            try:
                self.context.devices.start(self.handle)
            except Exception as exc:
                self._start_failed(_device_error(exc, "starting the scan"))
                return
            page = self._read_page(self.read + 1)
            if page is None:
                return
            self.read += 1
            # Blocks while in_flight pages wait: the memory used stays bounded.
            self.queue.put((page, self.context.stagers.stage(self.session, page)))

    def _start_failed(self, error: Error) -> None:
        if self.cancelled.is_set():
            return
        if error.code == "feeder_empty":
            if self.batch and self.read > 0:
                return  # a batch ends when the feeder is empty
            if self.read > 0:
                error = Error("feeder_empty", f"the feeder ran out of paper after "
                              f"{self.read} of {self.limit} pages")
            else:
                error = Error("feeder_empty", "the document feeder has no paper")
        self.fail(error)

    def _read_page(self, number: int) -> Page | None:
        with self.phase:
            if self.cancelled.is_set() or self.failure is not None:
                return None
            self.reading = True
        try:
            kind, _last, (_ppl, lines), depth, _bpl = self.handle.get_parameters()
            wide = depth == 16 and kind == "gray"  # keep 16-bit gray; colour goes to 8 bits
            data, width, height, samples, size = self.handle.snap(
                True, wide, self._progress(number, lines))
        except Exception as exc:
            if not self.cancelled.is_set():
                self.fail(_device_error(exc, f"reading page {number}"))
            return None
        finally:
            self.context.devices.signals.restore()  # the backend's reader may reset them
            with self.phase:
                self.reading = False
        if self.cancelled.is_set() or self.failure is not None:
            return None  # a cancel during the read can end it early: a page cut short
        mode = "I;16" if size == 2 else ("RGB" if samples == 3 else "L")
        if depth == 1 and mode == "L":  # python-sane spreads line-art to 0/255 bytes
            data = Image.frombuffer("L", (width, height), bytes(data), "raw", "L", 0, 1) \
                .convert("1", dither=Image.Dither.NONE).tobytes()
            mode = "1"
        return Page(number, width, height, mode, bytes(data), self._dpi(), depth)

    def _dpi(self) -> tuple[float, float]:
        value = self.settings.value
        x = value("resolution") or value("x-resolution") or 0
        y = value("resolution") or value("y-resolution") or x
        return (float(x or 200), float(y or x or 200))

    def _progress(self, number: int, lines: int) -> Callable[[int, int], None]:
        """Called by python-sane after each line read. It must not raise: python-sane
        then dereferences a NULL result and the process dies (SIGSEGV). To stop a read
        it calls sane_cancel here, between two reads on the reading thread; the next
        read fails with "cancelled" and snap raises that."""
        last = [0.0, -1, 0.0]  # last event time, last percent, last signal restore
        stopped = [False]

        def report(line: int, _total: int) -> None:
            now = time.monotonic()
            if now - last[2] >= SIGNALS_EVERY:  # the backend's reader thread, once
                last[2] = now  # started, may reset them (see devices.Signals)
                self.context.devices.signals.restore()
            if self.cancelled.is_set() or self.failure is not None:
                if not stopped[0]:
                    stopped[0] = True
                    try:
                        self.handle.cancel()
                    except Exception:
                        pass
                return
            percent = min(99, line * 100 // lines) if lines > 0 else None
            if percent != last[1] and now - last[0] >= PROGRESS_EVERY:
                last[0], last[1] = now, percent
                self.percent = percent
                self.publish("scan.progress", {"session": self.session, "job": self.id,
                                               "page": number, "percent": percent,
                                               "pages": len(self.images)})
        return report

    # --- storer

    def _store_pages(self) -> None:
        client = self.context.client()
        try:
            while True:
                item = self.queue.get()
                if item is None:
                    break
                # Pages read before a device error are real sheets: keep storing them;
                # only a storing error makes the rest pointless.
                if not self.store_failed:
                    self._store(client, *item)
        finally:
            self._end()

    def _store(self, client: Client, page: Page, staged: Future) -> None:
        try:
            token = staged.result()
            info = self._commit(client, page, token)
        except Exception as exc:
            if not isinstance(exc, Error):
                self.log.error("storing a page failed", job=self.id, error=repr(exc))
                exc = Error("internal", repr(exc))
            self.log.warning("page not stored", job=self.id, page=page.number, code=exc.code,
                             error=exc.message)
            self.store_failed = True
            self.fail(Error(exc.code, f"page {page.number} was not stored: {exc.message}"))
            self.interrupt()
            return
        self.images.append(info["id"])
        self.percent = 100
        self.context.on_page(self)
        self.publish("scan.page", {"session": self.session, "job": self.id,
                                   "page": page.number, "image": info,
                                   "pages": len(self.images)})

    def _commit(self, client: Client, page: Page, token: str) -> dict:
        args = {"session": self.session, "source": self.source["id"],
                "key": f"{self.id}:{page.number}",
                "meta": {"job": self.id, "page": page.number, "device": self.source["device"],
                         "depth": page.depth}}
        try:
            return client.call("buffer", "commit", {**args, "stage": token},
                               timeout=ADD_TIMEOUT, idempotent=True)
        except Error as exc:
            if not exc.details.get("stage_lost"):
                raise
        # The buffer restarted since the page was staged: stage it again (the key keeps
        # a commit that did happen from listing the page twice).
        token = stage(client, self.session, page)
        return client.call("buffer", "commit", {**args, "stage": token},
                           timeout=ADD_TIMEOUT, idempotent=True)


    def _end(self) -> None:
        if self.failure is not None:
            self.state = JobState.FAILED
        elif self.cancelled.is_set():
            self.state = JobState.CANCELLED
        else:
            self.state = JobState.DONE
        self.finished.set()
        self.context.on_end(self)
        body = {"session": self.session, "job": self.id, "state": self.state,
                "pages": len(self.images), "images": list(self.images)}
        if self.failure is not None:
            self.publish("scan.error", {**body, "error": self._error_dict(),
                                        "code": self.failure.code,
                                        "message": self.failure.message})
        else:
            self.publish("scan.done", body)
