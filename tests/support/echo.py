"""A test actor: echoes, sleeps, fails and dies on request.

Run as ``python -m tests.support.echo [--service NAME] [--capacity N]``; tests and
benchmarks start it as a real process beside a real broker.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time

from broker import config as configlib
from broker import logs
from broker.actor import Actor, Result, operation
from broker.faults import install_fault_handlers
from broker.runtime import Runtime
from broker.protocol import Error


class Echo(Actor):
    service = "echo"

    @operation
    def echo(self, blobs=(), **fields):
        """Return the arguments and blobs as they came."""
        return Result({"args": fields, "pid": os.getpid()}, blobs=list(blobs))

    @operation
    def whoami(self):
        return {"pid": os.getpid(), "service": self.service}

    @operation
    def sleep(self, seconds: float):
        """Sleep (a long operation) and say who did it."""
        time.sleep(seconds)
        return {"pid": os.getpid(), "slept": seconds}

    @operation
    def fail(self, code: str = "busy", message: str = "asked to fail"):
        raise Error(code, message)

    @operation
    def boom(self):
        raise ZeroDivisionError("asked to crash the handler")

    @operation
    def segfault(self):
        """Crash the process with SIGSEGV (the fault handler writes the stacks)."""
        import faulthandler
        faulthandler._sigsegv()

    @operation
    def deadlock(self):
        """Block forever on a lock this thread already holds."""
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()

    @operation
    def publish_event(self, topic: str, body: dict):
        self.publish(topic, body)
        return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--service", default="echo")
    parser.add_argument("--capacity", type=int, default=1)
    parser.add_argument("--prefetch", type=int, default=0)
    parser.add_argument("--watchdog", type=float, default=None)
    opts = parser.parse_args()
    cfg = configlib.load_or_exit()
    logs.setup(opts.service, cfg.log.level)
    install_fault_handlers(cfg.home, opts.service)
    actor_class = type("Echo", (Echo,), {"service": opts.service, "capacity": opts.capacity,
                                         "prefetch": opts.prefetch,
                                         "watchdog": opts.watchdog})
    raise SystemExit(Runtime(actor_class(cfg), cfg).run())


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    main()
