"""``scanbridge worker ocr``: OCR workers on another machine, joined to a service's broker
over ZeroMQ CURVE (tcp). The broker gives them pages like its local workers.

The command keeps a key pair in its home's ``cert/worker.key`` / ``worker.pub`` (or
``--key``), prints the public key for the service's ``[broker] curve_clients``, and runs
``--workers`` processes, restarting any that dies. Each process is one OCR actor whose
broker connection goes to ``--connect`` instead of the local ipc socket (remote.py).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from broker import config as configlib
from broker import curve
from common.commands import command, fail

RESTART_DELAY = 2.0  # seconds before a worker that died is started again


def _key_text(value: str, what: str) -> bytes:
    """A Z85 key given as itself or as the path of a file holding it."""
    if len(value) == 40 and not os.path.exists(value):
        return value.encode()
    try:
        return curve.read_key(Path(value))
    except OSError as exc:
        fail(f"{what}: cannot read {value}: {exc.strerror or exc}")
    except ValueError:
        fail(f"{what}: {value} holds no 40-character Z85 CURVE key")
    raise AssertionError("unreachable")


def _key_paths(home: configlib.Home, key: str | None) -> tuple[Path, Path]:
    secret = Path(key) if key else home.cert / "worker.key"
    return secret, secret.with_suffix(".pub")


def build(worker: argparse.ArgumentParser) -> None:
    worker.add_argument("service", choices=["ocr"], help="the kind of worker (ocr)")
    worker.add_argument("--connect", required=True, metavar="tcp://HOST:PORT",
                        help="the service's [broker] tcp_endpoint")
    worker.add_argument("--server-key", required=True, metavar="KEY|FILE",
                        help="the broker's public key (cert/broker.pub of the service)")
    worker.add_argument("--key", metavar="FILE", help="this worker's secret key file "
                        "(default cert/worker.key of the home; made when missing)")
    worker.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="worker processes (default: one per core)")


@command("worker", "run OCR workers for a service on another machine", build)
def cmd_worker(home: configlib.Home, opts: argparse.Namespace) -> int:
    if not opts.connect.startswith("tcp://"):
        fail(f"--connect must be a tcp:// endpoint like tcp://scanner-pc:18640, not "
             f"{opts.connect}")
    server = _key_text(opts.server_key, "--server-key")
    configlib.load_or_exit(home)  # a bad ini stops here, with its line, not in N children
    secret_path, public_path = _key_paths(home, opts.key)
    try:
        public, _ = curve.generate(secret_path, public_path)
    except (OSError, ValueError) as exc:
        fail(f"worker key {secret_path}: {exc}")
    print(f"scanbridge worker ocr: this worker's public key is {public.decode()}\n"
          f"  On the service machine, add it to [broker] curve_clients in "
          f"ini/DSConfiguration.ini and run `scanbridge restart broker`.\n"
          f"  Connecting {opts.workers} OCR worker(s) to {opts.connect}; Ctrl-C stops them.",
          file=sys.stderr, flush=True)
    argv = [sys.executable, "-m", "actors.ocr.remote", opts.connect, server.decode(),
            str(secret_path)]
    env = {**os.environ, "SCANBRIDGE_HOME": str(home.root), "OMP_THREAD_LIMIT": "1"}
    return _supervise(argv, env, opts.workers)


def _supervise(argv: list[str], env: dict, count: int) -> int:
    stopping = False

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children: list[subprocess.Popen | None] = [None] * count
    restart_at = [0.0] * count
    while not stopping:
        for number, child in enumerate(children):
            if child is not None and child.poll() is not None:
                print(f"scanbridge worker ocr: worker {number} exited with status "
                      f"{child.returncode}; starting it again", file=sys.stderr, flush=True)
                children[number] = None
                restart_at[number] = time.monotonic() + RESTART_DELAY
            if children[number] is None and time.monotonic() >= restart_at[number]:
                children[number] = subprocess.Popen(argv, env=env)
        time.sleep(0.2)
    for child in children:
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        if child is not None:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
    return 0
