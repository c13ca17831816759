"""The uploader against a real receiver (tests/support/receiver.py, an aiohttp app).

What a receiver gets for every format (pdf, tiff, jpeg and png per page, zip): the form
fields, custom headers, the file name (a non-ASCII one), the file field name, basic auth
and bytes equal to what the buffer serves; PUT with the single file; one Idempotency-Key
per job, the same on every attempt. Retries: 500s then success (one document stored),
429 with Retry-After, a connection reset mid-body and a receiver that stalls longer than
``[uploader] timeout``; never on 422; giving up after ``max_attempts``; redirects (307 on
the same origin followed, to another origin refused with no request reaching it). Not
an open proxy: targets neither on the session's origin nor in ``upload_targets`` are
refused with 403 before any request leaves, through the gateway and the broker; the
session's own origin needs no allowlist; edits of user_config.ini apply without a
restart; bad headers and fields are 400. Events over the session WebSocket (progress up
to the total, then done with the receiver's answer); cancel (running, queued). Crash
safety: kill -9 of the uploader in a loop while 50 jobs are delivered (each document
stored exactly once by its key, none missing) and kill -9 of the whole service
mid-transfer; a ~500 MB PDF sent with the uploader's RSS below 100 MB.

Service A (fast backoffs, ``timeout = 1``, ``max_attempts = 4``) serves most tests;
service B (``timeout = 10``) progress events, the crash tests, the 500 MB upload and
cancel latency.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import os
import re
import shutil
import signal
import threading
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import numpy as np
import pymupdf
import pytest
from PIL import Image

from broker import config as configlib
from broker.protocol import Error
from tests.support.receiver import Receiver, answer, redirect, reset, stall, store
from tests.support.service import Service
from tests.support.stack import poll_for, write_ini
from tests.support.web import Answer, Api

pytestmark = pytest.mark.timeout(120)

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


@pytest.fixture(scope="module")
def rx():
    """The receiver in every service's upload_targets."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def other():
    """A receiver on another origin that is never allowed: nothing may reach it."""
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def svc(tmp_path_factory, rx):
    service = start_service(tmp_path_factory.mktemp("home"), INI_A, rx)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def svc_b(tmp_path_factory, rx):
    service = start_service(tmp_path_factory.mktemp("home"), INI_B, rx)
    yield service
    service.stop()


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


# --- 1. what arrives, for each format


def deliver(svc: Service, rx: Receiver, fmt: str, blobs: list[bytes], **extra) -> tuple:
    """Upload the pages as ``fmt`` with all OPTIONS; (session, ids, job, request)."""
    session = Session(svc)
    ids = session.add(*blobs)
    path = fresh(fmt)
    queued = session.upload(url=rx.url(path), format=fmt, **OPTIONS, **extra)
    job = session.wait(queued["job"])
    assert job["state"] == "done", job
    requests = rx.requests_to(path)
    assert len(requests) == 1, rx.summary()
    request = requests[0]
    check_common(svc, job, request)
    return session, ids, job, request


def check_common(svc: Service, job: dict, request) -> None:
    headers = request.headers
    assert request.method == "POST" and request.complete
    assert headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert int(headers["Content-Length"]) == job["progress"]["total"]
    assert headers["Idempotency-Key"] == job["idempotency_key"]
    assert len(job["idempotency_key"]) >= 16
    assert headers["X-Scanbridge-Job"] == job["job"]
    for name, value in HEADERS.items():
        assert headers[name] == value, (name, dict(headers))
    assert headers["Authorization"] == basic(AUTH["user"], AUTH["password"])
    # The form fields, as text, then the files under FIELD with their names.
    assert request.fields == FIELDS
    assert [p.name for p in request.parts] == [*FIELDS, *[FIELD] * len(job["files"])]
    assert [(p.filename, p.size) for p in request.files] == \
        [(f["name"], f["bytes"]) for f in job["files"]]
    # The job: done with the receiver's status and answer, one attempt, all sent.
    assert job["result"] == {"status": 200, "body": request.answer}, job
    assert json.loads(job["result"]["body"])["key"] == job["idempotency_key"]
    assert job["attempts"] == 1 and "error" not in job
    assert job["progress"]["sent"] == job["progress"]["total"] > 0
    assert job["progress"]["percent"] == 100.0
    assert_files_removed(svc, job["job"])


def test_pdf_arrives_intact(svc, rx):
    pages = [noise_jpeg(160, 120, seed) for seed in (1, 2, 3)]
    session, ids, job, request = deliver(svc, rx, "pdf", pages, title="Reçu")
    assert job["format"] == "pdf" and job["method"] == "POST"
    (part,) = request.files
    assert part.filename == f"{STEM}.pdf" and part.content_type == "application/pdf"
    with pymupdf.open(stream=part.data, filetype="pdf") as doc:
        assert doc.page_count == 3
        assert doc.metadata["title"] == "Reçu"
        for number, image in enumerate(ids):
            [(xref, *_)] = doc[number].get_images()
            # The page's JPEG, byte for byte (no re-encode).
            assert doc.extract_image(xref)["image"] == session.image(image) == pages[number]
    listed = session.api.get(session.base, token=session.token)
    assert listed.status == 200
    assert [j["job"] for j in listed.json()] == [job["job"]]


