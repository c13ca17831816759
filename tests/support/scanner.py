"""What the tests of the scanner actor behind a real broker share (test_scanner_options and
test_scanner_jobs): a stack of broker, buffer and scanner, scans and their events, and
what the buffer stored.

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
"""

from __future__ import annotations

import io
import subprocess
import time

import pytest
from PIL import Image

from broker.client import Client
from broker.protocol import Error

from .events import Events
from .stack import wait_service, write_ini

AREA = {"left": 10, "top": 0, "width": 100, "height": 50}  # mm
SMALL = {"resolution": 75, "area": AREA}  # 295 x 147 pixels
FEEDER_PAGES = 10  # the test device's feeder is empty after 10 pages
SLOW = {"mode": "color", "resolution": 300, "read-delay": True,
        "read-delay-duration": 200000}  # 0.2 s per read: a full page takes ~20 s


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
