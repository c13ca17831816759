"""Retries of the uploader, against a real receiver: 500s then success (one document
stored), 429 with Retry-After, a connection reset mid-body and a receiver that stalls
longer than ``[uploader] timeout``; never on 422; giving up after ``max_attempts``;
redirects (307 on the same origin followed, to another origin refused with no request
reaching it, a loop ended).
"""

from __future__ import annotations

import io
import time
import zipfile

import pytest

from tests.support.receiver import answer, redirect, reset, stall
from tests.support.uploader import (MAX_ATTEMPTS, Session, assert_files_removed,
                                    assert_nothing_arrives, fresh, noise_jpeg)
from tests.support.uploader import big_pages, other, rx, svc  # fixtures

pytestmark = pytest.mark.timeout(120)


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