def test_tiff_arrives_intact(svc, rx):
    session, ids, job, request = deliver(svc, rx, "tiff",
                                         [noise_jpeg(150, 100, 4), noise_jpeg(100, 150, 5)])
    (part,) = request.files
    assert part.filename == f"{STEM}.tif" and part.content_type == "image/tiff"
    with Image.open(io.BytesIO(part.data)) as tiff:
        assert tiff.n_frames == 2
        for number, image in enumerate(ids):
            tiff.seek(number)
            assert tiff.convert("RGB").tobytes() == pixels(session.image(image, "png"))


@pytest.mark.parametrize("count", [1, 3])
def test_jpeg_arrives_as_one_part_per_page(svc, rx, count):
    pages = [noise_jpeg(120, 90, 10 + n) for n in range(count)]
    session, ids, job, request = deliver(svc, rx, "jpeg", pages)
    names = [f"{STEM}.jpg"] if count == 1 else [f"{STEM}-{n:03d}.jpg"
                                                 for n in range(1, count + 1)]
    assert [p.filename for p in request.files] == names
    for part, image, page in zip(request.files, ids, pages, strict=True):
        assert part.content_type == "image/jpeg"
        assert part.data == session.image(image) == page  # the stored JPEG as it is


def test_png_arrives_as_one_part_per_page(svc, rx):
    session, ids, job, request = deliver(svc, rx, "png",
                                         [noise_jpeg(90, 60, 20), noise_jpeg(60, 90, 21)])
    assert [p.filename for p in request.files] == [f"{STEM}-001.png", f"{STEM}-002.png"]
    for part, image in zip(request.files, ids, strict=True):
        assert part.content_type == "image/png"
        assert part.data == session.image(image, "png")
        assert pixels(part.data) == pixels(session.image(image))


@pytest.mark.parametrize("page_format", ["jpeg", "png"])
def test_zip_arrives_with_every_page(svc, rx, page_format):
    pages = [noise_jpeg(100, 80, 30 + n) for n in range(3)]
    session, ids, job, request = deliver(svc, rx, "zip", pages, page_format=page_format)
    (part,) = request.files
    assert part.filename == f"{STEM}.zip" and part.content_type == "application/zip"
    extension = "jpg" if page_format == "jpeg" else "png"
    with zipfile.ZipFile(io.BytesIO(part.data)) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [f"{STEM}-{n:03d}.{extension}" for n in (1, 2, 3)]
        for name, image in zip(archive.namelist(), ids, strict=True):
            expected = session.image(image) if page_format == "jpeg" else \
                session.image(image, "png")
            assert archive.read(name) == expected


def test_put_sends_the_single_file_with_its_media_type(svc, rx):
    session = Session(svc)
    pages = [noise_jpeg(120, 90, 40), noise_jpeg(120, 90, 41)]
    ids = session.add(*pages)
    path = fresh("put-pdf")
    job = session.wait(session.upload(url=rx.url(path), method="PUT", format="pdf",
                                      headers=HEADERS, auth=AUTH)["job"])
    assert job["state"] == "done" and job["method"] == "PUT", job
    (request,) = rx.requests_to(path)
    assert request.method == "PUT" and request.parts is None and request.complete
    assert request.headers["Content-Type"] == "application/pdf"
    assert int(request.headers["Content-Length"]) == len(request.body) == job["files"][0]["bytes"]
    assert request.headers["Idempotency-Key"] == job["idempotency_key"]
    assert request.headers["Authorization"] == basic(AUTH["user"], AUTH["password"])
    assert request.headers["X-Tenant"] == "acme"
    with pymupdf.open(stream=request.body, filetype="pdf") as doc:
        assert doc.page_count == 2
        assert [doc.extract_image(doc[n].get_images()[0][0])["image"] for n in (0, 1)] == pages
    assert job["result"] == {"status": 200, "body": request.answer}
    # One page as JPEG: the stored file is the body.
    path = fresh("put-jpeg")
    job = session.wait(session.upload(url=rx.url(path), method="PUT", format="jpeg",
                                      images=[ids[1]])["job"])
    assert job["state"] == "done", job
    (request,) = rx.requests_to(path)
    assert request.headers["Content-Type"] == "image/jpeg" and request.body == pages[1]
    # Two JPEG pages cannot be one PUT body.
    refused = session.post(url=rx.url(fresh("put-two")), method="PUT", format="jpeg")
    assert_error(refused, 400, "invalid_argument")


def test_the_document_is_rendered_when_the_job_is_accepted(svc, rx):
    """Buffer edits after the submit do not change what is sent."""
    session = Session(svc)
    original = noise_jpeg(120, 90, 45)
    (image,) = session.add(original)
    path = fresh("snapshot")
    # The first attempt fails: the edit lands before the second, 1 s later.
    rx.on(path, answer(503, headers={"Retry-After": "1"}))
    job = session.upload(url=rx.url(path), format="jpeg")
    rx.wait_for(lambda: rx.requests_to(path), 10, "the first attempt")
    edit = session.api.post(f"{V1}/sessions/{session.sid}/images/{image}/ops",
                            json=[{"op": "rotate", "angle": 90}], token=session.token)
    assert edit.status == 200, edit.body
    assert session.image(image) != original
    edited = time.monotonic()
    job = session.wait(job["job"])
    assert job["state"] == "done" and job["attempts"] == 2, job
    first, second = rx.requests_to(path)
    assert second.started > edited
    assert first.files[0].data == second.files[0].data == original


