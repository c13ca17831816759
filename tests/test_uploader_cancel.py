"""Cancelling an upload job: a running one (its attempt cut, its files removed, no
attempt after), one waiting for its retry, and a cancel that takes effect at once whatever
``[uploader] timeout`` is.
"""

from __future__ import annotations

import time

import pytest

from tests.support.receiver import answer, stall
from tests.support.stack import poll_for
from tests.support.uploader import Session, assert_files_removed, fresh, job_folder, noise_jpeg
from tests.support.uploader import rx, svc, svc_b  # fixtures

pytestmark = pytest.mark.timeout(120)


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
