"""The scanner actor run by the whole service under supervisord, driven like an operator.

The scanner is an on-demand program (``autostart = false``): the monitor starts it when a
buffer session opens (every open session holds it) or a request waits for it, and stops
it ``[ondemand] scanner_idle_stop`` seconds (2 here) after the last holder left and its
service went idle. A running scan job holds it too (holder ``job:ID``).

Most tests share one service (module fixture: starting supervisord costs seconds); the
ones that kill or stop things run their own. Only the embedded SANE test devices are used
(``test:0``, ``test:1``; ``system_scanners = false``). The test backend keeps option values
between opens; the scanner puts a device back to its defaults for every request, which
two tests check (gray after line-art, a scan after a jammed one).

Timings measured for the slow batch below (100 dpi gray, ``read-delay-duration`` 8000 µs):
about 0.6 s per page, so a 10-page batch runs ~6 s and is killed after its 2nd page.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from broker.client import Client, Subscription
from broker.procutil import pid_alive
from tests.support.service import Service
from tests.support.stack import ROOT, poll_for

pytestmark = pytest.mark.timeout(120)

IDLE_STOP = 2.0  # [ondemand] scanner_idle_stop of these services
INI = f"[scanner]\nsystem_scanners = false\n[ondemand]\nscanner_idle_stop = {IDLE_STOP:g}\n"
PAGE_MM = 200.0  # the test device's page is 200 x 200 mm
FEEDER_PAGES = 10  # its feeder is empty after 10 pages
ENDS = ("scan.done", "scan.error")
SLOW_BATCH = {"source": "adf", "mode": "gray", "resolution": 100, "read-delay": True,
              "read-delay-duration": 8000}  # ~0.6 s per page
ENTRY_POINT = Path(sys.executable).parent / "scanbridge"  # the installed console script
# How the CLI is run: ``python -m scanbridge`` (as Service.cli does) and the installed
# ``scanbridge`` console script (as users do). Their behaviour must be the same.
RUNNERS = ("python -m scanbridge", "scanbridge")


# --- helpers


def pixels(mm: float, dpi: int) -> int:
    """The test device's page side in pixels."""
    return int(mm / 25.4 * dpi)


def scanner_state(svc: Service) -> str:
    return svc.processes()["scanner"]["statename"]


def wait_stopped(svc: Service, timeout: float = 15) -> None:
    poll_for(lambda: scanner_state(svc) == "STOPPED", timeout, "the scanner STOPPED", every=0.1)


def subscribe(svc: Service) -> Subscription:
    """scan.* events; subscribed for sure when this returns (make it before a job)."""
    return Subscription(f"ipc://{svc.home}/run/events-in.sock",
                        f"ipc://{svc.home}/run/events-out.sock", [b"scan."])


def next_of(events: Subscription, job: str, timeout: float) -> tuple[str, dict]:
    """The job's next event other than scan.progress."""
    end = time.monotonic() + timeout
    while True:
        event = events.next(max(0.05, end - time.monotonic()))
        if event is None:
            raise AssertionError(f"no event of job {job} within {timeout} s")
        topic, body = event
        if body.get("job") == job and topic != "scan.progress":
            return topic, body


def until_end(events: Subscription, job: str, timeout: float = 30) -> list[tuple[str, dict]]:
    """The job's events (no progress) up to and including scan.done or scan.error."""
    seen = []
    end = time.monotonic() + timeout
    while not seen or seen[-1][0] not in ENDS:
        seen.append(next_of(events, job, max(0.1, end - time.monotonic())))
    return seen


def listed(client: Client, session: str) -> list[str]:
    return [image["id"] for image in client.call("buffer", "list", {"session": session},
                                                 timeout=15)]


def holders(client: Client) -> list[str]:
    programs = client.call("monitor", "status", {}, timeout=10)["programs"]
    return next(p["holders"] for p in programs if p["group"] == "scanner")


def scans_started(svc: Service) -> int:
    """Scan jobs the scanner started so far (its log, across restarts)."""
    log = svc.home / "logs" / "scanner.log"
    return log.read_text(errors="replace").count('"scan job started"') if log.exists() else 0


def cli_sessions(svc: Service) -> list[dict]:
    """Open buffer sessions made by ``scanbridge scan``."""
    done = svc.cli("call", "buffer", "sessions", check=True)
    return [s for s in json.loads(done.stdout)
            if (s.get("meta") or {}).get("client") == "scanbridge scan"]


def run(svc: Service, runner: str, *args: str) -> subprocess.CompletedProcess:
    if runner == "python -m scanbridge":
        return svc.cli(*args)
    if not ENTRY_POINT.exists():
        pytest.skip(f"no installed console script {ENTRY_POINT}")
    return subprocess.run([str(ENTRY_POINT), *args], env=svc.env, cwd=ROOT, text=True,
                          capture_output=True, timeout=60)


