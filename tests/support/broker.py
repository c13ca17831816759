"""What the broker's system tests share: heartbeat timings, a broker with echo workers, a
request on a thread, workers' pids and load, the broker's log.

Every test starts a real broker (``python -m broker.broker``) and real echo actors
(``tests/support/echo.py``) in a fresh home with fast heartbeats (interval 0.2 s,
liveness 3: a silent worker is dropped 0.6 s after its last message). See conftest.py.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from broker.client import Client

from .stack import wait_service, workers

INTERVAL = 0.2
LIVENESS = 3
EXPIRY = INTERVAL * LIVENESS  # the broker drops a silent worker after this


# --- helpers


def echo_workers(stack, count: int = 1,
                 capacity: int = 1) -> tuple[list[subprocess.Popen], Client]:
    """A broker and ``count`` echo workers (of ``capacity`` each), all registered: (the
    workers' processes, a client)."""
    stack.broker()
    procs = [stack.echo(capacity=capacity) for _ in range(count)]
    client = stack.client()
    wait_service(client, "echo", count=count)
    return procs, client


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """Run ``fn`` on a thread; ``out["value"]`` or ``out["error"]`` holds what it gave."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the test, which asserts on it
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def joined(thread: threading.Thread, out: dict, timeout: float) -> dict:
    thread.join(timeout)
    assert not thread.is_alive(), f"the request thread did not finish within {timeout} s"
    return out


def pids_of(client: Client, service: str) -> set[int]:
    return {w["pid"] for w in workers(client, service)}


def busy_worker(client: Client, service: str) -> dict | None:
    busy = [w for w in workers(client, service) if w["inflight"]]
    return busy[0] if busy else None


def log_text(home: Path, name: str) -> str:
    return (home / "logs" / f"{name}.log").read_text(errors="replace")