def test_each_job_has_its_own_key_on_every_attempt(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 50))
    path = fresh("keys")
    rx.on(path, answer(500), answer(500), answer(500))  # the first job's 3 failures
    first = session.upload(url=rx.url(path), format="jpeg")
    first = session.wait(first["job"])
    second = session.wait(session.upload(url=rx.url(path), format="jpeg")["job"])
    assert first["state"] == second["state"] == "done"
    keys = [r.key for r in rx.requests_to(path)]
    assert keys == [first["idempotency_key"]] * 4 + [second["idempotency_key"]]
    assert first["idempotency_key"] != second["idempotency_key"]
    stored = {k: r for k, r in rx.documents.items() if r.path == path}
    assert set(stored) == {first["idempotency_key"], second["idempotency_key"]}


def test_a_job_is_seen_and_cancelled_only_through_its_session(svc, rx):
    owner, stranger = Session(svc), Session(svc)
    owner.add(noise_jpeg(80, 60, 52))
    path = fresh("private")
    rx.on(path, then=stall(30))  # keeps the job running
    job = owner.upload(url=rx.url(path))["job"]
    try:
        rx.wait_for(lambda: rx.requests_to(path), 10, "the attempt")
        for method in ("GET", "DELETE"):
            seen = stranger.api.request(method, f"{stranger.base}/{job}", token=stranger.token)
            assert_error(seen, 404, "not_found")
            wrong_token = owner.api.request(method, f"{owner.base}/{job}", token=stranger.token)
            assert wrong_token.status in (401, 403), wrong_token.body
        assert stranger.api.get(stranger.base, token=stranger.token).json() == []
        assert owner.job(job)["state"] == "running"
    finally:
        assert owner.cancel(job).status == 200
    assert owner.wait(job)["state"] == "cancelled"


# --- 2. retries, refusals, redirects


def test_500s_then_success_stores_one_document(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(160, 120, 60), noise_jpeg(160, 120, 61))
    path = fresh("500s")
    rx.on(path, answer(500, "oops"), answer(500, "oops"))
    with session.events() as events:
        job = session.upload(url=rx.url(path))
        events.wait(job["job"], "upload.done")
        retries = events.of(job["job"], "upload.retry")
    job = session.wait(job["job"])
    assert job["state"] == "done" and job["attempts"] == 3, job
    requests = rx.requests_to(path)
    assert [r.status for r in requests] == [500, 500, 200]
    assert all(r.complete and r.key == job["idempotency_key"] for r in requests)
    assert len({r.files[0].sha256 for r in requests}) == 1  # the same document each time
    assert [r.stored for r in requests] == [False, False, True]
    assert job["result"] == {"status": 200, "body": requests[-1].answer}
    assert [(e["attempt"], e["error"]["code"], e["error"]["status"]) for e in retries] == \
        [(1, "upload_failed", 500), (2, "upload_failed", 500)]
    assert all(0 < e["delay"] <= 2 for e in retries), retries


def test_429_retry_after_is_honoured(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 62))
    path = fresh("429")
    rx.on(path, answer(429, "slow down", {"Retry-After": "1"}))
    job = session.wait(session.upload(url=rx.url(path))["job"])
    assert job["state"] == "done" and job["attempts"] == 2, job
    first, second = rx.requests_to(path)
    assert first.status == 429 and second.stored
    gap = second.started - first.finished
    assert 0.9 <= gap <= 1.9, f"waited {gap:.2f} s after Retry-After: 1 (backoff 0.05 s)"


@pytest.fixture(scope="module")
def big_pages():
    """Two ~1.2 MB pages: a document far larger than what is read before a reset."""
    return [noise_jpeg(1000, 1000, 70, 95), noise_jpeg(1000, 1000, 71, 95)]


def test_connection_reset_mid_body_is_retried(svc, rx, big_pages):
    session = Session(svc)
    session.add(*big_pages)
    path = fresh("reset")
    rx.on(path, reset(after=65536))
    job = session.wait(session.upload(url=rx.url(path), format="zip")["job"])
    assert job["state"] == "done" and job["attempts"] == 2, job
    cut, whole = rx.requests_to(path)
    assert not cut.complete and cut.size == 65536 < job["progress"]["total"]
    assert cut.status is None and cut.key == whole.key == job["idempotency_key"]
    assert whole.stored and whole.files[0].size == job["files"][0]["bytes"]
    with zipfile.ZipFile(io.BytesIO(whole.files[0].data)) as archive:
        assert [archive.read(n) for n in archive.namelist()] == big_pages


@pytest.mark.parametrize("read", [0, 65536], ids=["before-body", "mid-body"])
def test_stalling_receiver_times_out_and_is_retried(svc, rx, big_pages, read):
    session = Session(svc)
    session.add(*big_pages)
    path = fresh("stall")
    rx.on(path, stall(5, read=read))
    job = session.wait(session.upload(url=rx.url(path))["job"])
    assert job["state"] == "done" and job["attempts"] == 2, job
    stalled, stored = rx.requests_to(path)
    assert stalled.step == "stall" and not stalled.complete and stored.stored
    # [uploader] timeout = 1: the second attempt did not wait for the 5 s stall.
    gap = stored.started - stalled.started
    assert 0.9 <= gap <= 4, f"second attempt {gap:.2f} s after the first"
    assert stored.files[0].size == job["files"][0]["bytes"]


