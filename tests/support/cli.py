"""What the tests of `scanbridge` share (test_cli and test_cli_call): the programs, the
command run for a home, and the services: ``shared`` serves every test that only looks;
tests that restart or kill programs use ``scratch``; start/stop (``lifecycle``) gets its
own home. ``shared`` and ``lifecycle`` are one for both modules. Every service is stopped
in a ``finally``: ``shared`` and ``scratch`` by ``stop_later``, which runs `scanbridge
stop` in the background (supervisord takes about a second per program) and waits for it,
checking the exit status, when the session ends.

``doctor`` runs ``scanimage -L``, which can take seconds to probe network scanners; the
homes here get an empty ``ini/sane.d`` (doctor's SANE_CONFIG_DIR) so it answers at once.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from .service import SCANBRIDGE, Service
from .shared import shared_by_modules
from .stack import ROOT, env_for, poll_for

# Always running; the scanner runs on demand.
PROGRAMS = ("barcode", "broker", "buffer", "certhelper", "gateway", "monitor", "ocr_00",
            "uploader")  # the test services run one OCR worker


def listed(program: str) -> str:
    """How supervisorctl and `scanbridge status` name it: group:name for OCR workers."""
    return f"ocr:{program}" if program.startswith("ocr_") else program
BAD_PORTS = "[ports]\nhttp = 18622, abc\n"
BAD_PORTS_REASON = "2: http: 'abc' is not a whole number"


def quiet_sane(home: Path) -> None:
    (home / "ini" / "sane.d").mkdir(parents=True, exist_ok=True)


def scanbridge(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`scanbridge ARGS` for a home that needs no Service (it may not even exist)."""
    return subprocess.run([*SCANBRIDGE, *args], env=env_for(home), cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def one_line(stderr: str) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line: {stderr!r}"
    assert "Traceback" not in stderr
    return stderr.rstrip("\n")


def api_status(service: Service) -> dict:
    status, _, body = service.get("/api/v1/status")
    return json.loads(body) if status == 200 else {}


def all_running(service: Service) -> bool:
    infos = service.processes()
    return all(infos.get(p, {}).get("statename") == "RUNNING" for p in PROGRAMS)


def actors_reported(service: Service) -> bool:
    actors = api_status(service).get("actors", {})
    return all(actors.get(listed(p), {}).get("state") == "RUNNING" for p in PROGRAMS)


@pytest.fixture(scope="session")
def stop_later():
    """Stops services in the background (each takes seconds); waits for all at the end."""
    stopping: list[tuple[Service, subprocess.Popen]] = []

    def stop(service: Service) -> None:
        stopping.append((service, subprocess.Popen(
            [*SCANBRIDGE, "stop"], env=service.env, cwd=ROOT, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))

    yield stop
    failed = []
    for service, proc in stopping:
        _, err = proc.communicate(timeout=60)
        if proc.returncode not in (0, 3):  # 3: it was not running any more
            failed.append(f"{service.home}: {err}")
    assert not failed, f"scanbridge stop failed: {failed}"


@contextmanager
def started(home: Path, stop_later):
    service = Service(home)
    quiet_sane(home)
    try:
        service.start()
        poll_for(lambda: actors_reported(service), 15, "all actors reported RUNNING")
        yield service
    finally:
        stop_later(service)


@shared_by_modules
def shared(tmp_path_factory, stop_later):
    """A running service that the tests using it do not disturb."""
    with started(tmp_path_factory.mktemp("shared"), stop_later) as service:
        yield service


@pytest.fixture(scope="module")
def scratch_service(tmp_path_factory, stop_later):
    with started(tmp_path_factory.mktemp("scratch"), stop_later) as service:
        yield service


@pytest.fixture
def scratch(scratch_service):
    """A running service that the test may restart and kill programs of."""
    poll_for(lambda: all_running(scratch_service), 30, "all programs RUNNING")
    yield scratch_service
    poll_for(lambda: all_running(scratch_service), 30, "all programs RUNNING again")


@shared_by_modules
def lifecycle(tmp_path_factory):
    """An operator's session in a fresh home; each step's CompletedProcess by name."""
    service = Service(tmp_path_factory.mktemp("lifecycle"))
    steps = {}
    try:
        for step in ("start", "status", "start again", "stop", "status after stop"):
            steps[step] = service.cli(step.split()[0])
    finally:
        service.stop()
    return service, steps


@contextmanager
def occupied_port():
    """A port another program listens on: it accepts and closes every connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()
