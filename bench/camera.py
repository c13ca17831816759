"""Camera benchmark (issue 10): live view of a 1280 x 720 source.

Starts the whole service in a fresh temp home (``Service`` of the tests) with two named
camera sources, and measures in the same run:

  0. The source: a local MJPEG camera, in its own process (so that it does not share this
     bench's CPU), serving ``multipart/x-mixed-replace`` at 30 frames/s to every client,
     each part one of 30 pre-encoded 1280 x 720 JPEGs (quality 85, about 120 KB) whose
     content changes from frame to frame (a moving bar, the frame number, a shifted
     grain); and an MJPG ``.avi`` file of the same frames (1280 x 720, 30 frames/s,
     OpenCV's writer), which the actor plays in a loop at its frame rate.
  1. Direct baseline: this bench reads the MJPEG server's stream itself (the same
     streaming client as below): frames/s.
  2. Live view of the MJPEG source through the service: ``GET /api/v1/sources/
     camera%3Alive/stream?session=&token=&fps=30`` read by a streaming client (aiohttp,
     parts split by their Content-Length) for the measured time after a short warm-up:
     frames/s delivered and their ratio to the direct baseline
                                                 (goal: >= 25 frames/s)
     and the CPU seconds per second (utime + stime of /proc/PID/stat over the window) of
     the camera actor's process (pid from ``scanbridge status --json``)
                                                 (goal: <= 1 core)
     beside the gateway's and the broker's (every frame passes camera -> broker ->
     gateway), as information. Each part must be one of the server's JPEGs byte for byte
     (JPEG kept as is) and a new frame (X-Frame grows).
  3. The same of the ``.avi`` file source (the OpenCV path: MJPG packets read raw, not
     decoded) (information).
  4. Two viewers of the MJPEG source at once: frames/s of each, and the camera's CPU (one
     reader shared by both: it should hardly grow) (information).
  5. One viewer of the MJPEG source with ``?fps=60`` (``[camera] max_fps = 60`` here): a
     cap above the source's rate, so the difference to case 2 is what the gateway's
     pacing at exactly the source's rate costs (information).
  Before each case the bench waits until the actor has closed the feeds of the case
  before (``[camera] release_after``), so that only the measured feed runs. Beside each
  case: the CPUs other processes on the machine used meanwhile (/proc/stat less this
  bench, the MJPEG server and the service); a busy machine lowers the figures.

Prints one line per figure, the cases as a table, and a summary.
``python -m bench.camera [--quick] [--seconds S] [--rounds R] [--keep]``: S measured seconds
per case (default 10, 3 with --quick), R rounds of the direct / gateway pair (default 2,
1 with --quick). The default run takes about 100 s.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.camera_feed import (BUSY, FPS, FRAMES, QUALITY, SIZE, cpu_seconds, draw_frames,
                               machine_busy, start_camera, write_clip, write_jpegs)
from bench.report import Run, command_line, note, options, out
from tests.support.service import Service
from tests.support.stack import free_port, poll_for
from tests.support.web import Api

WARM_UP = 1.5  # seconds after every viewer's first frame before the window starts
FPS_GOAL = 25.0
CPU_GOAL = 1.0  # cores the camera actor may use


# --- the streaming client


@dataclass
class Viewer:
    """One multipart stream read part by part; records each part's arrival."""

    url: str
    known: dict[str, int] | None = None  # sha256 of the source's JPEGs -> frame number
    times: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    foreign: int = 0  # parts that are not one of the source's JPEGs
    first: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, http: aiohttp.ClientSession) -> None:
        async with http.get(self.url) as response:
            kind = response.headers.get("Content-Type", "")
            if response.status != 200 or not kind.startswith("multipart/x-mixed-replace"):
                body = await response.read()
                raise RuntimeError(f"GET {self.url}: {response.status} {kind} {body[:300]!r}")
            boundary = b"--" + kind.partition("boundary=")[2].strip().encode()
            stream = response.content
            while True:
                line = await stream.readline()
                if not line:
                    return
                if not line.startswith(boundary):
                    continue
                if line.rstrip().endswith(b"--"):
                    return  # the closing boundary: the stream ended
                headers = {}
                while True:
                    header = await stream.readline()
                    if header in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = header.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                jpeg = await stream.readexactly(int(headers["content-length"]))
                self.times.append(time.perf_counter())
                self.sizes.append(len(jpeg))
                if "x-frame" in headers:
                    self.seqs.append(int(headers["x-frame"]))
                if self.known is not None and \
                        hashlib.sha256(jpeg).hexdigest() not in self.known:
                    self.foreign += 1
                self.first.set()

    def count(self, start: float, end: float) -> int:
        return sum(1 for t in self.times if start <= t < end)