def test_4xx_is_not_retried(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 63))
    path = fresh("422")
    body = '{"error": "missing field customer"}'
    rx.on(path, then=answer(422, body))
    with session.events() as events:
        job = session.upload(url=rx.url(path))
        event = events.wait(job["job"], "upload.error")
        assert events.of(job["job"], "upload.retry") == []
    job = session.wait(job["job"])
    assert job["state"] == "failed" and job["attempts"] == 1, job
    assert job["error"]["code"] == "upload_rejected" and job["error"]["status"] == 422, job
    assert job["result"] == {"status": 422, "body": body}
    assert (event["state"], event["code"], event["status"]) == ("failed", "upload_rejected", 422)
    time.sleep(0.5)  # well past any backoff: no second attempt
    assert len(rx.requests_to(path)) == 1
    assert_files_removed(svc, job["job"])


def test_gives_up_after_max_attempts(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 64))
    path = fresh("503")
    rx.on(path, then=answer(503, "down for maintenance"))
    job = session.wait(session.upload(url=rx.url(path))["job"])
    assert job["state"] == "failed" and job["attempts"] == MAX_ATTEMPTS, job
    assert job["error"]["code"] == "upload_failed" and job["error"]["status"] == 503, job
    assert job["result"] == {"status": 503, "body": "down for maintenance"}
    time.sleep(0.5)
    assert len(rx.requests_to(path)) == MAX_ATTEMPTS
    assert_files_removed(svc, job["job"])


@pytest.mark.parametrize("location", ["relative", "absolute"])
def test_307_to_the_same_origin_is_followed(svc, rx, location):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 65))
    path, target = fresh("moved"), fresh("new-home")
    rx.on(path, then=redirect(target if location == "relative" else rx.url(target)))
    job = session.wait(session.upload(url=rx.url(path))["job"])
    assert job["state"] == "done" and job["attempts"] == 1, job
    (moved,), (stored,) = rx.requests_to(path), rx.requests_to(target)
    assert moved.status == 307 and stored.stored
    assert moved.key == stored.key == job["idempotency_key"]
    assert moved.files[0].data == stored.files[0].data  # the body again, whole
    assert job["result"] == {"status": 200, "body": stored.answer}


@pytest.mark.parametrize("status", [307, 302])
def test_redirect_to_another_origin_is_refused(svc, rx, other, status):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 66))
    path = fresh(f"away-{status}")
    rx.on(path, then=redirect(other.url("/stolen"), status))
    job = session.wait(session.upload(url=rx.url(path))["job"])
    assert job["state"] == "failed" and job["attempts"] == 1, job
    assert job["error"]["code"] == "upload_redirect_refused", job
    assert job["error"]["status"] == status
    assert len(rx.requests_to(path)) == 1
    assert_nothing_arrives(other)


def test_redirect_loop_ends(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 67))
    path = fresh("loop")
    rx.on(path, then=redirect(path))
    job = session.wait(session.upload(url=rx.url(path))["job"])
    assert job["state"] == "failed" and job["error"]["code"] == "upload_redirect_refused", job
    assert len(rx.requests_to(path)) == 4  # max_redirects = 3 followed


# --- 3. not an open proxy


def test_disallowed_target_is_refused_before_anything_leaves(svc, rx, other):
    folders = set((svc.home / "upload").glob("*/"))
    session = Session(svc, origin=APP)  # a page of an allowed origin
    session.add(noise_jpeg(80, 60, 80))
    refused = session.post(url=other.url("/in"), format="pdf")
    error = assert_error(refused, 403, "upload_target_not_allowed")
    assert other.origin in error["message"]
    # The page cannot claim another origin for its session.
    smuggled = session.post(url=other.url("/in"), origin=other.origin)
    assert smuggled.status == 400, smuggled.body
    listed = session.api.get(session.base, token=session.token)
    assert listed.status == 200 and listed.json() == []
    # Through the broker, with or without an origin.
    with svc.client() as client:
        for origin in (None, APP, "http://127.0.0.1:1"):
            with pytest.raises(Error) as caught:
                client.call("uploader", "submit", {"session": session.sid,
                                                   "url": other.url("/in"), "origin": origin})
            assert caught.value.code == "upload_target_not_allowed"
    assert_nothing_arrives(other)
    assert set((svc.home / "upload").glob("*/")) <= folders, "a refused job left files"


def test_the_sessions_own_origin_needs_no_allowlist(svc, other, spare):
    before = len(spare.requests)
    svc.cli("allow", spare.origin, check=True)  # the receiver's origin is the page's origin

    def opened():
        reply = Api(svc, origin=spare.origin).post(f"{V1}/sessions", json={})
        return reply.status == 201
    poll_for(opened, 10, f"the gateway to allow {spare.origin}")
    session = Session(svc, origin=spare.origin)
    session.add(noise_jpeg(80, 60, 81))
    path = fresh("own")
    job = session.wait(session.upload(url=spare.url(path))["job"])
    assert job["state"] == "done", job
    (request,) = spare.requests_to(path)
    assert request.stored and request.key == job["idempotency_key"]
    # Only its own origin: another one is still refused.
    assert_error(session.post(url=other.url("/x")), 403, "upload_target_not_allowed")
    # And a page of another origin may not upload to it.
    stranger = Session(svc, origin=APP)
    stranger.add(noise_jpeg(80, 60, 82))
    assert_error(stranger.post(url=spare.url(fresh("own"))), 403, "upload_target_not_allowed")
    assert len(spare.requests) == before + 1
    assert_nothing_arrives(other)


