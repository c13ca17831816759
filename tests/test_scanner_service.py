"""The scanner actor run by the whole service under supervisord: started on demand and
stopped when idle, killed mid-batch (or the buffer under it), and stopped mid-scan.

The life-cycle tests use one service with test_scanner_cli (tests/support/scanner_service.py
says how the scanner starts and stops on demand); the ones that kill or stop things run
their own.

Timings measured for the slow batch below (100 dpi gray, ``read-delay-duration`` 8000 µs):
about 0.6 s per page, so a 10-page batch runs ~6 s and is killed after its 2nd page.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker.client import Client, Subscription
from broker.procutil import pid_alive
from tests.support.scanner_service import (FEEDER_PAGES, IDLE_STOP, INI, holders, listed, next_of,
                                           scanner_state, subscribe, until_end, wait_stopped)
from tests.support.scanner_service import service  # fixtures
from tests.support.service import Service, started
from tests.support.stack import poll_for

pytestmark = pytest.mark.timeout(120)

SLOW_BATCH = {"source": "adf", "mode": "gray", "resolution": 100, "read-delay": True,
              "read-delay-duration": 8000}  # ~0.6 s per page


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

# --- crashes and stop


@pytest.fixture
def own_service(tmp_path):
    """A service of this test alone (for tests that kill or stop its programs)."""
    yield from started(tmp_path, INI)


@contextmanager
def session_with_events(svc: Service, client: Client) -> Iterator[tuple[str, int, Subscription]]:
    """A buffer session, the pid of the scanner it started, and scan.* events subscribed (for
    the block)."""
    session = client.call("buffer", "open_session", {}, timeout=10)["session"]
    pid = svc.wait_running("scanner")
    with subscribe(svc) as events:
        yield session, pid, events


def slow_batch(client: Client, session: str) -> str:
    """Start a 10-page batch of about 0.6 s a page on test:0; returns the job id."""
    return client.call("scanner", "scan", {"session": session, "source": "test:0",
                                           "options": SLOW_BATCH, "batch": True},
                       timeout=30)["job"]


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


def test_a_scanner_killed_mid_batch_fails_the_job_keeps_its_pages_and_scans_again(own_service):
    svc = own_service
    with svc.client() as client:
        with session_with_events(svc, client) as (session, old, events):
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
        with session_with_events(svc, client) as (session, _, events):
            old = svc.pid("buffer")
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
    with svc.client() as client, session_with_events(svc, client) as (session, pid, events):
        job = slow_batch(client, session)
        assert next_of(events, job, 20)[0] == "scan.page"
    assert scanner_processes(svc.home) == [pid]
    svc.stop()
    assert not pid_alive(pid)
    assert scanner_processes(svc.home) == []
    assert svc.cli("status").returncode == 3
