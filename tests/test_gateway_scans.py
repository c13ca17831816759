"""The gateway's v1 scan jobs over raw HTTP: 202 and Location, polling to done with the
pages stored, another session's job, cancel of a running batch, invalid options, unknown
fields, a batch on the flatbed.

One service shared with the other test_gateway_* modules of tests/support/gateway_api.py.
"""

from __future__ import annotations

import time

import pytest

from tests.support.gateway_api import (FAST, FEEDER_PAGES, PAGE_SIZE, SLOW_BATCH, Session,
                                       assert_error)
from tests.support.gateway_api import service, session  # fixtures
from tests.support.stack import poll_for

pytestmark = pytest.mark.timeout(120)


# --- scans


def test_a_scan_is_accepted_with_a_location_and_polled_to_done_with_its_pages_stored(session):
    answer = session.post("/scans", json={"source": "test:0", "pages": 2, "options": FAST})
    assert answer.status == 202, answer.body
    job = answer.json()
    assert job["state"] == "running"
    assert job["pages"] == 0 and job["images"] == []
    assert "progress" in job and job["settings"]["resolution"] == 75
    location = answer.headers["Location"]
    assert location == f"{session.path}/scans/{job['job']}"

    def finished():
        polled = session.api.get(location, token=session.token)
        assert polled.status == 200, polled.body
        return polled.json()["state"] != "running" and polled.json()
    done = poll_for(finished, 30, "the scan job done", every=0.1)
    assert done["job"] == job["job"]
    assert done["state"] == "done", done
    assert done["pages"] == 2 and len(done["images"]) == 2

    images = session.images()
    assert [info["id"] for info in images] == done["images"]
    for info in images:
        assert (info["width"], info["height"]) == PAGE_SIZE
        assert info["source"] == "test:0"
        assert info["dpi"] == [75, 75]
    assert session.get().json()["images"] == 2

    jobs = session.get("/scans")
    assert jobs.status == 200
    assert [listed["job"] for listed in jobs.json()] == [job["job"]]
    assert jobs.json()[0]["state"] == "done"


def test_another_sessions_job_is_not_found(api, session):
    job = session.scan()
    other = Session(api, *api.open_session())
    try:
        assert other.get("/scans").json() == []
        assert_error(other.get(f"/scans/{job['job']}"), 404, "not_found")
        assert_error(other.delete(f"/scans/{job['job']}"), 404, "not_found")
        assert_error(other.get(f"/images/{job['images'][0]}"), 404, "not_found")
    finally:
        other.delete()
    assert_error(session.get("/scans/nosuchjob"), 404, "not_found")


def test_deleting_a_running_batch_cancels_it(session):
    answer = session.post("/scans", json={"source": "test:1", "options": SLOW_BATCH,
                                          "batch": True})
    assert answer.status == 202, answer.body
    job = answer.json()["job"]
    poll_for(lambda: session.get(f"/scans/{job}").json()["pages"] >= 1, 20,
             "the batch's first page", every=0.05)
    cancelled = session.delete(f"/scans/{job}")
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json()["job"] == job
    assert cancelled.json()["state"] == "cancelled"

    final = session.get(f"/scans/{job}").json()
    assert final["state"] == "cancelled"
    assert 1 <= final["pages"] < FEEDER_PAGES
    time.sleep(1.0)  # a page after the cancel would show up by now
    final = session.get(f"/scans/{job}").json()
    assert final["state"] == "cancelled"
    assert session.ids() == final["images"]
    assert len(final["images"]) == final["pages"]
    again = session.delete(f"/scans/{job}")  # cancelling an ended job changes nothing
    assert again.status == 200 and again.json()["state"] == "cancelled"


def test_a_scan_with_an_invalid_option_is_422_and_adds_no_image(session):
    for options in ({"resolution": 99999}, {"mode": "sepia"}, {"no-such-option": 1}):
        answer = session.post("/scans", json={"source": "test:0", "options": options})
        error = assert_error(answer, 422, "invalid_option")
        assert error["option"] in ("resolution", "mode", "no-such-option"), error
    assert session.images() == []
    assert session.get("/scans").json() == []


def test_a_scan_body_with_an_unknown_or_missing_field_is_400(session):
    error = assert_error(session.post("/scans", json={"source": "test:0", "colour": "red"}),
                         400, "invalid_argument")
    assert "colour" in error["message"]
    assert_error(session.post("/scans", json={"options": FAST}), 400, "invalid_argument")
    assert_error(session.post("/scans", json={"source": "test:0", "options": "fast"}), 400,
                 "invalid_argument")
    assert_error(session.post("/scans", json={"source": "test:0", "pages": 0}), 400,
                 "invalid_argument")
    assert_error(session.post("/scans", json={"source": "test:9"}), 404, "not_found")
    assert session.images() == []


def test_a_batch_scan_on_the_flatbed_is_422(session):
    answer = session.post("/scans", json={"source": "test:0", "batch": True,
                                          "options": {"source": "flatbed", **FAST}})
    error = assert_error(answer, 422, "invalid_option")
    assert error["option"] == "source"
    assert session.images() == []
