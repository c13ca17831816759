"""Remote OCR workers: `scanbridge worker ocr` joins the broker over tcp + CURVE.

The service listens on a tcp endpoint that admits one public key and runs one local OCR
worker. A remote worker with the listed key joins and takes its share of the pages; one
with another key never joins and gets none; a page a remote worker held when it vanished
goes to the local worker (requests are idempotent).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zmq
from PIL import Image, ImageDraw, ImageFont

from tests.support.service import Service, curve_service, running
from tests.support.stack import ROOT, poll_for, workers

pytestmark = pytest.mark.timeout(180)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
LINES = ["Remote workers read this page over CURVE.", "The broker spreads pages fairly."]


def page(lines=LINES, size=(1800, 400), font_size=40) -> bytes:
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, font_size)
    for number, line in enumerate(lines):
        draw.text((60, 60 + number * int(font_size * 2.4)), line, font=font, fill=0)
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(300, 300))
    return out.getvalue()


def worker_home(tmp: Path, public: bytes, secret: bytes) -> Path:
    """A home for the worker machine: its key pair, the service's heartbeat settings."""
    (tmp / "cert").mkdir(parents=True)
    (tmp / "cert" / "worker.key").write_bytes(secret + b"\n")
    (tmp / "cert" / "worker.pub").write_bytes(public + b"\n")
    (tmp / "ini").mkdir()
    (tmp / "ini" / "DSConfiguration.ini").write_text("[heartbeat]\ninterval = 0.5\n"
                                                     "liveness = 3\n")
    return tmp


def service_request(service: Service, name: str, op: str, args: dict, blobs: list) -> dict:
    with service.client() as client:  # a client of its own: sockets are per thread
        return client.request(name, op, args, blobs=blobs, timeout=120,
                              idempotent=True).result


class RemoteWorker:
    def __init__(self, home: Path, service_home: Path, port: int, log: Path):
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scanbridge", "--home", str(home), "worker", "ocr",
             "--connect", f"tcp://127.0.0.1:{port}",
             "--server-key", str(service_home / "cert" / "broker.pub"), "--workers", "1"],
            cwd=ROOT, env={**os.environ, "SCANBRIDGE_HOME": str(home)},
            stdout=subprocess.DEVNULL, stderr=open(log, "wb"))

    def records(self) -> list[dict]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
        return found

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def keys():
    return zmq.curve_keypair()


@pytest.fixture(scope="module")
def service(tmp_path_factory, keys):
    yield from running(curve_service(tmp_path_factory.mktemp("home"), keys[0].decode(),
                                     "[ocr]\nocr_workers = 1\n"))


def local_pid(service: Service) -> int:
    return service.processes()["ocr_00"]["pid"]


def pages_at_once(service: Service, blobs: list[bytes]) -> list[dict]:
    with ThreadPoolExecutor(len(blobs)) as pool:
        return list(pool.map(lambda item: service_request(
            service, "ocr", "page", {"index": item[0]}, [item[1]]), enumerate(blobs)))


def test_a_worker_whose_key_is_not_listed_gets_no_work(service, tmp_path):
    stranger = RemoteWorker(worker_home(tmp_path / "w", *zmq.curve_keypair()), service.home,
                            service.tcp_port, tmp_path / "stranger.log")
    try:
        # Its READY has been tried and refused once it says so (a loaded machine may take
        # seconds just to start the worker's process: wait for its word, not a fixed time).
        poll_for(lambda: [r for r in stranger.records()
                          if r.get("msg", "").startswith("broker not reachable")
                          and "curve_clients" in r["msg"]], 60,
                 "the refused worker saying why")
        assert stranger.proc.poll() is None, "the worker command gave up"
        with service.client() as client:
            assert [w["pid"] for w in workers(client, "ocr")] == [local_pid(service)]
        done = pages_at_once(service, [page()] * 4)
        assert {r["worker"]["pid"] for r in done} == {local_pid(service)}
        assert all("Remote workers read this page" in r["text"] for r in done)
        assert not [r for r in stranger.records() if r.get("msg") == "page started"]
        started = time.monotonic()
        stranger.stop()
        assert stranger.proc.returncode == 0
        # A prompt, clean exit (0), not the kill after stop()'s 20 s: it waits for the
        # broker's goodbye at most one broker expiry (3 s here), and a loaded machine adds
        # its own seconds to a Python exit.
        assert time.monotonic() - started < 15, "a refused worker is slow to stop"
    finally:
        stranger.stop()


def test_a_listed_remote_worker_takes_pages_and_one_that_vanishes_has_them_requeued(
        service, tmp_path, keys):
    remote = RemoteWorker(worker_home(tmp_path / "w", *keys), service.home,
                          service.tcp_port, tmp_path / "remote.log")
    remote_pid = None
    try:
        with service.client() as client:
            joined = poll_for(lambda: [w for w in workers(client, "ocr")
                                       if w["pid"] != local_pid(service)], 20,
                              "the remote worker")
        remote_pid = joined[0]["pid"]
        done = pages_at_once(service, [page()] * 4)
        assert {r["worker"]["pid"] for r in done} == {remote_pid, local_pid(service)}
        assert all("Remote workers read this page" in r["text"] for r in done)

        # Two full pages of text at once: one each. Kill the remote worker while it reads.
        big = page(lines=[f"Line {n}: the quick brown fox jumps over the lazy dog."
                          for n in range(40)], size=(2480, 3508), font_size=44)
        pool = ThreadPoolExecutor(2)
        pending = [pool.submit(service_request, service, "ocr", "page", {"index": 10 + n},
                               [big]) for n in range(2)]
        started = poll_for(lambda: [r for r in remote.records()
                                    if r.get("msg") == "page started" and r.get("index", 0) >= 10],
                           30, "the remote worker to start a page")
        os.kill(remote.proc.pid, signal.SIGKILL)  # its supervisor first: no restart
        os.kill(remote_pid, signal.SIGKILL)
        results = [p.result(timeout=120) for p in pending]
        assert {r["index"] for r in results} == {10, 11}
        assert {r["worker"]["pid"] for r in results} == {local_pid(service)}
        assert all("quick brown fox" in r["text"] for r in results)
        assert started[0]["index"] in (10, 11)
    finally:
        remote.stop()
        if remote_pid is not None:
            try:
                os.kill(remote_pid, signal.SIGKILL)
            except OSError:
                pass
