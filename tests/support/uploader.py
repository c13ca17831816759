"""What the uploader tests share (test_uploader_delivery, _retries, _targets, _cancel and
_restart): real receivers (tests/support/receiver.py, aiohttp apps), two services that list
one of them in ``upload_targets``, a session opened through the gateway with its uploads and
its event WebSocket, noise pages, and the checks on a job's folder and on error answers.

Service A (``svc``: fast backoffs, ``timeout = 1``, ``max_attempts = 4``) serves most
tests; service B (``svc_b``: ``timeout = 10``) progress events, the crash tests, the 500 MB
upload and cancel latency. Each is one service for all the modules (``@shared_by_modules``),
as it was one for the single test file; so are the receivers: ``rx`` (in every service's
upload_targets), ``other`` (never allowed) and ``spare`` (allowed only by what a test writes
into user_config.ini). ``fresh`` gives each test receiver paths no other test uses.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import numpy as np
from PIL import Image

from broker.protocol import Error

from .receiver import Receiver
from .service import Service
from .shared import shared_by_modules
from .stack import poll_for, write_ini
from .web import Answer, Api

V1 = "/api/v1"
APP = "https://app.example"  # a page origin allowed to use the service (user_config.ini)
FINAL = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 4
INI_A = ("[uploader]\nbackoff_first = 0.05\nbackoff_max = 2\ntimeout = 1\n"
         f"connect_timeout = 2\nmax_attempts = {MAX_ATTEMPTS}\n")
INI_B = "[uploader]\nbackoff_first = 0.05\nbackoff_max = 0.5\ntimeout = 10\n"

FIELDS = {"note": "Grüße aus Köln ✓", "ref": "A-17", "empty": ""}
HEADERS = {"X-Tenant": "acme", "X-Trace-Id": "t-0001"}
AUTH = {"user": "scan", "password": "pä55:wörd"}
FILENAME = "Reçu d'été №5.pdf"
STEM = "Reçu d'été №5"
FIELD = "document"
OPTIONS = {"fields": FIELDS, "headers": HEADERS, "auth": AUTH, "filename": FILENAME,
           "field_name": FIELD}


# --- images


def noise_jpeg(width: int, height: int, seed: int, quality: int = 90) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def pixels(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").tobytes()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# --- services and receivers


@shared_by_modules
def rx():
    """The receiver in every service's upload_targets."""
    with Receiver() as receiver:
        yield receiver


@shared_by_modules
def other():
    """A receiver on another origin that is never allowed: nothing may reach it."""
    with Receiver() as receiver:
        yield receiver


@shared_by_modules
def spare():
    """A receiver allowed only by what a test writes into user_config.ini."""
    with Receiver() as receiver:
        yield receiver


def start_service(home: Path, ini: str, rx: Receiver) -> Service:
    service = Service(home, extra_ini=ini)
    write_ini(home, "user_config.ini",
              f"[access]\nallowed_origins = {APP}\nupload_targets = {rx.url('/')}\n")
    service.start()
    return service


@shared_by_modules
def svc(tmp_path_factory, rx):
    service = start_service(tmp_path_factory.mktemp("home"), INI_A, rx)
    yield service
    service.stop()


@shared_by_modules
def svc_b(tmp_path_factory, rx):
    service = start_service(tmp_path_factory.mktemp("home"), INI_B, rx)
    yield service
    service.stop()


@shared_by_modules
def big_pages():
    """Two ~1.2 MB pages: a document far larger than what is read before a reset."""
    return [noise_jpeg(1000, 1000, 70, 95), noise_jpeg(1000, 1000, 71, 95)]


_paths = iter(range(1, 1 << 30))


def fresh(name: str) -> str:
    """A receiver path no other test uses."""
    return f"/t{next(_paths)}/{name}"


