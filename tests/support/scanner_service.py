"""What the tests of the scanner run by the whole service share (test_scanner_service and
test_scanner_cli): one service for both modules (starting supervisord costs seconds), the
scanner's state and holders, scan events, and what the buffer lists.

The scanner is an on-demand program (``autostart = false``): the monitor starts it when a
buffer session opens (every open session holds it) or a request waits for it, and stops
it ``[ondemand] scanner_idle_stop`` seconds (2 here) after the last holder left and its
service went idle. A running scan job holds it too (holder ``job:ID``). Only the embedded
SANE test devices are used (``test:0``, ``test:1``; ``system_scanners = false``).
"""

from __future__ import annotations

import time

from broker.client import Client, Subscription

from .service import Service, started
from .shared import shared_by_modules
from .stack import poll_for

IDLE_STOP = 2.0  # [ondemand] scanner_idle_stop of these services
INI = f"[scanner]\nsystem_scanners = false\n[ondemand]\nscanner_idle_stop = {IDLE_STOP:g}\n"
FEEDER_PAGES = 10  # the test device's feeder is empty after 10 pages
ENDS = ("scan.done", "scan.error")


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


@shared_by_modules
def service(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("home"), INI)
