"""The uploader against a real receiver: what arrives, and what the page hears.

What a receiver gets for every format (pdf, tiff, jpeg and png per page, zip): the form
fields, custom headers, the file name (a non-ASCII one), the file field name, basic auth
and bytes equal to what the buffer serves; PUT with the single file; the document as it
was when the job was accepted; one Idempotency-Key per job, the same on every attempt; a
job seen and cancelled only through its session. Events over the session WebSocket
(progress up to the total, then done with the receiver's answer), and a ~500 MB PDF sent
with the uploader's RSS below 100 MB.

tests/support/uploader.py holds the services, receivers and sessions the uploader tests
share.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
import zipfile

import pymupdf
import pytest
from PIL import Image

from tests.support.memory import RssSampler
from tests.support.receiver import Receiver, answer, stall, store
from tests.support.service import Service
from tests.support.stack import poll_for
from tests.support.uploader import (AUTH, FIELD, FIELDS, FINAL, HEADERS, OPTIONS, STEM, V1,
                                    Session, assert_error, assert_files_removed, basic, fresh,
                                    job_folder, job_state, noise_jpeg, pixels)
from tests.support.uploader import rx, svc, svc_b  # fixtures

pytestmark = pytest.mark.timeout(120)


# --- what arrives, for each format


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


# --- events over the session WebSocket


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



# --- a large document


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
