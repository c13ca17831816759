"""A real HTTP receiver for upload tests and benchmarks: an aiohttp app on a free port.

It runs in a background thread of the calling process (its own event loop), records
every request it gets, and keeps each *document* once per ``Idempotency-Key``, as a
receiver that wants "exactly once" would::

    from tests.support.receiver import Receiver, answer, store, reset, stall, redirect

    with Receiver() as rx:                      # or rx = Receiver().start() ... rx.stop()
        rx.on("/in", answer(500), answer(500))  # two 500s, then the default: store()
        rx.on("/slow", then=store(delay=0.1))   # every call: store, then wait 0.1 s
        url = rx.url("/in")                     # http://127.0.0.1:PORT/in; rx.origin
        ...
        rx.wait_for(lambda: rx.documents, 10, "a document")
        seen = rx.requests_to("/in")            # [Request]: method, headers, parts, ...
        doc = rx.documents[key]                 # the Request that stored it

Behaviour is programmed per path (the request path without its query): ``on(path,
*steps, then=store())`` gives the steps for the next calls, one per call, then ``then``
for every later call. Paths never programmed get ``Receiver(default=...)``, ``store()``
unless given. Steps:

- ``store(status=200, delay=0, keep=True, rate=None)``: read the whole body (at most
  ``rate`` bytes/s when given), keep it as a document under its Idempotency-Key (a
  second request with a stored key is answered the same, not stored again:
  ``Request.duplicate``), wait ``delay`` s, answer ``status`` with JSON ``{"key",
  "bytes", "duplicate", "document"}``. ``keep=False`` keeps only sizes and SHA-256 of
  the body and parts (for 500 MB bodies).
- ``answer(status, body="", headers=None)``: read the body (kept), answer; nothing stored
  (500s, ``429`` with ``{"Retry-After": "1"}``, 422 ...).
- ``redirect(location, status=307)``: ``answer`` with a Location header.
- ``reset(after=65536)``: read ``after`` bytes of the body, then reset the connection
  (TCP RST, no answer).
- ``stall(seconds, read=0)``: read ``read`` bytes, wait ``seconds`` without reading or
  answering (longer than the uploader's timeout), then reset the connection.

``hold()`` makes new requests wait before they are handled until ``release()`` (e.g.
while jobs are being queued). Every request is recorded (``requests``, a ``Request``
each: ``method, path, headers, key, parts/files/fields`` or ``body``, ``size``,
``sha256``, ``complete``, ``status``, ``answer``, ``stored``, ``duplicate``, ``started``
and ``finished`` in ``time.monotonic()``); ``in_progress(path)`` lists those not
finished yet.

``python -m tests.support.receiver [--port N]`` runs a ``keep=False`` receiver in the
foreground (for benchmarks) and prints ``{"url": ...}``; Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from aiohttp import web
from multidict import CIMultiDict

from .stack import poll_for

CHUNK = 1 << 18


@dataclass(frozen=True)
class Step:
    kind: str  # store | answer | reset | stall
    status: int = 200
    body: str = ""
    headers: tuple = ()
    delay: float = 0.0
    keep: bool = True
    after: int = 0
    rate: float | None = None


def store(status: int = 200, delay: float = 0.0, keep: bool = True,
          rate: float | None = None) -> Step:
    return Step("store", status, delay=delay, keep=keep, rate=rate)


def answer(status: int, body: str = "", headers: dict | None = None) -> Step:
    return Step("answer", status, body, tuple((headers or {}).items()))


def redirect(location: str, status: int = 307) -> Step:
    return Step("answer", status, f"moved to {location}", (("Location", location),))


def reset(after: int = 65536) -> Step:
    return Step("reset", after=after)


def stall(seconds: float, read: int = 0) -> Step:
    return Step("stall", delay=seconds, after=read)


@dataclass
class Part:
    """One part of a multipart body (``data`` None when not kept)."""
    name: str | None
    filename: str | None
    content_type: str | None
    headers: CIMultiDict
    size: int = 0
    sha256: str = ""
    data: bytes | None = None


@dataclass
class Request:
    """What one request brought and what it got."""
    n: int
    method: str
    path: str
    query: str
    headers: CIMultiDict
    step: str
    started: float  # time.monotonic()
    parts: list[Part] | None = None  # for multipart/form-data bodies
    body: bytes | None = None  # other bodies (when kept)
    size: int = 0  # body bytes read
    sha256: str = ""  # of the raw body (not of multipart bodies)
    complete: bool = False  # the whole body was read
    status: int | None = None  # answered (None: reset, stalled)
    answer: str = ""
    stored: bool = False  # this request stored a new document
    duplicate: bool = False  # its key had been stored already
    finished: float | None = None

    @property
    def key(self) -> str | None:
        return self.headers.get("Idempotency-Key")

    @property
    def files(self) -> list[Part]:
        """Multipart parts with a file name."""
        return [p for p in self.parts or [] if p.filename is not None]

    @property
    def fields(self) -> dict[str, str]:
        """Multipart parts without a file name, as text (kept bodies only)."""
        return {p.name: (p.data or b"").decode() for p in self.parts or []
                if p.filename is None}


class Receiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, default: Step | None = None,
                 tls=None):
        """``tls``: an ``ssl.SSLContext`` with the server's certificate: HTTPS."""
        self.host, self.port = host, port
        self.tls = tls
        self.default = default or store()
        self.lock = threading.Lock()
        self.requests_seen: list[Request] = []
        self.docs: dict[str, Request] = {}
        self.plans: dict[str, tuple[deque, Step]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.runner: web.AppRunner | None = None
        self.gate: asyncio.Event | None = None

    # --- running

    def start(self) -> "Receiver":
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self.loop)
            try:
                self.loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported by start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._shutdown())
            self.loop.close()

        self.thread = threading.Thread(target=run, name=f"receiver-{self.port}", daemon=True)
        self.thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.host, self.port, reuse_address=True,
                           ssl_context=self.tls)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        self.gate.set()
        await self.runner.cleanup()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:  # stalled handlers
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self) -> "Receiver":
        return self.start() if self.thread is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- programming

    @property
    def origin(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.origin + path

    def on(self, path: str, *steps: Step, then: Step | None = None) -> None:
        """The next calls to ``path`` get ``steps`` one each, later ones ``then``."""
        with self.lock:
            self.plans[path] = (deque(steps), then or store())

    def hold(self) -> None:
        """New requests wait (before reading anything) until ``release()``."""
        self.loop.call_soon_threadsafe(self.gate.clear)

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.gate.set)

    def clear(self) -> None:
        """Forget requests, documents and plans."""
        with self.lock:
            self.requests_seen.clear()
            self.docs.clear()
            self.plans.clear()

    # --- what arrived

    @property
    def requests(self) -> list[Request]:
        with self.lock:
            return list(self.requests_seen)

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    @property
    def documents(self) -> dict[str, Request]:
        """Idempotency-Key -> the request that stored it (requests without a key are kept
        under ``"no-key-N"``)."""
        with self.lock:
            return dict(self.docs)

    def in_progress(self, path: str | None = None) -> list[Request]:
        """Requests (to ``path``) being handled now: not answered, reset or dropped yet."""
        return [r for r in self.requests if r.finished is None and path in (None, r.path)]

    def wait_for(self, check: Callable[[], object], timeout: float, what: str):
        """``poll_for``, failing with what the receiver was sent."""
        try:
            return poll_for(check, timeout, what, every=0.02)
        except AssertionError as exc:
            raise AssertionError(f"receiver: {exc}; requests: {self.summary()}") from None

    def summary(self) -> list[str]:
        return [f"{r.method} {r.path} {r.step} -> {r.status} ({r.size} B"
                f"{', complete' if r.complete else ''})" for r in self.requests]

    # --- handling

    def _next_step(self, path: str) -> Step:
        with self.lock:
            steps, then = self.plans.get(path, (deque(), self.default))
            return steps.popleft() if steps else then

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await self.gate.wait()
        step = self._next_step(request.path)
        with self.lock:
            record = Request(len(self.requests_seen) + 1, request.method, request.path,
                             request.query_string, CIMultiDict(request.headers), step.kind,
                             time.monotonic())
            self.requests_seen.append(record)
        try:
            if step.kind in ("reset", "stall"):
                await self._read_raw(request, record, keep=False, limit=step.after)
                if step.kind == "stall":
                    await asyncio.sleep(step.delay)
                _reset(request)
                record.finished = time.monotonic()
                return web.Response()  # never sent: the transport is gone
            await self._read(request, record, keep=step.keep, rate=step.rate)
            if step.kind == "answer":
                return self._answer(record, web.Response(
                    status=step.status, text=step.body, headers=dict(step.headers)))
            key = record.key
            with self.lock:
                if key is None:
                    key = f"no-key-{record.n}"
                record.duplicate = key in self.docs
                if not record.duplicate:
                    self.docs[key] = record
                    record.stored = True
                document = self.docs[key].n
            if step.delay:
                await asyncio.sleep(step.delay)
            size = record.size if record.parts is None else \
                sum(p.size for p in record.files)
            return self._answer(record, web.json_response(
                {"key": key, "bytes": size, "duplicate": record.duplicate,
                 "document": document}, status=step.status))
        except BaseException:  # the client went away, or the receiver stops
            record.finished = time.monotonic()
            raise

    def _answer(self, record: Request, response: web.Response) -> web.Response:
        record.status = response.status
        record.answer = response.text or ""
        record.finished = time.monotonic()
        return response

    async def _read(self, request: web.Request, record: Request, keep: bool,
                    rate: float | None = None) -> None:
        if request.content_type != "multipart/form-data":
            await self._read_raw(request, record, keep, rate=rate)
            return
        record.parts = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            got = Part(part.name, part.filename, part.headers.get("Content-Type"),
                       CIMultiDict(part.headers))
            record.parts.append(got)
            digest, kept = hashlib.sha256(), bytearray()
            while chunk := await part.read_chunk(CHUNK if rate is None else 1 << 16):
                await _pace(record, rate)
                digest.update(chunk)
                got.size += len(chunk)
                record.size += len(chunk)
                if keep:
                    kept += chunk
            got.sha256 = digest.hexdigest()
            got.data = bytes(kept) if keep else None
        record.complete = True

    async def _read_raw(self, request: web.Request, record: Request, keep: bool,
                        limit: int | None = None, rate: float | None = None) -> None:
        digest, kept = hashlib.sha256(), bytearray()
        while limit is None or record.size < limit:
            want = CHUNK if rate is None else 1 << 16
            want = want if limit is None else min(want, limit - record.size)
            chunk = await request.content.read(want)
            if not chunk:
                record.complete = True
                break
            await _pace(record, rate)
            digest.update(chunk)
            record.size += len(chunk)
            if keep:
                kept += chunk
        record.sha256 = digest.hexdigest()
        record.body = bytes(kept) if keep else None


async def _pace(record: Request, rate: float | None) -> None:
    """Sleep so that the bytes read so far came at ``rate`` bytes/s at most."""
    if rate:
        ahead = record.started + record.size / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)


def _reset(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), not a FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def main() -> None:
    parser = argparse.ArgumentParser(description="a receiver that hashes what it gets")
    parser.add_argument("--port", type=int, default=0)
    opts = parser.parse_args()
    rx = Receiver(port=opts.port, default=store(keep=False)).start()
    print(json.dumps({"url": rx.url("/")}), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        rx.stop()


if __name__ == "__main__":
    main()