@dataclass
class Case:
    name: str
    viewers: list[float]  # frames/s of each viewer
    seconds: float
    cpu: dict[str, float]  # process -> CPUs (CPU seconds per second)
    others: float  # CPUs other processes used
    kb: float  # mean part size
    foreign: int
    repeats: int  # parts whose X-Frame did not grow


async def measure(name: str, urls: list[str], seconds: float, pids: dict[str, int],
                  known: dict[str, int] | None, ours: list[int]) -> Case:
    """Read the streams; the window starts WARM_UP s after every viewer's first frame."""
    viewers = [Viewer(url, known) for url in urls]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        tasks = [asyncio.ensure_future(viewer.run(http)) for viewer in viewers]
        try:
            deadline = time.monotonic() + 60
            while not all(v.first.is_set() for v in viewers):
                for task in tasks:
                    if task.done():
                        task.result()  # raises what went wrong
                        raise RuntimeError(f"{name}: a stream ended before its first frame")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: no first frame in 60 s")
                await asyncio.sleep(0.05)
            await asyncio.sleep(WARM_UP)
            start = time.perf_counter()
            cpu0 = {what: cpu_seconds(pid) for what, pid in pids.items()}
            busy0 = machine_busy()
            ours0 = sum(cpu_seconds(pid, True) for pid in ours)
            await asyncio.sleep(seconds)
            end = time.perf_counter()
            cpu1 = {what: cpu_seconds(pid) for what, pid in pids.items()}
            busy1 = machine_busy()
            ours1 = sum(cpu_seconds(pid, True) for pid in ours)
            for task in tasks:
                if task.done():
                    task.result()
                    raise RuntimeError(f"{name}: a stream ended during the window")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    took = end - start
    rates = [viewer.count(start, end) / took for viewer in viewers]
    sizes = [size for viewer in viewers for size in viewer.sizes]
    repeats = sum(sum(1 for a, b in zip(v.seqs, v.seqs[1:], strict=False) if b <= a)
                  for v in viewers)
    return Case(name, rates, took, {w: (cpu1[w] - cpu0[w]) / took for w in pids},
                max(0.0, (busy1 - busy0) - (ours1 - ours0)) / took,
                statistics.mean(sizes) / 1024, sum(v.foreign for v in viewers), repeats)


# --- the service


def feeds(service: Service) -> list[dict]:
    with service.client() as client:
        return client.call("camera", "status", {}, timeout=30)["feeds"]


def wait_closed(service: Service) -> None:
    """Until the actor has closed every feed (release_after after the last viewer)."""
    poll_for(lambda: not feeds(service), 30, "the camera feeds closed", every=0.2)


def processes(service: Service) -> dict[str, int]:
    found = service.processes()
    return {name: info["pid"] for name, info in found.items()
            if info.get("pid") and info.get("statename") == "RUNNING"}