def test_upload_targets_edits_apply_without_restart(svc, spare):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 83))
    path = fresh("late")
    before = len(spare.requests)
    assert_error(session.post(url=spare.url(path)), 403, "upload_target_not_allowed")
    pid = svc.pid("uploader")
    with upload_targets(svc, spare.url("/t0/")):  # the origin, but not this path
        assert_error(session.post(url=spare.url(path)), 403, "upload_target_not_allowed")
    with upload_targets(svc, spare.url("/")):
        job = session.wait(session.upload(url=spare.url(path))["job"])
        assert job["state"] == "done", job
    assert_error(session.post(url=spare.url(path)), 403, "upload_target_not_allowed")
    assert svc.pid("uploader") == pid
    assert [r.path for r in spare.requests[before:]] == [path]


# Paths under /ok/ as written that a receiver could resolve out of it: dot segments in
# every encoding (also double, overlong UTF-8, IIS's %u, full-width dots and after Tomcat's
# ;parameters), encoded separators and backslashes.
ESCAPES = ["/ok/../private", "/ok/./../private", "/ok/%2e%2e/private", "/ok/%2E%2E/private",
           "/ok/%2E./private", "/ok/.%2e/private", "/ok/..;/private", "/ok/..;x=1/private",
           "/ok/.;/../private", "/ok/..%5cprivate", "/ok/..%5Cprivate", "/ok/a%2f..%2f..%2fprivate",
           "/ok/%2e%2e%2fprivate", "/ok/..\\private", "/ok/%252e%252e/private",
           "/ok/%25252e%25252e/private", "/ok/%255cprivate/x", "/ok/%c0%ae%c0%ae/private",
           "/ok/%u002e%u002e/private", "/ok/%EF%BC%8E%EF%BC%8E/private"]


def test_a_target_path_prefix_cannot_be_escaped(svc, spare):
    """upload_targets = ORIGIN/ok/: no path may lead a receiver out of /ok/ (receivers
    resolve dot segments: /ok/../private is /private; Tomcat reads ..;/ as ../, IIS
    \\ and %5c as /), not even a redirect from inside it."""
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 84))
    before = len(spare.requests)
    bounce = "/ok/bounce"
    spare.on(bounce, then=redirect("..;/private"))
    with upload_targets(svc, spare.url("/ok/")):
        for fine in ("/ok/doc", "/ok/a/b.pdf", "/ok/v;rev=2/c.pdf", "/ok/...x/100%25.pdf"):
            job = session.wait(session.upload(url=spare.url(fine))["job"])
            assert job["state"] == "done", job
        assert_error(session.post(url=spare.url("/okay")), 403, "upload_target_not_allowed")
        for escape in ESCAPES:
            error = assert_error(session.post(url=spare.url(escape)), 403,
                                 "upload_target_not_allowed")
            assert "outside the allowed folder" in error["message"], (escape, error)
        job = session.wait(session.upload(url=spare.url(bounce))["job"])
        assert job["state"] == "failed", job
        assert job["error"]["code"] == "upload_redirect_refused", job
    # The page's own origin allows every path there, but none of these either.
    own = Session(svc, origin=APP)
    own.add(noise_jpeg(80, 60, 85))
    for escape in ("/ok/..;/private", "/ok/..%5cprivate"):
        assert_error(own.post(url=APP + escape), 403, "upload_target_not_allowed")
    time.sleep(0.5)
    assert [r.path for r in spare.requests[before:]] == [
        "/ok/doc", "/ok/a/b.pdf", "/ok/v;rev=2/c.pdf", "/ok/...x/100%.pdf", bounce]


@pytest.mark.parametrize("entry", ["/ok/../", "/ok/..;/", "/ok/%2e%2e/", "/ok/a%2fb/",
                                   "/ok/..%5c"])
def test_an_upload_targets_entry_that_escapes_its_own_path_is_refused(svc, spare, entry):
    """Such an entry in user_config.ini is a configuration error (the previous list stays
    in force, and start-up would fail on it)."""
    with pytest.raises(ValueError, match="the path has"):
        configlib.parse_upload_target(spare.url(entry))
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 86))
    with upload_targets(svc, spare.url(entry)):
        reply = session.post(url=spare.url("/private"))
        assert_error(reply, 403, "upload_target_not_allowed")
    assert not spare.requests_to("/private")


BAD_REQUESTS = [
    {"headers": {"Content-Length": "1"}},
    {"headers": {"content-type": "text/plain"}},
    {"headers": {"Transfer-Encoding": "chunked"}},
    {"headers": {"Host": "evil.example"}},
    {"headers": {"Idempotency-Key": "mine"}},
    {"headers": {"X-Split": "a\r\nX-Injected: 1"}},
    {"headers": {"X-Split": "a\nb"}},
    {"headers": {"X-Bad\r\nName": "a"}},
    {"headers": {"Bad Name": "a"}},
    {"headers": {"X-Number": 5}},
    {"headers": ["X-A", "b"]},
    {"fields": {"n": 1}},
    {"fields": {'a"b': "x"}},
    {"fields": {"a\r\nContent-Type: x": "y"}},
    {"fields": "a=b"},
    {"fields": {f"f{n}": "x" for n in range(101)}},
    {"fields": {"big": "x" * (64 * 1024 + 1)}},
    {"filename": "../../etc/passwd"},
    {"filename": 'a"b.pdf'},
    {"filename": "a\r\nb.pdf"},
    {"field_name": 'fi"le'},
    {"auth": {"user": "a:b", "password": "x"}},
    {"auth": "user:password"},
    {"method": "GET"},
    {"format": "gif"},
    {"page_format": "tiff", "format": "zip"},
]


