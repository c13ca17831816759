"""Broker benchmark: request/reply through the broker against a direct pyzmq pair.

Starts, in a fresh temp home, a real broker and a real echo actor (``tests.support.echo``),
and beside them a direct ROUTER echo server; then measures in the same run:

  1. round trip of a small request   (goal: broker <= 1.5 x direct)
  2. pipelined small requests/s      (goal: >= 50,000 msg/s through the broker; each
                                      request/reply is 4 messages the broker routes)
  3. round trip of a 25 MB blob      (goal: broker <= 1.5 x direct)

Prints one line per figure and the ratios. ``python -m bench.broker [--quick]``.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zmq

from bench.report import command_line
from broker.client import Client
from broker.protocol import CLIENT, REQUEST, pack, recv_frames, send_frames
from tests.support.stack import ROOT, start_broker, start_program, wait_service

# The direct baseline uses the same fast frame helpers as the broker: a fair, not a slow,
# baseline.
DIRECT_SERVER = """
import sys, zmq
from broker.protocol import recv_frames, send_frames
ctx = zmq.Context()
sock = ctx.socket(zmq.ROUTER)
sock.setsockopt(zmq.SNDHWM, 100000)
sock.setsockopt(zmq.RCVHWM, 100000)
sock.bind(sys.argv[1])
while True:
    send_frames(sock, recv_frames(sock))
"""


def round_trips(send_recv, count: int) -> float:
    """Median seconds of ``count`` sequential round trips."""
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        send_recv()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def compare(direct, brokered, count: int, rounds: int) -> tuple[float, float, float]:
    """(direct, broker, ratio): medians over alternating rounds of ``count`` each.

    Alternating keeps both sides under the same machine load; the ratio is the median of
    the per-round ratios, so one noisy round does not decide it.
    """
    for _ in range(min(100, count)):  # warm-up: connections, caches, allocator
        direct()
        brokered()
    pairs = [(round_trips(direct, count), round_trips(brokered, count)) for _ in range(rounds)]
    return (statistics.median(d for d, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(b / d for d, b in pairs))


def pipelined(sock: zmq.Socket, frames: list, total: int, window: int = 500) -> float:
    """Messages per second with up to ``window`` requests outstanding."""
    sent = received = 0
    start = time.perf_counter()
    while received < total:
        while sent < total and sent - received < window:
            send_frames(sock, frames)
            sent += 1
        recv_frames(sock)
        received += 1
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = command_line(__doc__, "fewer samples (CI smoke run)")
    parser.add_argument("--spin-us", type=int, help="the broker's [broker] spin_us (default 500)")
    opts = parser.parse_args()
    count = 300 if opts.quick else 1000
    rounds = 3 if opts.quick else 9
    total = 20000 if opts.quick else 100000
    blob_count = 3 if opts.quick else 5

    home = Path(tempfile.mkdtemp(prefix="scanbridge-bench-"))
    if opts.spin_us is not None:
        (home / "ini").mkdir()
        (home / "ini" / "DSConfiguration.ini").write_text(f"[broker]\nspin_us = {opts.spin_us}\n")
    env = {**os.environ, "SCANBRIDGE_HOME": str(home)}
    procs = []
    ctx = zmq.Context.instance()
    try:
        procs.append(start_broker(home))
        procs.append(start_program(home, [sys.executable, "-m", "tests.support.echo",
                                           "--prefetch", "256"], "echo"))
        direct_endpoint = f"ipc://{home}/direct.sock"
        procs.append(subprocess.Popen([sys.executable, "-c", DIRECT_SERVER, direct_endpoint],
                                      env=env, cwd=ROOT))
        client = Client(f"ipc://{home}/run/broker.sock", context=ctx)
        wait_service(client, "echo")

        direct = ctx.socket(zmq.DEALER)
        direct.connect(direct_endpoint)
        small = [b"", CLIENT, REQUEST, pack({"id": 1, "service": "echo", "op": "echo",
                                              "args": {}, "deadline": time.time() + 3600})]

        def direct_small():
            send_frames(direct, small)
            recv_frames(direct)

        def broker_small():
            client.request("echo", "echo")

        rtt_direct, rtt_broker, ratio = compare(direct_small, broker_small, count, rounds)

        # Pipelined: a raw DEALER keeps many requests in flight through the broker.
        raw = ctx.socket(zmq.DEALER)
        raw.setsockopt(zmq.SNDHWM, 0)
        raw.setsockopt(zmq.RCVHWM, 0)
        raw.connect(f"ipc://{home}/run/broker.sock")
        tput_broker = pipelined(raw, small, total)
        tput_direct = pipelined(direct, small, total)

        blob = os.urandom(25 * 1024 * 1024)
        frames = [*small, blob]

        def direct_blob():
            send_frames(direct, frames)
            recv_frames(direct)

        def broker_blob():
            reply = client.request("echo", "echo", blobs=[blob], timeout=60)
            assert len(reply.blobs[0]) == len(blob)

        blob_direct, blob_broker, blob_ratio = compare(direct_blob, broker_blob, blob_count,
                                                       rounds)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=15)

    print(f"round trip, small:   direct {rtt_direct * 1e6:8.1f} us   broker "
          f"{rtt_broker * 1e6:8.1f} us   ratio {ratio:.2f}x  (goal <= 1.5x)")
    print(f"pipelined, small:    direct {tput_direct:8.0f} /s   broker "
          f"{tput_broker:8.0f} req/s = {4 * tput_broker:.0f} msg/s routed   (goal >= 50000/s)")
    print(f"round trip, 25 MB:   direct {blob_direct * 1e3:8.1f} ms   broker "
          f"{blob_broker * 1e3:8.1f} ms   ratio {blob_ratio:.2f}x  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