def run_cases(service: Service, server: subprocess.Popen, port: int, jpegs: list[bytes],
              seconds: float, rounds: int) -> tuple[list[Case], list[str]]:
    api = Api(service)
    sid, token = api.open_session()  # the camera actor starts on demand now
    poll_for(lambda: processes(service).get("camera"), 30, "the camera actor RUNNING",
             every=0.2)
    pids = processes(service)
    wanted = {what: pids[what] for what in ("camera", "gateway", "broker")}
    for what, pid in wanted.items():  # the program itself, not a wrapper around it
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if what.encode() not in command:
            raise RuntimeError(f"pid {pid} of {what} runs {command[:200]!r}")
    wanted["mjpeg server"] = server.pid
    ours = [os.getpid(), server.pid, *pids.values()]
    known = {hashlib.sha256(jpeg).hexdigest(): n for n, jpeg in enumerate(jpegs)}
    direct = f"http://127.0.0.1:{port}/stream"

    def stream(source: str, fps: int = FPS) -> str:
        return service.url(f"/api/v1/sources/camera%3A{source}/stream?session={sid}"
                           f"&token={token}&fps={fps}")

    cases: list[Case] = []
    try:
        for number in range(rounds):
            note(f"round {number + 1} of {rounds}: the MJPEG server directly, then through "
                 f"the service ({seconds:g} s each)")
            wait_closed(service)
            cases.append(asyncio.run(measure("direct", [direct], seconds, wanted, known,
                                             ours)))
            cases.append(asyncio.run(measure("live", [stream("live")], seconds, wanted,
                                             known, ours)))
        note(f"the .avi file source ({seconds:g} s)")
        wait_closed(service)
        cases.append(asyncio.run(measure("clip", [stream("clip")], seconds, wanted, None,
                                         ours)))
        note(f"two viewers of the MJPEG source ({seconds:g} s)")
        wait_closed(service)
        cases.append(asyncio.run(measure("live x2", [stream("live")] * 2, seconds, wanted,
                                         known, ours)))
        note(f"one viewer of the MJPEG source with ?fps={2 * FPS} ({seconds:g} s)")
        wait_closed(service)
        cases.append(asyncio.run(measure("live fps", [stream("live", 2 * FPS)], seconds,
                                         wanted, known, ours)))
        status = feeds(service)
    finally:
        api.request("DELETE", f"/api/v1/sessions/{sid}", token=token)
    return cases, [f"{f['source']}: {f['frames']} frames, {f['viewers']} viewers, "
                   f"size {f['size']}" for f in status]


# --- the report