def test_bad_headers_and_fields_are_400(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 85))
    path = fresh("bad")
    for extra in BAD_REQUESTS:
        reply = session.post(url=rx.url(path), **extra)
        assert reply.status == 400, (extra, reply.status, reply.body[:300])
        assert reply.json()["error"]["code"] == "invalid_argument", (extra, reply.body)
    for url in ("ftp://127.0.0.1/x", rx.url(path).replace("http://", "http://u:p@"),
                rx.url(path) + "#frag", "not a url", rx.url(path) + "\r\nX: y"):
        reply = session.post(url=url)
        assert reply.status == 400, (url, reply.status, reply.body[:300])
    time.sleep(0.3)
    assert rx.requests_to(path) == []
    assert session.api.get(session.base, token=session.token).json() == []


@pytest.mark.parametrize("extra", [{"headers": {"X-Currency": "€"}}, {"path": "/é"},
                                   {"path": "/q?name=é"}],
                         ids=["header-value", "url-path", "url-query"])
def test_what_http_cannot_carry_does_not_wedge_a_job(svc, rx, extra):
    """A header value beyond Latin-1 or a URL with raw non-ASCII: refused at once (400),
    or sent (the URL percent-encoded) -- never a job that crashes on every attempt."""
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 86))
    path = fresh("enc")
    url = rx.url(path + extra.get("path", ""))
    reply = session.post(url=url, headers=extra.get("headers", {}))
    if reply.status != 202:
        assert_error(reply, 400, "invalid_argument")
        return
    job = reply.json()
    try:
        final = poll_for(lambda: (state := session.job(job["job"]))["state"] in FINAL and state,
                         5, "the job to end")
    except AssertionError:
        state = session.job(job["job"])
        session.cancel(job["job"])
        raise AssertionError(f"accepted, then stuck: {state['state']} after "
                             f"{state['attempts']} attempts (max {MAX_ATTEMPTS}), error "
                             f"{state.get('error')}") from None
    assert final["state"] == "done", final
    (request,) = [r for r in rx.requests if r.key == job["idempotency_key"]]
    if "headers" in extra:
        assert request.headers["X-Currency"] == "€"
    else:
        assert request.path.startswith(path)


# --- 4. events over the session WebSocket


def test_progress_and_done_events_reach_the_page(svc_b, rx):
    # Service B: its timeout (10 s) covers the receiver still reading what the kernel
    # buffered (several MB on loopback) after the last byte was sent.
    session = Session(svc_b)
    session.add(*[noise_jpeg(1500, 1500, 90 + n, 95) for n in range(4)])  # ~10 MB
    path = fresh("progress")
    rx.on(path, then=store(rate=4e6))  # ~2.5 s: several progress events
    with session.events() as events:
        job = session.upload(url=rx.url(path), format="zip")
        done = events.wait(job["job"], "upload.done", timeout=30)
        seen = events.of(job["job"])
    job = session.wait(job["job"])
    assert job["state"] == "done", job
    (request,) = rx.requests_to(path)
    topics = [e["topic"] for e in seen]
    assert "upload.queued" in topics, topics
    assert topics[-1] == "upload.done" and "upload.error" not in topics, topics
    progress = [e for e in seen if e["topic"] == "upload.progress"]
    assert len(progress) >= 3, progress
    total = job["progress"]["total"]
    sent = [e["sent"] for e in progress]
    assert sent == sorted(sent) and len(set(sent)) == len(sent), sent
    assert 0 < sent[0] < total and sent[-1] == total, (sent, total)
    assert all(e["total"] == total and e["attempt"] == 1 for e in progress)
    assert done["status"] == 200 and done["body"] == request.answer
    assert done["state"] == "done"
    assert topics.index("upload.done") > topics.index("upload.progress")


# --- 5. cancel


def test_cancel_a_running_job(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 95))
    path = fresh("cancel")
    rx.on(path, then=stall(30))
    with session.events() as events:
        job = session.upload(url=rx.url(path))
        rx.wait_for(lambda: rx.requests_to(path), 10, "the attempt")
        files = list(job_folder(svc, job["job"]).iterdir())
        assert [f.name for f in files] == ["scan.pdf"] and files[0].stat().st_size > 0
        reply = session.cancel(job["job"])
        assert reply.status == 200, reply.body
        assert reply.json()["state"] in ("running", "cancelled")
        event = events.wait(job["job"], "upload.error", timeout=10)
    assert (event["state"], event["code"]) == ("cancelled", "cancelled")
    job = session.wait(job["job"], timeout=1)
    assert job["state"] == "cancelled" and job["error"]["code"] == "cancelled", job
    assert_files_removed(svc, job["job"])
    count = len(rx.requests_to(path))
    time.sleep(1.5)  # no attempt after the cancel
    assert len(rx.requests_to(path)) == count
    assert not any(r.path == path for r in rx.documents.values())
    # Cancelling again changes nothing.
    again = session.cancel(job["job"])
    assert again.status == 200 and again.json()["state"] == "cancelled"


