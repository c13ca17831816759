"""The scanner actor as a real process behind a real broker, scanning from SANE's test backend.

Every test starts ``python -m broker.broker``, ``python -m actors.buffer`` and ``python -m
actors.scanner`` in a fresh home (fast heartbeats, see conftest.py) and talks to them over
the wire only. Only the embedded SANE ``test`` backend is used (``[scanner]
system_scanners = false``: probing the system's backends takes seconds). The test devices
``test:0`` and ``test:1`` draw pictures of the asked size and mode, have a feeder that is
empty after 10 pages, and can be told to be slow (``read-delay``) or to fail a read
(``read-return-value``). Results are checked in the buffer: pixel size and mode of the
stored page, decoded with Pillow.

No monitor runs in these stacks: the scanner's hold/release requests to it (the scanner is
an on-demand program) go unanswered, which must delay neither a scan nor its events.

The test device keeps option values between opens; the scanner sets them back to the
device's defaults before every request, which one test checks.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from broker.client import Client
from broker.config import CHECKOUT
from broker.protocol import Error
from tests.support.events import Events
from tests.support.stack import wait_service, write_ini

pytestmark = pytest.mark.timeout(60)

AREA = {"left": 10, "top": 0, "width": 100, "height": 50}  # mm
SMALL = {"resolution": 75, "area": AREA}  # 295 x 147 pixels
FEEDER_PAGES = 10  # the test device's feeder is empty after 10 pages
SLOW = {"mode": "color", "resolution": 300, "read-delay": True,
        "read-delay-duration": 200000}  # 0.2 s per read: a full page takes ~20 s


# --- helpers


def pixels(width_mm: float, height_mm: float, dpi: int) -> tuple[int, int]:
    """The test device's page size in pixels for an area in mm."""
    return int(width_mm / 25.4 * dpi), int(height_mm / 25.4 * dpi)


def start_scanning(stack, scanner_ini: str = "") -> tuple[Client, str]:
    """Broker, buffer and scanner running; returns a client and an open buffer session.
    ``scanner_ini``: more lines for the ``[scanner]`` section."""
    ini = (stack.home / "ini" / "DSConfiguration.ini").read_text()  # fast heartbeats
    write_ini(stack.home, "DSConfiguration.ini",
              ini + "[scanner]\nsystem_scanners = false\n" + scanner_ini)
    stack.broker()
    client = stack.client()
    stack.actor("buffer")
    stack.actor("scanner")
    wait_service(client, "buffer")
    wait_service(client, "scanner")
    return client, client.call("buffer", "open_session", {}, timeout=10)["session"]


def scanner_process(stack) -> subprocess.Popen:
    return next(proc for proc in stack.procs if "actors.scanner" in proc.args)


def scan(client: Client, session: str, options: dict | None = None, source: str = "test:0",
         **kwargs) -> dict:
    args = {"session": session, "source": source, **kwargs}
    if options is not None:
        args["options"] = options
    return client.call("scanner", "scan", args, timeout=10)


def error_of(fn, *args, **kwargs) -> Error:
    with pytest.raises(Error) as caught:
        fn(*args, **kwargs)
    return caught.value


def of_job(job: str, *topics: str):
    return lambda topic, body: body.get("job") == job and (not topics or topic in topics)


def job_events(events: Events, job: str, timeout: float = 20) -> list[tuple[str, dict]]:
    """The job's events up to and including its scan.done or scan.error."""
    seen = []
    end = time.monotonic() + timeout
    while True:
        topic, body = events.next(of_job(job), max(0.1, end - time.monotonic()))
        seen.append((topic, body))
        if topic in ("scan.done", "scan.error"):
            return seen


def scan_to_end(client: Client, stack, session: str, options: dict | None = None,
                **kwargs) -> tuple[str, dict]:
    """Scan and wait for the job's last event: (scan.done | scan.error, body)."""
    events = Events(stack, b"scan.")  # subscribed before the job starts
    job = scan(client, session, options, **kwargs)["job"]
    return job_events(events, job)[-1]


def listed(client: Client, session: str) -> list[dict]:
    return client.call("buffer", "list", {"session": session}, timeout=10)


def png(client: Client, session: str, image: str) -> Image.Image:
    reply = client.request("buffer", "get", {"session": session, "image": image,
                                             "format": "png"}, timeout=10)
    decoded = Image.open(io.BytesIO(reply.blobs[0].bytes))
    decoded.load()
    return decoded


def option(described: dict, name: str) -> dict:
    return next(entry for entry in described["options"] if entry["name"] == name)


# --- sources and options


