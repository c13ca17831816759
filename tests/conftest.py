"""Fixtures that run real Scanbridge processes in a fresh temp home.

``home`` is the folder (fast heartbeats: interval 0.2 s, liveness 3, so a silent worker
is dropped after 0.6 s). ``stack`` starts processes and clients in it and always stops
and closes all of them when the test ends, whatever happened. ``service`` is the whole
service under supervisord with default settings, shared by the tests of one module
(starting it costs seconds); a module that needs other settings defines its own. ``api``
(HTTP to its gateway) and ``client`` (to its broker) follow the module's ``service``.
``browser`` is a headless Chromium for a module; ``context`` a fresh browser context per
test (modules that watch consoles or downloads define their own).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from broker.client import Client
from tests.support.browser import chromium
from tests.support.service import started
from tests.support.web import Api
from tests.support.stack import poll_for, start_program, stop, write_ini

FAST_HEARTBEAT = "[heartbeat]\ninterval = 0.2\nliveness = 3\n"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    write_ini(root, "DSConfiguration.ini", FAST_HEARTBEAT)
    return root


class Stack:
    """Processes, clients and raw sockets of one test; ``close()`` releases them all."""

    def __init__(self, home: Path):
        self.home = home
        self.procs: list[subprocess.Popen] = []
        self.sockets: list = []  # Clients and zmq sockets
        self.ctx = zmq.Context.instance()

    @property
    def endpoint(self) -> str:
        return f"ipc://{self.home / 'run' / 'broker.sock'}"

    @property
    def events_out(self) -> str:
        return f"ipc://{self.home / 'run' / 'events-out.sock'}"

    @property
    def events_in(self) -> str:
        return f"ipc://{self.home / 'run' / 'events-in.sock'}"

    def broker(self) -> subprocess.Popen:
        # Like stack.start_broker, but the process is recorded before we wait for it, so
        # it is stopped even when it never comes up.
        proc = start_program(self.home, [sys.executable, "-m", "broker.broker"], "broker")
        self.procs.append(proc)
        poll_for(lambda: (self.home / "run" / "broker.sock").exists() or proc.poll() is not None,
                 10, "broker socket")
        assert proc.poll() is None, f"the broker exited with status {proc.returncode}"
        return proc

    def echo(self, service: str = "echo", capacity: int = 1) -> subprocess.Popen:
        proc = start_program(self.home, [sys.executable, "-m", "tests.support.echo",
                                         "--service", service, "--capacity", str(capacity)],
                             service)
        self.procs.append(proc)
        return proc

    def actor(self, package: str) -> subprocess.Popen:
        """Start a real actor program (``python -m actors.PACKAGE``) in this home."""
        proc = start_program(self.home, [sys.executable, "-m", f"actors.{package}"], package)
        self.procs.append(proc)
        return proc

    def client(self, endpoint: str | None = None, **kwargs) -> Client:
        client = Client(endpoint or self.endpoint, **kwargs)
        self.sockets.append(client)
        return client

    def socket(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            try:
                sock.close(linger=0) if isinstance(sock, zmq.Socket) else sock.close()
            except Exception:
                pass
        stop(*self.procs, timeout=5)


@pytest.fixture
def buffer(tmp_path: Path):
    """The buffer actor's object in this process on a fresh home (its store is real:
    SQLite and files on disk); ``buffer.ini(text)`` restarts it with DSConfiguration.ini
    additions."""
    from tests.support.buffer import LocalBuffer
    local = LocalBuffer(tmp_path / "home")
    try:
        yield local
    finally:
        local.close()


@pytest.fixture
def stack(home: Path):
    stack = Stack(home)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="module")
def api(service) -> Api:
    return Api(service)


@pytest.fixture(scope="module")
def client(service):
    with service.client() as opened:
        yield opened


@pytest.fixture(scope="module")
def browser():
    yield from chromium()


@pytest.fixture
def context(browser):
    ctx = browser.new_context()
    yield ctx
    ctx.close()