def one_error_line(done: subprocess.CompletedProcess) -> str:
    """The CLI's contract: every failure is one line on stderr, never a traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("scanbridge: "), lines[0]
    return lines[0]


def scanner_processes(home: Path) -> list[int]:
    """Live ``python -m actors.scanner`` processes of this home (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"actors.scanner" in argv and f"SCANBRIDGE_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"), extra_ini=INI)
    svc.start()
    yield svc
    svc.stop()


# --- on-demand life cycle


def test_a_session_starts_the_scanner_and_it_stops_the_idle_delay_after_the_close(service):
    wait_stopped(service)  # on demand: not started with the service
    with service.client() as client:
        opened = time.monotonic()
        session = client.call("buffer", "open_session", {}, timeout=10)["session"]
        try:
            pid = service.wait_running("scanner", timeout=10)
            assert time.monotonic() - opened < 8
            sources = client.call("scanner", "sources", {}, timeout=15)
            assert [s["id"] for s in sources] == ["test:0", "test:1"]
            assert holders(client) == [f"session:{session}"]
            time.sleep(IDLE_STOP + 1.5)  # held by the session: no idle stop
            assert service.processes()["scanner"]["statename"] == "RUNNING"
            assert service.pid("scanner") == pid
        finally:
            client.call("buffer", "close_session", {"session": session}, timeout=10)
        closed = time.monotonic()
        left_running = poll_for(lambda: scanner_state(service) != "RUNNING" and time.monotonic(),
                                15, "the scanner stopping after the session closed", every=0.1)
        wait_stopped(service)
        assert holders(client) == []
    took = left_running - closed
    assert took >= IDLE_STOP - 0.2, f"stopped {took:.1f} s after the close, before the delay"
    assert not pid_alive(pid)


def test_a_request_without_a_session_starts_the_scanner_and_it_stops_when_idle(service):
    monitor_log = service.home / "logs" / "monitor.log"

    def started_for_requests() -> int:
        return monitor_log.read_text().count('"why": "a request waits for it"')

    wait_stopped(service)
    before = started_for_requests()
    done = service.cli("sources", "--json", check=True)  # the broker holds it while it starts
    assert [s["id"] for s in json.loads(done.stdout)] == ["test:0", "test:1"]
    assert started_for_requests() > before
    wait_stopped(service)


# --- sources and options commands


def test_sources_and_options_list_the_test_devices_and_allowed_values(service):
    done = service.cli("sources", check=True)
    ids = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    assert ids == ["test:0", "test:1"]

    done = service.cli("options", "test:0", check=True)
    rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.strip()}
    assert "1..1200" in rows["resolution"]
    assert "Gray" in rows["mode"] and "Color" in rows["mode"]
    assert "1, 8, 16" in rows["depth"]
    assert "Automatic Document Feeder" in rows["source"]
    assert "mode (color, gray, lineart)" in done.stdout
    assert "source (adf, flatbed)" in done.stdout

    described = json.loads(service.cli("options", "test:0", "--json", check=True).stdout)
    options = {entry["name"]: entry for entry in described["options"]}
    assert options["resolution"]["constraint"] == {"range": {"min": 1.0, "max": 1200.0,
                                                             "step": 1.0}}
    assert sorted(options["mode"]["constraint"]["values"]) == ["Color", "Gray"]


# --- scanbridge scan, end to end


def test_scan_a_batch_into_a_pdf_of_ten_pages_of_the_page_size(service, tmp_path):
    out = tmp_path / "out.pdf"
    done = service.cli("scan", "--source", "test:1", "--resolution", "100", "--mode", "color",
                       "--batch", "-o", str(out), check=True)
    assert done.stdout.strip() == str(out)
    side = pixels(PAGE_MM, 100)  # 787
    with pymupdf.open(out) as pdf:
        assert pdf.page_count == FEEDER_PAGES
        for page in pdf:
            # 787 px at 100 dpi: 566.6 pt, the 200 mm (566.9 pt) of the device to a pixel
            assert abs(page.rect.width - side / 100 * 72) < 0.5, page.rect
            assert abs(page.rect.height - PAGE_MM / 25.4 * 72) < 1.0, page.rect
            (image,) = page.get_images()
            assert image[2:4] == (side, side)
            assert image[5] == "DeviceRGB"
    assert cli_sessions(service) == []  # the session used was closed


