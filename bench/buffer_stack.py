"""What bench/buffer.py measures with: durable writes, timings, a folder's size, and the
broker with the buffer actor started in a temp home (``Stack``). A process's resident
memory (sampled while a part runs) comes from tests/support/memory.py.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import zmq

from broker import config as configlib
from broker.client import Client
from broker.procutil import atomic_write_with
from tests.support.stack import start_broker, start_program, stop, wait_service, write_ini

LONG = 300.0  # request timeout (s): a slow machine must not turn a figure into an error


# --- measuring helpers


def durable_write(path: Path, data) -> None:
    """Write + fsync + rename + folder fsync: the same helper the buffer's store uses."""
    atomic_write_with(path, lambda f: f.write(data), 0o600)


def timed(fn, *args) -> float:
    """Seconds ``fn(*args)`` took."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def folder_bytes(folder: Path) -> tuple[int, int, int]:
    """(files, apparent bytes, allocated bytes) under ``folder``."""
    files = size = blocks = 0
    for dirpath, _, names in os.walk(folder):
        for name in names:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:  # a derived file dropped while we walk
                continue
            files += 1
            size += st.st_size
            blocks += st.st_blocks * 512
    return files, size, blocks


class Stack:
    """A temp home with a broker and a buffer actor, and a client to it."""

    def __init__(self, home: Path, ini: str = ""):
        self.home = home
        home.mkdir(parents=True)
        if ini:
            write_ini(home, "DSConfiguration.ini", ini)
        self.cfg = configlib.load(configlib.Home(home)).buffer
        self.endpoint = f"ipc://{home}/run/broker.sock"
        self.procs = []
        try:
            self.procs.append(start_broker(home))
            self.procs.append(start_program(home, [sys.executable, "-m", "actors.buffer"],
                                            "buffer"))
            self.client = Client(self.endpoint, context=zmq.Context.instance())
            wait_service(self.client, "buffer", timeout=30)
            self.pid = self.client.call("buffer", "ping", timeout=10)["pid"]
        except BaseException:
            self.close()
            raise

    def call(self, op: str, args: dict | None = None, blobs=(), timeout: float = LONG):
        return self.client.request("buffer", op, args, blobs=blobs, timeout=timeout)

    def close(self) -> None:
        if hasattr(self, "client"):
            self.client.close()
        for proc in reversed(self.procs):  # the actor first: the broker acks its leaving
            stop(proc)
