"""Start real Scanbridge processes in a temp home (for tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from broker.client import Client
from broker.protocol import Error

ROOT = Path(__file__).resolve().parents[2]


_GIVEN: set[int] = set()  # ports free_port() handed out in this process


def free_port() -> int:
    """A port nothing listens on, never one handed out before in this process: the kernel
    may offer a port it just freed again, and a service then got the same port for HTTP
    and HTTPS."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port


def write_ini(home: Path, name: str, text: str) -> None:
    (home / "ini").mkdir(parents=True, exist_ok=True)
    (home / "ini" / name).write_text(text)


def env_for(home: Path) -> dict:
    return {**os.environ, "SCANBRIDGE_HOME": str(home), "PYTHONPATH": str(ROOT),
            "SCANBRIDGE_PYTHON": sys.executable}


def start_program(home: Path, argv: list[str], log_name: str) -> subprocess.Popen:
    (home / "logs").mkdir(parents=True, exist_ok=True)
    log = open(home / "logs" / f"{log_name}.log", "ab")
    return subprocess.Popen(argv, env=env_for(home), stdout=log, stderr=subprocess.STDOUT,
                            cwd=ROOT)


def start_broker(home: Path) -> subprocess.Popen:
    proc = start_program(home, [sys.executable, "-m", "broker.broker"], "broker")
    poll_for(lambda: (home / "run" / "broker.sock").exists(), 10, "broker socket")
    return proc


def start_echo(home: Path, service: str = "echo", capacity: int = 1) -> subprocess.Popen:
    return start_program(home, [sys.executable, "-m", "tests.support.echo", "--service",
                                service, "--capacity", str(capacity)], service)


def start_server(argv: list[str], answers: Callable[[], bool], what: str) -> subprocess.Popen:
    """A baseline server (``argv``), returned once ``answers()`` is true; it fails with
    the end of its stderr if it exits first. It runs in a session of its own, like the
    service under supervisord: with the kernel's autogroup scheduling, a child in the
    caller's session would share the caller's CPU share."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, cwd=ROOT)

    def up():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read().decode()[-500:]}")
        try:
            return answers()
        except OSError:
            return False
    poll_for(up, 20, what, every=0.1)
    return proc


def poll_for(check: Callable[[], object], timeout: float, what: str, every: float = 0.05):
    """Wait until ``check()`` is truthy; return its value or fail naming ``what``."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def workers(client: Client, service: str) -> list[dict]:
    services = client.call("broker", "services", timeout=5)["services"]
    return services.get(service, {}).get("workers", [])


def wait_service(client: Client, service: str, count: int = 1, timeout: float = 15) -> list:
    return poll_for(lambda: len(workers(client, service)) >= count and workers(client, service),
                    timeout, f"{count} {service} worker(s)")


def is_broker(proc: subprocess.Popen) -> bool:
    return "broker.broker" in proc.args


def stop(*procs: subprocess.Popen, timeout: float = 10) -> None:
    """Stop actors first, then brokers: an actor leaving waits for the broker's goodbye."""
    for group in ([p for p in procs if not is_broker(p)], [p for p in procs if is_broker(p)]):
        for proc in group:
            if proc.poll() is None:
                try:  # a SIGSTOPped process must run again to act on SIGTERM
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.terminate()
                except ProcessLookupError:
                    pass
        for proc in group:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


__all__ = ["Error", "free_port", "write_ini", "start_program", "start_broker", "start_echo",
           "start_server", "poll_for", "workers", "wait_service", "stop", "is_broker",
           "env_for"]