def test_cancel_a_job_waiting_for_its_retry(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 96))
    path = fresh("cancel-queued")
    rx.on(path, then=answer(503, headers={"Retry-After": "2"}))
    job = session.upload(url=rx.url(path))
    waiting = poll_for(lambda: (s := session.job(job["job"]))["state"] == "queued"
                       and s["attempts"] == 1 and s, 10, "the job to wait for its retry")
    assert waiting["next_attempt"] > time.time()
    reply = session.cancel(job["job"])
    assert reply.status == 200 and reply.json()["state"] == "cancelled", reply.body
    assert_files_removed(svc, job["job"])
    time.sleep(2.3)
    assert len(rx.requests_to(path)) == 1
    assert session.job(job["job"])["state"] == "cancelled"


def test_cancel_is_prompt_whatever_the_timeout(svc_b, rx):
    """[uploader] timeout = 10 here: a cancel must not wait for the stalled attempt's
    timeout to take effect."""
    session = Session(svc_b)
    session.add(noise_jpeg(80, 60, 97))
    path = fresh("cancel-long")
    rx.on(path, then=stall(60))
    job = session.upload(url=rx.url(path))
    rx.wait_for(lambda: rx.requests_to(path), 10, "the attempt")
    time.sleep(0.3)
    start = time.monotonic()
    assert session.cancel(job["job"]).status == 200
    final = session.wait(job["job"], timeout=20)
    took = time.monotonic() - start
    assert final["state"] == "cancelled", final
    assert took < 3, f"the cancel took {took:.1f} s to take effect (state running till then)"


# --- 6. crash safety


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state


def job_state(client, job: str) -> dict | None:
    try:
        return client.call("uploader", "job", {"job": job}, timeout=10)
    except Error:
        return None  # the uploader is restarting


def test_kill_9_of_the_uploader_during_50_deliveries(svc_b, rx):
    page = noise_jpeg(200, 150, 100)
    path = fresh("crash")
    rx.on(path, then=store(delay=0.2))  # stored, then the answer comes 0.2 s later
    with svc_b.client() as client:
        sid = client.call("buffer", "open_session", {})["session"]
        client.call("buffer", "add", {"session": sid}, blobs=[page])
        rx.hold()
        try:
            jobs = [client.call("uploader", "submit", {"session": sid, "url": rx.url(path),
                                                       "title": f"doc {n}"})
                    for n in range(50)]
        finally:
            rx.release()
        keys = {j["idempotency_key"] for j in jobs}
        assert len(keys) == 50
        kills = 0
        pid = svc_b.pid("uploader")

        def delivered() -> int:
            return len([r for r in rx.documents.values() if r.path == path])
        for _ in range(5):
            time.sleep(0.5)
            # Mid-transfer: a request is being handled. A restarted uploader may take
            # seconds to deliver again on a loaded machine: wait for that, or for the end.
            rx.wait_for(lambda: rx.in_progress(path) or delivered() >= 50, 60,
                        "a request in progress")
            if delivered() >= 50:
                break
            kill(pid)
            kills += 1
            pid = svc_b.wait_running("uploader", other_than=pid, timeout=30)
        assert kills >= 3, f"only {kills} kills landed: the deliveries ended too soon"

        def all_final():
            states = [job_state(client, j["job"]) for j in jobs]
            return all(s and s["state"] in FINAL for s in states) and states
        states = poll_for(all_final, 90, "all 50 jobs to end", every=0.5)
    assert [s["state"] for s in states] == ["done"] * 50, \
        [(s["job"], s["state"], s.get("error")) for s in states if s["state"] != "done"]
    stored = {k: r for k, r in rx.documents.items() if r.path == path}
    assert set(stored) == keys, f"missing {len(keys - set(stored))}, " \
                                f"unknown {len(set(stored) - keys)}"
    for number, (job, state) in enumerate(zip(jobs, states, strict=True)):
        document = stored[job["idempotency_key"]]
        assert document.headers["X-Scanbridge-Job"] == job["job"]
        (part,) = document.files
        assert part.size == job["files"][0]["bytes"]
        with pymupdf.open(stream=part.data, filetype="pdf") as doc:
            assert doc.page_count == 1
            assert doc.metadata["title"] == f"doc {number}"
        assert state["result"]["status"] == 200
    requests = rx.requests_to(path)
    resent = [r for r in requests if r.duplicate or not r.complete or r.status is None]
    assert len(requests) > 50 and resent, "no request was cut by a kill"
    # A kill between a job's end and its folder's removal leaves the folder: the restart
    # after that kill removes it (test_a_restart_removes_what_a_kill_left_behind).
    poll_for(lambda: not job_folders(svc_b), 10, "every job folder to be removed")


def job_folders(svc: Service) -> list[Path]:
    return [p for p in (svc.home / "upload").iterdir() if p.is_dir()]