def test_scan_pages_into_numbered_line_art_png_files(service, tmp_path):
    done = service.cli("scan", "--source", "test:0", "--feeder", "flatbed", "--resolution",
                       "100", "--pages", "3", "--mode", "lineart",
                       "-o", str(tmp_path / "page-%d.png"), check=True)
    files = [tmp_path / f"page-{n}.png" for n in (1, 2, 3)]
    assert done.stdout.split() == [str(path) for path in files]
    assert sorted(tmp_path.iterdir()) == files
    for path in files:
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.mode == "1"
            assert image.size == (pixels(PAGE_MM, 100), pixels(PAGE_MM, 100)) == (787, 787)
    assert cli_sessions(service) == []


def test_scan_pages_into_a_gray_multi_page_tiff(service, tmp_path):
    out = tmp_path / "out.tiff"
    service.cli("scan", "--source", "test:1", "--feeder", "flatbed", "--resolution", "100",
                "--pages", "2", "--mode", "gray", "-o", str(out), check=True)
    with Image.open(out) as tiff:
        assert tiff.format == "TIFF"
        assert tiff.n_frames == 2
        for frame in range(2):
            tiff.seek(frame)
            assert tiff.mode == "L"
            assert tiff.size == (787, 787)
    assert cli_sessions(service) == []


def test_gray_after_line_art_on_the_same_device_is_gray_again(service, tmp_path):
    # The test device has no line-art mode: "lineart" is Gray at depth 1. Asking "gray"
    # next must not keep depth 1 from the job before (the device keeps values between
    # opens; the scanner must start each job from the defaults).
    first, second = tmp_path / "lineart.png", tmp_path / "gray.png"
    for mode, out in (("lineart", first), ("gray", second)):
        service.cli("scan", "--source", "test:0", "--feeder", "flatbed", "--resolution", "50",
                    "--mode", mode, "-o", str(out), check=True)
    with Image.open(first) as lineart, Image.open(second) as gray:
        assert lineart.mode == "1"
        assert gray.mode == "L", "--mode gray after --mode lineart gave line art"


# --- scanbridge scan, errors


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_an_invalid_resolution_names_the_option_and_range_and_scans_nothing(
        service, tmp_path, runner):
    out = tmp_path / "out.pdf"
    before = scans_started(service)
    done = run(service, runner, "scan", "--source", "test:0", "--resolution", "5000",
               "-o", str(out))
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert "invalid_option" in line and "resolution" in line and "1..1200" in line, line
    assert not out.exists()
    assert scans_started(service) == before
    assert cli_sessions(service) == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_several_pages_into_one_image_file_is_a_usage_error(service, tmp_path, runner):
    out = tmp_path / "x.png"
    before = scans_started(service)
    done = run(service, runner, "scan", "--source", "test:0", "--pages", "2", "-o", str(out))
    assert done.returncode == 2, done.stderr
    line = one_error_line(done)
    assert "page-%d.png" in line and ".pdf" in line, line
    assert list(tmp_path.iterdir()) == []
    assert scans_started(service) == before
    assert cli_sessions(service) == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_a_jammed_device_exits_1_naming_the_jam(service, tmp_path, runner):
    out = tmp_path / "out.pdf"
    done = run(service, runner, "scan", "--source", "test:1", "--feeder", "flatbed",
               "--resolution", "50", "--option", "read-return-value=SANE_STATUS_JAMMED",
               "-o", str(out))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("scanbridge: scan failed after 0 page(s): jammed"), last
    assert not out.exists()
    assert cli_sessions(service) == []
    # Every request starts from the device's defaults: the jam does not stick.
    service.cli("scan", "--source", "test:1", "--feeder", "flatbed", "--resolution", "50",
                "-o", str(out), check=True)
    with pymupdf.open(out) as pdf:
        assert pdf.page_count == 1


@pytest.mark.parametrize("runner", RUNNERS)
def test_scan_an_unknown_source_names_it(service, tmp_path, runner):
    out = tmp_path / "out.pdf"
    done = run(service, runner, "scan", "--source", "test:9", "-o", str(out))
    assert done.returncode == 1, done.stderr
    line = one_error_line(done)
    assert "not_found" in line and "'test:9'" in line and "test:0, test:1" in line, line
    assert not out.exists()
    assert cli_sessions(service) == []


@pytest.mark.parametrize("runner", RUNNERS)
def test_scanner_commands_exit_3_when_the_service_is_not_running(tmp_path, runner):
    idle = Service(tmp_path / "home", extra_ini=INI)  # never started
    out = tmp_path / "out.pdf"
    for args in (("scan", "--source", "test:0", "-o", str(out)), ("sources",),
                 ("options", "test:0")):
        done = run(idle, runner, *args)
        assert done.returncode == 3, (args, done.stderr)
        line = one_error_line(done)
        assert "not running" in line and "scanbridge start" in line, line
    assert not out.exists()