def test_sources_lists_the_two_test_devices_with_stable_ids(stack):
    client, _ = start_scanning(stack)

    sources = client.call("scanner", "sources", {}, timeout=10)
    refreshed = client.call("scanner", "sources", {"refresh": True}, timeout=10)

    assert [s["id"] for s in sources] == ["test:0", "test:1"]
    for entry in sources:
        assert entry["type"] == "scanner" and entry["backend"] == "test"
        assert entry["device"] == entry["id"]  # no USB address: the SANE name is stable
        assert entry["busy"] is False
        assert entry["vendor"] and entry["model"] and entry["kind"]
    assert refreshed == sources


def test_test_scanners_false_hides_the_test_devices(stack):
    client, session = start_scanning(stack, "test_scanners = false\n")

    assert client.call("scanner", "sources", {"refresh": True}, timeout=10) == []
    assert error_of(scan, client, session, SMALL).code == "not_found"


def test_a_device_gone_after_a_refresh_answers_device_gone(stack):
    client, session = start_scanning(stack)
    assert scan_to_end(client, stack, session, SMALL, source="test:1")[0] == "scan.done"
    # The operator's own ini/sane.d now configures one test device: a refresh restarts
    # SANE with it, as when a scanner is unplugged.
    own = stack.home / "ini" / "sane.d"
    shutil.copytree(CHECKOUT / "ini" / "sane.d", own)
    conf = own / "test.conf"
    conf.write_text(conf.read_text().replace("number_of_devices 2", "number_of_devices 1"))

    refreshed = client.call("scanner", "sources", {"refresh": True}, timeout=10)

    assert [s["id"] for s in refreshed] == ["test:0"]
    for call in (lambda: scan(client, session, SMALL, source="test:1"),
                 lambda: client.call("scanner", "options", {"source": "test:1"}, timeout=10)):
        error = error_of(call)
        assert error.code == "device_gone" and "test:1" in error.message
    assert error_of(scan, client, session, SMALL, source="test:9").code == "not_found"
    assert scan_to_end(client, stack, session, SMALL)[0] == "scan.done"  # test:0 still works


def test_options_are_typed_descriptors_with_aliases_and_checked_values(stack):
    client, session = start_scanning(stack)

    described = client.call("scanner", "options", {"source": "test:0"}, timeout=10)

    assert described["source"] == "test:0" and described["busy"] is False
    resolution = option(described, "resolution")
    assert (resolution["type"], resolution["unit"]) == ("fixed", "dpi")
    assert resolution["constraint"] == {"range": {"min": 1.0, "max": 1200.0, "step": 1.0}}
    assert resolution["value"] == resolution["default"] == 150.0
    assert resolution["active"] and resolution["settable"]
    mode = option(described, "mode")
    assert mode["type"] == "string" and mode["value"] == "Color"
    assert sorted(mode["constraint"]["values"]) == ["Color", "Gray"]
    assert option(described, "depth")["constraint"] == {"values": [1, 8, 16]}
    assert option(described, "tl-x")["unit"] == "mm"
    for entry in described["options"]:
        assert {"name", "title", "description", "group", "type", "unit", "constraint",
                "value", "default", "active", "settable"} <= set(entry)
    aliases = described["aliases"]
    assert sorted(aliases["mode"]["values"]) == ["color", "gray", "lineart"]
    assert sorted(aliases["source"]["values"]) == ["adf", "flatbed"]
    assert aliases["resolution"]["option"] == "resolution"
    assert aliases["area"] == {"unit": "mm", "width": 200.0, "height": 200.0}

    tried = client.call("scanner", "options", {"source": "test:0", "values": {
        "mode": "gray", "resolution": 300, "test-picture": "Grid"}}, timeout=10)
    assert option(tried, "mode")["value"] == "Gray"
    assert option(tried, "resolution")["value"] == 300.0
    assert option(tried, "test-picture")["value"] == "Grid"

    for values, named, allowed in (
            ({"resolution": 5000}, "resolution", "1..1200"),
            ({"resolution": 0}, "resolution", "1..1200"),
            ({"mode": "sepia"}, "mode", "color, gray, lineart"),
            ({"depth": 12}, "depth", "1, 8, 16")):
        error = error_of(client.call, "scanner", "options",
                         {"source": "test:0", "values": values}, timeout=10)
        assert error.code == "invalid_option", values
        assert named in error.message and allowed in error.message, error.message
        assert error.details["option"] == named
        assert error.details["allowed"], values
    error = error_of(client.call, "scanner", "options",
                     {"source": "test:0", "values": {"no-such-option": 1}}, timeout=10)
    assert error.code == "invalid_option" and "no-such-option" in error.message

    # An invalid value in a scan request: nothing is scanned, no job is recorded.
    events = Events(stack, b"scan.")
    error = error_of(scan, client, session, {**SMALL, "resolution": 5000})
    assert error.code == "invalid_option" and "1..1200" in error.message
    assert error.details["allowed"] == {"range": {"min": 1.0, "max": 1200.0, "step": 1.0}}
    error = error_of(scan, client, session, {**SMALL, "mode": "sepia"})
    assert error.code == "invalid_option" and "lineart" in error.message
    with pytest.raises(AssertionError):
        events.next(timeout=0.3)
    assert client.call("scanner", "jobs", {"session": session}, timeout=10) == []
    assert listed(client, session) == []
    sources = client.call("scanner", "sources", {}, timeout=10)
    assert not any(s["busy"] for s in sources), "the failed scan left the device reserved"