def report(cases: list[Case], seconds: float, summary: list[str]) -> None:
    def mean_of(name: str, pick) -> float:
        return statistics.mean(pick(case) for case in cases if case.name == name)

    labels = {"direct": "MJPEG server read directly",
              "live": "live view, MJPEG source",
              "clip": "live view, MJPG .avi file",
              "live x2": "live view, MJPEG source, 2 viewers",
              "live fps": f"live view, MJPEG source, ?fps={2 * FPS}"}
    others = statistics.mean(case.others for case in cases)
    out(f"camera live view: a {SIZE[0]}x{SIZE[1]} source at {FPS} frames/s ({FRAMES} "
        f"distinct JPEGs q{QUALITY}); {seconds:g} s windows after a {WARM_UP:g} s warm-up; "
        f"{os.cpu_count()} CPUs; other processes used {others:.2f} CPUs meanwhile")
    out(f"  {'case':36s} {'frames/s':>14s} {'KB':>6s} {'camera':>7s} {'gateway':>8s} "
        f"{'broker':>7s} {'server':>7s} {'others':>7s}  (CPU columns: cores)")
    for case in cases:
        rates = " + ".join(f"{rate:.1f}" for rate in case.viewers)
        service_cpu = ("-", "-", "-") if case.name == "direct" else tuple(
            f"{case.cpu[w]:.3f}" for w in ("camera", "gateway", "broker"))
        out(f"  {labels[case.name]:36s} {rates:>14s} {case.kb:6.0f} {service_cpu[0]:>7s} "
            f"{service_cpu[1]:>8s} {service_cpu[2]:>7s} {case.cpu['mjpeg server']:7.3f} "
            f"{case.others:7.2f}")
        if case.foreign or case.repeats:
            out(f"    {case.foreign} parts were not the source's JPEGs, {case.repeats} did "
                "not have a new frame number")
    if others > BUSY:
        out(f"  the machine was busy: other processes used {others:.2f} CPUs on average; the "
            "figures are not clean")
    direct = mean_of("direct", lambda c: c.viewers[0])
    live = mean_of("live", lambda c: c.viewers[0])
    camera = mean_of("live", lambda c: c.cpu["camera"])
    gateway = mean_of("live", lambda c: c.cpu["gateway"])
    broker = mean_of("live", lambda c: c.cpu["broker"])
    clip = mean_of("clip", lambda c: c.viewers[0])
    clip_cpu = mean_of("clip", lambda c: c.cpu["camera"])
    two = next(case for case in cases if case.name == "live x2")
    uncapped = next(case for case in cases if case.name == "live fps")
    ratio = live / direct
    fps_met = "met" if live >= FPS_GOAL else "NOT met"
    cpu_met = "met" if camera <= CPU_GOAL else "NOT met"
    out(f"  live view / direct: {live:.1f} / {direct:.1f} frames/s = {ratio:.2f}")
    out(f"  camera actor: {camera:.3f} cores for {live:.1f} frames/s ({camera / live * 1e3:.2f} "
        f"ms CPU a frame); gateway {gateway:.3f}, broker {broker:.3f} cores")
    summary.append(f"live view of a {SIZE[0]}x{SIZE[1]} MJPEG source: {live:.1f} frames/s "
                   f"(goal >= {FPS_GOAL:g}: {fps_met}); direct read {direct:.1f} frames/s = "
                   f"{ratio:.2f}x")
    summary.append(f"camera actor CPU during it: {camera:.3f} cores (goal <= {CPU_GOAL:g}: "
                   f"{cpu_met}); gateway {gateway:.3f}, broker {broker:.3f} cores "
                   "(information)")
    summary.append(f"live view of a {SIZE[0]}x{SIZE[1]} MJPG .avi file: {clip:.1f} frames/s, "
                   f"camera actor {clip_cpu:.3f} cores (information)")
    summary.append(f"two viewers of the MJPEG source: "
                   f"{' and '.join(f'{rate:.1f}' for rate in two.viewers)} frames/s, camera "
                   f"actor {two.cpu['camera']:.3f} cores (one viewer: {camera:.3f}), gateway "
                   f"{two.cpu['gateway']:.3f} cores (information)")
    summary.append(f"one viewer with ?fps={2 * FPS} (a cap above the source's rate): "
                   f"{uncapped.viewers[0]:.1f} frames/s, camera actor "
                   f"{uncapped.cpu['camera']:.3f} cores (information)")
    if others > BUSY:
        summary.append(f"the machine was busy: other processes used {others:.2f} CPUs")


def main() -> None:
    parser = command_line(__doc__, "short windows (CI smoke run)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="measured seconds per case (default 10, 3 with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds of direct / live view (default 2, 1 with --quick)")
    opts = options(parser)
    seconds = opts.seconds if opts.seconds is not None else (3.0 if opts.quick else 10.0)
    rounds = opts.rounds if opts.rounds is not None else (1 if opts.quick else 2)
    if seconds <= 0 or rounds < 1:
        parser.error("--seconds must be positive and --rounds at least 1")

    with Run("camera", opts.keep) as run:
        note(f"drawing {FRAMES} frames of {SIZE[0]}x{SIZE[1]}; the JPEGs and the .avi")
        frames = draw_frames()
        jpegs = write_jpegs(frames, run.work / "frames")
        clip = run.work / "clip.avi"
        write_clip(frames, clip)
        port = free_port()
        server = run.process(start_camera(run.work / "frames", port))
        note(f"starting the service in {run.work}")
        service = run.service(Service(run.work / "home", extra_ini=(
            f"[camera]\nsources = live=http://127.0.0.1:{port}/stream, clip={clip}\n"
            f"v4l2 = false\nmax_fps = {2 * FPS}\n")))
        service.start()
        cases, status = run_cases(service, server, port, jpegs, seconds, rounds)
        note("feeds at the end: " + "; ".join(status))
        report(cases, seconds, run.summary)


if __name__ == "__main__":
    main()