# --- crashes and stop


@pytest.fixture
def own_service(tmp_path):
    """A service of this test alone (for tests that kill or stop its programs)."""
    svc = Service(tmp_path, extra_ini=INI)
    svc.start()
    yield svc
    svc.stop()


def slow_batch(client: Client, session: str) -> str:
    """Start a 10-page batch of about 0.6 s a page on test:0; returns the job id."""
    return client.call("scanner", "scan", {"session": session, "source": "test:0",
                                           "options": SLOW_BATCH, "batch": True},
                       timeout=30)["job"]


def test_a_scanner_killed_mid_batch_fails_the_job_keeps_its_pages_and_scans_again(own_service):
    svc = own_service
    with svc.client() as client:
        session = client.call("buffer", "open_session", {}, timeout=10)["session"]
        old = svc.wait_running("scanner")
        with subscribe(svc) as events:
            job = slow_batch(client, session)
            poll_for(lambda: f"job:{job}" in holders(client), 5,
                     "the job holding the scanner")
            acked = []
            while len(acked) < 2:
                topic, body = next_of(events, job, 20)
                assert topic == "scan.page", (topic, body)
                acked.append(body["image"]["id"])
            os.kill(old, signal.SIGKILL)
            rest = until_end(events, job, timeout=30)
        # A page stored just before the kill may still have been announced.
        acked += [body["image"]["id"] for topic, body in rest if topic == "scan.page"]
        topic, end = rest[-1]
        assert topic == "scan.error", end
        assert end["code"] == "actor_died" and end["state"] == "failed", end
        assert end["session"] == session

        new = svc.wait_running("scanner", other_than=old)
        assert new != old
        in_buffer = listed(client, session)
        assert in_buffer[:len(acked)] == acked, "an announced page is missing"
        assert len(in_buffer) < FEEDER_PAGES, "the batch was not interrupted"
        assert end["images"][:len(acked)] == acked
        assert in_buffer[:len(end["images"])] == end["images"]
        assert end["pages"] == len(end["images"])

        record = client.call("scanner", "job", {"job": job}, timeout=15)
        assert record["state"] == "failed"
        assert record["error"]["code"] == "actor_died"
        assert record["images"] == end["images"]
        text = poll_for(lambda: next((p.read_text() for p in svc.dumps()
                                      if p.name.startswith("scanner-")), None),
                        10, "a crash dump of the scanner")
        assert "terminated by SIGKILL" in text
        # The dead job's hold was released: only the session holds the scanner.
        poll_for(lambda: holders(client) == [f"session:{session}"], 10,
                 "the dead job's hold released")

        with subscribe(svc) as events:
            again = client.call("scanner", "scan", {
                "session": session, "source": "test:0", "pages": 1,
                "options": {"source": "flatbed", "mode": "gray", "resolution": 50}},
                timeout=30)["job"]
            topic, done = until_end(events, again)[-1]
        assert topic == "scan.done" and done["state"] == "done", done
        assert listed(client, session) == in_buffer + done["images"]

        client.call("buffer", "close_session", {"session": session}, timeout=10)
        wait_stopped(svc)  # no hold left behind keeps it running


def test_a_buffer_killed_mid_batch_loses_no_page_and_lists_none_twice(own_service):
    svc = own_service
    with svc.client() as client:
        session = client.call("buffer", "open_session", {}, timeout=10)["session"]
        svc.wait_running("scanner")
        old = svc.pid("buffer")
        with subscribe(svc) as events:
            job = slow_batch(client, session)
            assert next_of(events, job, 20)[0] == "scan.page"
            os.kill(old, signal.SIGKILL)  # pages staged or being staged are lost
            rest = until_end(events, job, timeout=60)
        svc.wait_running("buffer", other_than=old)
        topic, end = rest[-1]
        in_buffer = listed(client, session)

    # Staged pages the dead buffer lost were staged again (the page stays in the
    # scanner until its commit is answered); the commit keys kept each page once.
    assert topic == "scan.done" and end["pages"] == FEEDER_PAGES, end
    assert in_buffer == end["images"]
    assert len(set(in_buffer)) == FEEDER_PAGES


def test_stop_leaves_no_scanner_process_even_mid_scan(own_service):
    svc = own_service
    with svc.client() as client:
        session = client.call("buffer", "open_session", {}, timeout=10)["session"]
        pid = svc.wait_running("scanner")
        with subscribe(svc) as events:
            job = slow_batch(client, session)
            assert next_of(events, job, 20)[0] == "scan.page"
    assert scanner_processes(svc.home) == [pid]
    svc.stop()
    assert not pid_alive(pid)
    assert scanner_processes(svc.home) == []
    assert svc.cli("status").returncode == 3