class Session:
    """A session opened through the gateway (so its events reach a WebSocket)."""

    def __init__(self, svc: Service, origin: str | None = None):
        self.svc = svc
        self.api = Api(svc, origin=origin)
        self.sid, self.token = self.api.open_session()
        self.base = f"{V1}/sessions/{self.sid}/uploads"

    def add(self, *blobs: bytes) -> list[str]:
        with self.svc.client() as client:
            return [client.call("buffer", "add", {"session": self.sid}, blobs=[blob],
                                timeout=60)["id"] for blob in blobs]

    def image(self, image: str, fmt: str | None = None) -> bytes:
        """What the buffer serves for the image (the stored file when fmt is None)."""
        with self.svc.client() as client:
            args = {"session": self.sid, "image": image, **({"format": fmt} if fmt else {})}
            return client.request("buffer", "get", args).blobs[0].bytes

    def post(self, **body) -> Answer:
        return self.api.post(self.base, json=body, token=self.token)

    def upload(self, **body) -> dict:
        reply = self.post(**body)
        assert reply.status == 202, (reply.status, reply.body[:400])
        job = reply.json()
        assert reply.headers["Location"] == f"{self.base}/{job['job']}"
        assert job["state"] in ("queued", "running", "done"), job
        return job

    def job(self, job: str) -> dict:
        reply = self.api.get(f"{self.base}/{job}", token=self.token)
        assert reply.status == 200, reply.body
        return reply.json()

    def cancel(self, job: str) -> Answer:
        return self.api.request("DELETE", f"{self.base}/{job}", token=self.token)

    def wait(self, job: str, timeout: float = 20, states=FINAL) -> dict:
        return poll_for(lambda: (state := self.job(job))["state"] in states and state,
                        timeout, f"upload {job} to reach {states}", every=0.05)

    def events(self) -> "SessionEvents":
        return SessionEvents(self.svc, self.sid, self.token)


class SessionEvents:
    """The session's event WebSocket, read in a background thread."""

    def __init__(self, svc: Service, sid: str, token: str):
        self.url = f"ws://127.0.0.1:{svc.ports[1]}{V1}/sessions/{sid}/events?token={token}"
        self.messages: list[dict] = []
        self.changed = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self.loop).result(20)
        self.reader = asyncio.run_coroutine_threadsafe(self._read(), self.loop)

    async def _connect(self) -> None:
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(self.url)
        hello = json.loads((await self.ws.receive(timeout=20)).data)
        assert hello["topic"] == "hello", hello

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                with self.changed:
                    self.messages.append(json.loads(message.data))
                    self.changed.notify_all()

    async def _close(self) -> None:
        await self.ws.close()
        await self.http.close()

    def of(self, job: str, topic: str | None = None) -> list[dict]:
        """The job's events so far, in order (their data and ``topic``); only ``topic``
        if given."""
        with self.changed:
            return [{"topic": m["topic"], **m["data"]} for m in self.messages
                    if m["data"].get("job") == job and (topic is None or m["topic"] == topic)]

    def wait(self, job: str, topic: str, timeout: float = 20) -> dict:
        end = time.monotonic() + timeout
        with self.changed:
            while True:
                found = self.of(job, topic)
                if found:
                    return found[-1]
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {topic} event for {job} within {timeout} s; "
                                         f"got {[m['topic'] for m in self.messages]}")
                self.changed.wait(left)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> "SessionEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def job_folder(svc: Service, job: str) -> Path:
    return svc.home / "upload" / job


def assert_files_removed(svc: Service, job: str) -> None:
    poll_for(lambda: not job_folder(svc, job).exists(), 5, f"upload/{job}/ to be removed")


def assert_nothing_arrives(receiver: Receiver, wait: float = 0.5) -> None:
    time.sleep(wait)
    assert receiver.requests == [], receiver.summary()


def assert_error(reply: Answer, status: int, code: str) -> dict:
    assert reply.status == status, (reply.status, reply.body[:400])
    error = reply.json()["error"]
    assert error["code"] == code, error
    assert error["message"], error
    return error


@contextmanager
def upload_targets(svc: Service, *targets: str):
    """user_config.ini lists ``targets`` too for the block (no restart), then not."""
    path = svc.home / "ini" / "user_config.ini"
    before = path.read_text()
    after, count = re.subn(r"^upload_targets\s*=.*$",
                           lambda m: m.group(0) + ", " + ", ".join(targets), before,
                           flags=re.M)
    assert count == 1, before
    path.write_text(after)
    try:
        yield
    finally:
        path.write_text(before)


def job_state(client, job: str) -> dict | None:
    try:
        return client.call("uploader", "job", {"job": job}, timeout=10)
    except Error:
        return None  # the uploader is restarting