def test_a_restart_removes_what_a_kill_left_behind(svc_b, rx):
    """The uploader is killed (-9) just after a job ended, before it removed the job's
    folder, and after the buffer wrote a folder for a job that no longer exists: the
    restart removes both, and a job still being delivered keeps its document."""
    session = Session(svc_b)
    session.add(noise_jpeg(80, 60, 101))
    ended = session.wait(session.upload(url=rx.url(fresh("ended")))["job"])
    assert ended["state"] == "done", ended
    assert_files_removed(svc_b, ended["job"])
    held_path = fresh("held")
    rx.on(held_path, then=stall(60))
    held = session.upload(url=rx.url(held_path))["job"]
    rx.wait_for(lambda: rx.in_progress(held_path), 10, "the held job's attempt")
    held_files = {p.name: p.read_bytes() for p in job_folder(svc_b, held).iterdir()}
    assert held_files
    pid = svc_b.pid("uploader")
    os.kill(pid, signal.SIGSTOP)  # frozen where a kill -9 would have caught it
    try:
        leftovers = [job_folder(svc_b, ended["job"]), job_folder(svc_b, os.urandom(16).hex())]
        for folder in leftovers:
            folder.mkdir(mode=0o700)
            (folder / "scan.pdf").write_bytes(b"%PDF-1.4 left by a crash")
    finally:
        kill(pid)
    svc_b.wait_running("uploader", other_than=pid, timeout=30)
    poll_for(lambda: not any(f.exists() for f in leftovers), 10,
             "the restart to remove the ended job's folder and the orphan")
    assert session.job(held)["state"] in ("queued", "running")
    assert {p.name: p.read_bytes() for p in job_folder(svc_b, held).iterdir()} == held_files
    assert session.job(ended["job"])["state"] == "done"  # the record stays for job_keep
    assert session.cancel(held).json()["state"] == "cancelled"
    assert_files_removed(svc_b, held)


class RssSampler:
    """VmRSS of a process every 20 ms while in the ``with`` block."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            self.samples.append(int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) << 10)
            time.sleep(0.02)

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()


def test_500_mb_upload_in_constant_memory(svc_b, rx):
    free = shutil.disk_usage(svc_b.home).free
    if free < 3 << 30:
        pytest.skip(f"needs 3 GB free disk for a 500 MB buffer and its PDF; "
                    f"{free / 2**30:.1f} GB free at {svc_b.home}")
    page = noise_jpeg(3000, 3000, 7, 95)  # ~10 MB
    assert 8e6 < len(page) < 13e6
    path = fresh("big")
    rx.on(path, then=store(keep=False))  # hashes the parts, keeps nothing
    with svc_b.client() as client:
        sid = client.call("buffer", "open_session", {})["session"]
        try:  # the session's 500 MB are removed whatever happens
            for n in range(50):  # a COM segment makes each file different (no sharing)
                unique = page[:2] + b"\xff\xfe\x00\x06" + n.to_bytes(4, "big") + page[2:]
                client.call("buffer", "add", {"session": sid}, blobs=[unique], timeout=60)
            pid = svc_b.pid("uploader")
            job = client.call("uploader", "submit", {"session": sid, "url": rx.url(path)},
                              timeout=600)
            (document,) = job["files"]
            # Opened at once: the file stays readable after the job removes it.
            with open(job_folder(svc_b, job["job"]) / document["name"], "rb") as source, \
                    RssSampler(pid) as rss:
                digest = hashlib.sha256()
                while block := source.read(1 << 20):
                    digest.update(block)
                final = poll_for(lambda: (s := job_state(client, job["job"])) and
                                 s["state"] in FINAL and s, 120, "the 500 MB upload")
        finally:
            client.call("buffer", "close_session", {"session": sid}, timeout=60)
    assert document["bytes"] > 480e6, document
    assert final["state"] == "done" and final["attempts"] == 1, final
    (request,) = rx.requests_to(path)
    (part,) = request.files
    assert request.complete and part.data is None
    assert part.size == document["bytes"]
    assert part.sha256 == digest.hexdigest()
    assert svc_b.pid("uploader") == pid
    assert len(rss.samples) >= 5, rss.samples
    assert max(rss.samples) < 100 << 20, \
        f"uploader RSS reached {max(rss.samples) / 2**20:.0f} MB"


def test_kill_9_of_the_whole_service_mid_transfer(svc_b, rx, big_pages):
    path = fresh("blackout")
    rx.on(path, stall(60, read=300_000))  # the first attempt hangs mid-body
    with svc_b.client() as client:
        sid = client.call("buffer", "open_session", {})["session"]
        client.call("buffer", "add", {"session": sid}, blobs=[big_pages[0]])
        client.call("buffer", "add", {"session": sid}, blobs=[big_pages[1]])
        job = client.call("uploader", "submit", {"session": sid, "url": rx.url(path)})
    rx.wait_for(lambda: rx.requests_to(path) and rx.requests_to(path)[0].size >= 300_000,
                10, "the transfer to be under way")
    supervisord = int((svc_b.home / "run" / "supervisord.pid").read_text())
    pids = [p["pid"] for p in svc_b.processes().values() if p["pid"]]
    for pid in [supervisord, *pids]:
        kill(pid)
    poll_for(lambda: all(gone(p) for p in [supervisord, *pids]), 10, "every process to die")
    folder = job_folder(svc_b, job["job"])
    assert [p.stat().st_size for p in folder.iterdir()] == [job["files"][0]["bytes"]]
    svc_b.start()
    with svc_b.client() as client:
        final = poll_for(lambda: (s := job_state(client, job["job"])) and
                         s["state"] in FINAL and s, 30, "the job after the restart")
    assert final["state"] == "done" and final["attempts"] == 2, final
    cut, stored = rx.requests_to(path)
    assert not cut.complete and stored.stored
    assert cut.key == stored.key == job["idempotency_key"]
    with pymupdf.open(stream=stored.files[0].data, filetype="pdf") as doc:
        assert [doc.extract_image(doc[n].get_images()[0][0])["image"] for n in (0, 1)] == \
            big_pages
    assert_files_removed(svc_b, job["job"])
