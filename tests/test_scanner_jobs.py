"""The scanner actor's jobs, as a real process behind a real broker scanning from SANE's
test backend (the stacks: tests/support/scanner.py): the feeder and page counts, device
errors, cancel and concurrency on slow devices, a stop during a job, no files or threads
left behind, and job queries.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.events import Events
from tests.support.scanner import (FEEDER_PAGES, SLOW, SMALL, error_of, job_events, listed,
                                   of_job, option, scan, scan_to_end, scanner_process,
                                   start_scanning)

pytestmark = pytest.mark.timeout(60)


# --- feeder and page counts


def test_an_adf_batch_stores_all_ten_pages_in_order_each_before_its_event(stack):
    client, session = start_scanning(stack)
    events = Events(stack, b"scan.")

    job = scan(client, session, {**SMALL, "source": "adf"}, batch=True)
    pages, found_at_once = [], []
    while True:
        topic, body = events.next(of_job(job["job"]), timeout=20)
        if topic == "scan.page":
            # The buffer must know the page when its event arrives: ask at once.
            info = client.call("buffer", "info", {"session": session,
                                                  "image": body["image"]["id"]}, timeout=10)
            found_at_once.append(info["id"])
            pages.append(body)
        elif topic in ("scan.done", "scan.error"):
            break

    assert job["state"] == "running" and job["settings"]["source"] == "Automatic Document Feeder"
    assert topic == "scan.done", body
    assert body["state"] == "done" and body["pages"] == FEEDER_PAGES
    assert [p["page"] for p in pages] == list(range(1, FEEDER_PAGES + 1))
    assert [p["pages"] for p in pages] == list(range(1, FEEDER_PAGES + 1))
    ids = [p["image"]["id"] for p in pages]
    assert body["images"] == ids == found_at_once
    assert len(set(ids)) == FEEDER_PAGES
    assert [info["id"] for info in listed(client, session)] == ids
    for page in pages:
        assert (page["image"]["width"], page["image"]["height"]) == (295, 147)
        assert page["image"]["meta"]["page"] == page["page"]
    assert client.call("scanner", "job", {"job": job["job"]}, timeout=10)["images"] == ids


def test_pages_on_the_flatbed_scans_that_many_and_batch_needs_the_feeder(stack):
    client, session = start_scanning(stack)

    topic, done = scan_to_end(client, stack, session, {**SMALL, "source": "flatbed"}, pages=3)

    assert topic == "scan.done" and done["pages"] == 3, done
    assert [info["id"] for info in listed(client, session)] == done["images"]

    error = error_of(scan, client, session, {**SMALL, "source": "flatbed"}, batch=True)
    assert error.code == "invalid_option" and error.details["option"] == "source"
    assert "Automatic Document Feeder" in error.details["allowed"]["values"]
    assert len(client.call("scanner", "jobs", {"session": session}, timeout=10)) == 1
    assert len(listed(client, session)) == 3


def test_more_pages_than_the_feeder_holds_fails_feeder_empty_keeping_the_ten(stack):
    client, session = start_scanning(stack)

    topic, end = scan_to_end(client, stack, session, {**SMALL, "source": "adf"}, pages=12)

    assert topic == "scan.error" and end["state"] == "failed", end
    assert end["code"] == "feeder_empty" and end["error"]["code"] == "feeder_empty"
    assert "10 of 12" in end["message"], end["message"]
    # Every page the device read is kept: the feeder running out ends the job, not the pages.
    assert end["pages"] == FEEDER_PAGES, f"{end['pages']} pages kept of {FEEDER_PAGES} read"
    assert [info["id"] for info in listed(client, session)] == end["images"]
    state = client.call("scanner", "job", {"job": end["job"]}, timeout=10)
    assert state["state"] == "failed" and state["pages"] == FEEDER_PAGES


# --- device errors


@pytest.mark.parametrize("status, source, code", [
    ("SANE_STATUS_JAMMED", "flatbed", "jammed"),
    ("SANE_STATUS_COVER_OPEN", "flatbed", "cover_open"),
    ("SANE_STATUS_NO_DOCS", "adf", "feeder_empty"),
    ("SANE_STATUS_IO_ERROR", "flatbed", "io_error")])
def test_a_device_error_ends_the_job_with_its_code(stack, status, source, code):
    client, session = start_scanning(stack)

    topic, end = scan_to_end(client, stack, session, {**SMALL, "source": source,
                                                       "read-return-value": status})

    assert topic == "scan.error", end
    assert end["state"] == "failed" and end["code"] == code and end["error"]["code"] == code
    assert end["message"] and end["pages"] == 0 and end["images"] == []
    assert listed(client, session) == []
    state = client.call("scanner", "job", {"job": end["job"]}, timeout=10)
    assert state["state"] == "failed" and state["error"]["code"] == code
    sources = client.call("scanner", "sources", {}, timeout=10)
    assert not any(s["busy"] for s in sources), "the failed job still holds the device"


# --- slow devices: cancel and concurrency


def test_cancel_ends_a_slow_scan_within_a_second_and_the_device_scans_again(stack):
    client, session = start_scanning(stack)
    events = Events(stack, b"scan.")
    job = scan(client, session, SLOW)["job"]
    events.next(of_job(job, "scan.progress"), timeout=10)

    asked = time.monotonic()
    cancelled = client.call("scanner", "cancel", {"job": job}, timeout=10)
    topic, end = events.next(of_job(job, "scan.done", "scan.error"), timeout=5)
    took = time.monotonic() - asked
    print(f"\ncancel to scan.done: {took * 1000:.0f} ms")

    assert took < 1.0, f"the job ended {took:.2f} s after the cancel"
    assert topic == "scan.done" and end["state"] == "cancelled", end
    assert cancelled["state"] == "cancelled"
    assert client.call("scanner", "job", {"job": job}, timeout=10)["state"] == "cancelled"

    # The device is free and scans right away (read-delay off again: options stay set).
    topic, done = scan_to_end(client, stack, session, {**SMALL, "read-delay": False})
    assert topic == "scan.done" and done["pages"] == 1, done
    assert (listed(client, session)[-1]["width"], listed(client, session)[-1]["height"]) == (
        295, 147)

    # No page was acknowledged before the cancel, so none is kept: a half-read page is
    # not a page.
    assert end["images"] == [] and end["pages"] == 0, end
    assert cancelled["images"] == []
    assert [info["id"] for info in listed(client, session)] == done["images"]


def test_a_second_job_on_a_busy_device_is_refused_while_the_other_device_scans(stack):
    client, session = start_scanning(stack)
    events = Events(stack, b"scan.")
    slow = scan(client, session, SLOW)["job"]
    events.next(of_job(slow, "scan.progress"), timeout=10)
    try:
        error = error_of(scan, client, session, SMALL)
        assert error.code == "device_busy" and slow in error.message
        busy = {s["id"]: s["busy"] for s in client.call("scanner", "sources", {}, timeout=10)}
        assert busy == {"test:0": True, "test:1": False}
        shown = client.call("scanner", "options", {"source": "test:0"}, timeout=10)
        assert shown["busy"] is True and shown["job"] == slow
        assert option(shown, "resolution")["value"] == 300.0

        other = scan(client, session, SMALL, source="test:1")["job"]
        topic, done = job_events(events, other)[-1]
        assert topic == "scan.done" and done["pages"] == 1, done
        assert listed(client, session)[0]["source"] == "test:1"
        assert client.call("scanner", "job", {"job": slow}, timeout=10)["state"] == "running"
    finally:
        client.call("scanner", "cancel", {"job": slow}, timeout=10)
    assert [j["state"] for j in client.call("scanner", "jobs", {"session": session},
                                            timeout=10)] == ["cancelled", "done"]


def test_a_scanner_stopped_during_a_job_fails_it_with_shutting_down_and_exits_cleanly(stack):
    client, session = start_scanning(stack)
    events = Events(stack, b"scan.")
    job = scan(client, session, SLOW)["job"]
    events.next(of_job(job, "scan.progress"), timeout=10)
    proc = scanner_process(stack)

    proc.terminate()  # as supervisord or the monitor's idle stop do
    proc.wait(15)
    try:
        topic, end = events.next(of_job(job, "scan.done", "scan.error"), timeout=2)
    except AssertionError:
        topic, end = None, {}

    assert proc.returncode == 0, (
        f"the scanner did not stop cleanly on SIGTERM (exit status {proc.returncode})")
    assert topic == "scan.error", f"no end event for the job ({topic}, {end})"
    assert end["code"] == "shutting_down" and end["state"] == "failed", end


def test_many_jobs_leave_no_open_files_or_threads_behind(stack):
    client, session = start_scanning(stack)
    task = Path(f"/proc/{scanner_process(stack).pid}")

    def used() -> tuple[int, int]:
        return len(list((task / "fd").iterdir())), len(list((task / "task").iterdir()))

    for number in range(30):
        assert scan_to_end(client, stack, session, {"resolution": 20})[0] == "scan.done"
        if number == 4:
            after_five = used()
    # Each job runs two threads of its own that publish events: nothing of them may stay.
    # Fewer is fine: a file SQLite or the runtime holds for a moment may be closed by now.
    files, threads = used()
    assert files <= after_five[0] and threads <= after_five[1], (used(), after_five)


# --- job queries


def test_job_queries_and_not_found_errors(stack):
    client, session = start_scanning(stack)

    topic, done = scan_to_end(client, stack, session, SMALL, pages=2)

    assert topic == "scan.done", done
    state = client.call("scanner", "job", {"job": done["job"]}, timeout=10)
    assert state["state"] == "done" and state["pages"] == 2 and state["error"] is None
    assert state["images"] == done["images"] == [i["id"] for i in listed(client, session)]
    assert state["session"] == session and state["source"] == "test:0"
    assert client.call("scanner", "job", {"job": done["job"], "session": session},
                       timeout=10)["state"] == "done"
    assert [j["job"] for j in client.call("scanner", "jobs", {"session": session},
                                          timeout=10)] == [done["job"]]
    # A finished job cannot be cancelled any more: cancel just tells its state.
    assert client.call("scanner", "cancel", {"job": done["job"]}, timeout=10)["state"] == "done"

    for op, args in (("job", {"job": "0123456789abcdef"}),
                     ("job", {"job": done["job"], "session": "another-session"}),
                     ("cancel", {"job": "0123456789abcdef"})):
        assert error_of(client.call, "scanner", op, args, timeout=10).code == "not_found", op
    error = error_of(scan, client, "0123456789abcdef0123456789abcdef", SMALL)
    assert error.code == "not_found"
    error = error_of(scan, client, session, SMALL, source="test:7")
    assert error.code == "not_found" and "test:0" in error.message
    assert error_of(client.call, "scanner", "options", {"source": "nosuch"},
                    timeout=10).code == "not_found"
    assert len(client.call("scanner", "jobs", {"session": session}, timeout=10)) == 1
    assert len(listed(client, session)) == 2