# --- what a page looks like


def test_every_request_starts_from_the_device_defaults_not_the_last_settings(stack):
    client, session = start_scanning(stack)
    tried = client.call("scanner", "options", {"source": "test:0", "values": {
        "mode": "gray", "resolution": 30}}, timeout=10)
    assert option(tried, "mode")["value"] == "Gray"
    # A scan refused for its second option must not leave the first one set either.
    assert error_of(scan, client, session, {"mode": "lineart", "resolution": 5000}).code \
        == "invalid_option"

    again = client.call("scanner", "options", {"source": "test:0"}, timeout=10)
    topic, body = scan_to_end(client, stack, session, {"area": AREA})

    assert option(again, "mode")["value"] == option(again, "mode")["default"] == "Color"
    assert option(again, "depth")["value"] == 8
    assert option(again, "resolution")["value"] == 150.0  # ini/sane.d/test.conf
    assert topic == "scan.done"
    page = png(client, session, body["images"][0])
    assert page.mode == "RGB" and page.size == pixels(100, 50, 150)


@pytest.mark.parametrize("dpi", [75, 150, 300])
@pytest.mark.parametrize("mode, pillow_mode, buffer_mode", [
    ("color", "RGB", "color"), ("gray", "L", "gray"), ("lineart", "1", "bw")])
def test_a_page_has_the_asked_pixel_size_and_mode(stack, mode, pillow_mode, buffer_mode, dpi):
    client, session = start_scanning(stack)

    topic, done = scan_to_end(client, stack, session, {"mode": mode, "resolution": dpi,
                                                        "area": AREA})

    assert topic == "scan.done" and done["state"] == "done", done
    [image] = done["images"]
    info = client.call("buffer", "info", {"session": session, "image": image}, timeout=10)
    size = pixels(AREA["width"], AREA["height"], dpi)
    assert (info["width"], info["height"]) == size
    assert info["mode"] == buffer_mode
    assert info["dpi"] == [float(dpi), float(dpi)]
    decoded = png(client, session, image)
    assert decoded.size == size
    assert decoded.mode == pillow_mode


@pytest.mark.parametrize("depth, buffer_mode, bit_depth, pixel_mode, most", [
    (1, "bw", 1, "1", 255), (8, "gray", 8, "L", 255), (16, "gray", 16, "I;16", 65535)])
def test_gray_depth_is_kept_and_16_bit_gray_stays_16_bit(stack, depth, buffer_mode, bit_depth,
                                                         pixel_mode, most):
    client, session = start_scanning(stack)

    topic, done = scan_to_end(client, stack, session, {
        **SMALL, "mode": "gray", "depth": depth, "test-picture": "Color pattern"})

    assert topic == "scan.done", done
    [image] = done["images"]
    info = client.call("buffer", "info", {"session": session, "image": image}, timeout=10)
    assert (info["mode"], info["bit_depth"], info["pixel_mode"]) == (
        buffer_mode, bit_depth, pixel_mode)
    assert info["meta"]["depth"] == depth
    decoded = png(client, session, image)
    assert decoded.size == pixels(AREA["width"], AREA["height"], 75)
    low, high = decoded.getextrema()
    if depth == 16:
        assert decoded.mode in ("I;16", "I"), decoded.mode
        assert high > 255, "16-bit samples were cut to 8 bits"
        assert high <= most
        width, height = decoded.size
        values = {decoded.getpixel((x, y)) for x in range(0, width, 5)
                  for y in range(0, height, 5)}
        assert len(values) > 2, "only black and white: not the colour pattern"
        assert any(value % 257 for value in values), "8-bit samples scaled up to 16 bits"
    else:
        assert decoded.mode == pixel_mode
        assert high <= most
    assert low < high, "the picture is flat"


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
