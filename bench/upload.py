"""Upload benchmark: the uploader actor sending a ~200 MB document against curl.

Starts a receiver and, in a fresh temp home, the whole service under supervisord
(``Service`` of the tests; ``user_config.ini`` ``[access] upload_targets`` names the
receiver, written before start). The receiver is a small aiohttp app in its own process
(its own session, like the service under supervisord: with the kernel's autogroup
scheduling a child of this script would share the benchmark's CPU share) that streams each
request body (the file part of a multipart form, or a PUT body) into a SHA-256 without
keeping it and answers the byte count, the hash and the seconds from the request's headers
to the body's end.

The document: one noise JPEG (numpy random 3000 x 3000 -> Pillow quality 95, about
10 MB) added 20 times (5 with ``--quick``) to a session through the broker (``buffer``
``add``); uploaded as a PDF (about 200 MB; 50 MB with ``--quick``). Measured in the same
run, rounds alternating (uploader, curl, uploader, curl, 3 each):

  1. POST: ``uploader`` ``submit`` (format pdf, multipart POST) -- its answer comes once the
     document is rendered into upload/<job>/ and queued (the render time, reported apart)
     -- then the time from that answer to the job's ``upload.done`` event (subscribed to
     before) against ``curl -s -o FILE -F file=@DOC URL`` of the same rendered PDF (a hard
     link to the uploader's file taken at its submit answer, so the very same bytes)
     wall time. Throughput = document bytes / time                 (goal: >= 0.8 x curl)
     Each answer's byte count and SHA-256 are checked against the document.
  2. PUT: the same with ``method: PUT`` against ``curl -T DOC URL``.
  3. The uploader's RSS sampled every 20 ms during its uploads (max MB).
  4. When the POST ratio is below the goal (or with ``--chunks``): ``[uploader] chunk_kb``
     1024 (set in DSConfiguration.ini, uploader restarted) against the default 256, each
     with its own alternating curl rounds; which is better is reported (the product default
     is not changed here).

Beside that, as information: ``buffer`` ``save`` of the same document to upload/ (what a
submit does before it answers) and the receiver's own timing of each body.

Prints one line per figure and a summary. ``python -m bench.upload [--quick] [--chunks]
[--keep]``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from bench.report import Run, command_line, note, options, out
from broker.client import Client, Subscription
from tests.support.service import Service
from tests.support.stack import free_port, poll_for, start_server, wait_service, write_ini

MB = 1 << 20
ROUNDS = 3
GOAL = 0.8
NOISE = 0.15  # ratio difference below which two chunk sizes count as equal
LONG = 300.0  # seconds a render or an upload may take before it is an error
SAMPLE_EVERY = 0.02  # seconds between two RSS samples of the uploader
CURL = "/usr/bin/curl"

# The receiver: takes each body in 1 MB pieces into a SHA-256, keeps nothing.
RECEIVER = """
import hashlib, json, sys, time
from aiohttp import web

port = int(sys.argv[1])
PIECE = 1 << 20

async def up(request):
    start = time.perf_counter()
    digest, size, files, fields, name, field = hashlib.sha256(), 0, 0, {}, None, None
    if request.method == "PUT":
        async for block in request.content.iter_chunked(PIECE):
            digest.update(block)
            size += len(block)
        files = 1
    else:
        reader = await request.multipart()
        async for part in reader:
            if part.filename is None:
                fields[part.name] = (await part.read()).decode()
                continue
            files += 1
            name, field = part.filename, part.name
            while True:
                block = await part.read_chunk(PIECE)
                if not block:
                    break
                digest.update(block)
                size += len(block)
    return web.json_response({
        "method": request.method, "bytes": size, "sha256": digest.hexdigest(),
        "files": files, "filename": name, "field": field, "fields": fields,
        "content_length": request.content_length,
        "idempotency_key": request.headers.get("Idempotency-Key"),
        "seconds": time.perf_counter() - start})

async def ping(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_route("POST", "/up", up)
app.router.add_route("PUT", "/up", up)
app.router.add_get("/ping", ping)
web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
            handle_signals=True)
"""


# --- the document


def noise_jpeg(side: int = 3000) -> bytes:
    """Random pixels: a JPEG that barely compresses (about 10 MB at 3000 x 3000, q95)."""
    pixels = np.random.default_rng(8).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        while block := source.read(MB):
            digest.update(block)
    return digest.hexdigest()


# --- the receiver


def start_receiver(port: int) -> subprocess.Popen:
    def answers():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
            return r.status == 200
    return start_server([sys.executable, "-c", RECEIVER, str(port)], answers, "the receiver")


def check_answer(answer: dict, method: str, size: int, digest: str, who: str) -> None:
    """The receiver got the whole document, intact, once."""
    if answer.get("method") != method or answer.get("files") != 1 \
            or answer.get("bytes") != size or answer.get("sha256") != digest:
        raise RuntimeError(f"{who} {method}: the receiver got {answer}, not the {size} bytes "
                           f"of sha256 {digest[:16]}...")


# --- the uploader's memory


class RssSampler:
    """Samples VmRSS of a process every SAMPLE_EVERY s between start() and stop()."""

    def __init__(self, pid: int):
        self.pid = pid
        self.samples: list[float] = []
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def read(self, key: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / MB
        raise RuntimeError(f"no {key} for pid {self.pid}")

    def start(self) -> None:
        self.stopping.clear()

        def run():
            while not self.stopping.is_set():
                self.samples.append(self.read())
                self.stopping.wait(SAMPLE_EVERY)
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join()


# --- one round each


class Bench:
    def __init__(self, service: Service, work: Path, url: str, sid: str):
        self.service, self.work, self.url, self.sid = service, work, url, sid
        self.client = service.client()
        self.events = Subscription(f"ipc://{service.home}/run/events-in.sock",
                                   f"ipc://{service.home}/run/events-out.sock", [b"upload."])
        self.rounds = 0
        self.sampler: RssSampler | None = None

    def close(self) -> None:
        self.events.close()
        self.client.close()

    def watch(self, pid: int) -> None:
        self.sampler = RssSampler(pid)

    def uploader(self, method: str, keep: Path | None = None) -> dict:
        """One job: submit (render + queue), then until upload.done. Checks the bytes."""
        self.rounds += 1
        start = time.perf_counter()
        job = self.client.call("uploader", "submit", {
            "session": self.sid, "url": self.url, "method": method, "format": "pdf",
            "filename": "bench.pdf"}, timeout=LONG)
        queued = time.perf_counter()
        # The very file being sent, kept past the job's end by a second name (no copy).
        link = keep or self.work / f"sent-{self.rounds}.pdf"
        os.link(self.service.home / "upload" / job["job"] / job["files"][0]["name"], link)
        if self.sampler is not None:
            self.sampler.start()
        try:
            end = time.monotonic() + LONG
            while True:
                event = self.events.next(max(0.0, end - time.monotonic()))
                if event is None:
                    raise RuntimeError(f"no end of upload job {job['job']} within {LONG} s")
                topic, body = event
                if body.get("job") != job["job"] or topic not in ("upload.done",
                                                                   "upload.error"):
                    continue
                done = time.perf_counter()
                break
        finally:
            if self.sampler is not None:
                self.sampler.stop()
        if topic != "upload.done" or body.get("status") != 200:
            raise RuntimeError(f"upload job {job['job']} ended {topic}: {body}")
        answer = json.loads(body["body"])
        size = job["files"][0]["bytes"]
        check_answer(answer, method, size, sha256_of(link), "uploader")
        if answer["idempotency_key"] != job["idempotency_key"]:
            raise RuntimeError(f"Idempotency-Key {answer['idempotency_key']!r} arrived, "
                               f"not {job['idempotency_key']!r}")
        final = self.client.call("uploader", "job", {"job": job["job"]})
        if final["state"] != "done" or final["attempts"] != 1:
            raise RuntimeError(f"job after upload.done: {final}")
        if keep is None:
            link.unlink()
        return {"render": queued - start, "seconds": done - queued, "bytes": size,
                "receiver": answer["seconds"]}

    def curl(self, method: str, path: Path, size: int, digest: str) -> dict:
        answer_file = self.work / "curl-answer.json"
        how = ["-F", f"file=@{path}"] if method == "POST" else ["-T", str(path)]
        argv = [CURL, "-s", "-S", "-o", str(answer_file), "-w", "%{http_code}", *how, self.url]
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=LONG)
        seconds = time.perf_counter() - start
        if done.returncode != 0 or done.stdout.strip() != "200":
            raise RuntimeError(f"curl {method}: exit {done.returncode}, status "
                               f"{done.stdout.strip()!r}: {done.stderr[-300:]}")
        answer = json.loads(answer_file.read_text())
        check_answer(answer, method, size, digest, "curl")
        return {"seconds": seconds, "bytes": size, "receiver": answer["seconds"]}


def alternate(bench: Bench, method: str, doc: Path, size: int, digest: str,
              label: str) -> dict:
    """ROUNDS of uploader, curl, uploader, curl ... for one method."""
    up, cu = [], []
    for number in range(ROUNDS):
        note(f"{label}: round {number + 1} of {ROUNDS}: uploader, then curl")
        up.append(bench.uploader(method))
        cu.append(bench.curl(method, doc, size, digest))
    return {"uploader": up, "curl": cu}


def rate(rounds: list[dict]) -> float:
    """MB/s of the mean time over the rounds."""
    return rounds[0]["bytes"] / MB / statistics.mean(r["seconds"] for r in rounds)


def report(label: str, got: dict) -> float:
    up, cu = got["uploader"], got["curl"]
    ratio = rate(up) / rate(cu)
    out(f"{label} ({len(up)} rounds each, alternating):")
    for name, rounds in (("uploader", up), ("curl", cu)):
        times = ", ".join(f"{r['seconds']:.2f}" for r in rounds)
        mean = statistics.mean(r["seconds"] for r in rounds)
        out(f"  {name:8s} {rate(rounds):7.1f} MB/s  (mean {mean:.2f} s; rounds {times} s; "
            "receiver's body time mean "
            f"{statistics.mean(r['receiver'] for r in rounds):.2f} s)")
    out(f"  throughput ratio uploader / curl {ratio:.2f}x  (goal >= {GOAL}x: "
        f"{'met' if ratio >= GOAL else 'NOT met'})")
    return ratio


def set_chunk(service: Service, chunk_kb: int) -> None:
    """Restart the uploader with ``[uploader] chunk_kb`` (appended to DSConfiguration.ini)."""
    ini = service.home / "ini" / "DSConfiguration.ini"
    text = ini.read_text().split("\n[uploader]\n")[0].rstrip("\n") + "\n"
    ini.write_text(text + f"\n[uploader]\nchunk_kb = {chunk_kb}\n")
    old = service.pid("uploader")
    done = service.supervisorctl("restart", "uploader")
    if done.returncode != 0:
        raise RuntimeError(f"restarting the uploader: {done.stdout}{done.stderr}")
    service.wait_running("uploader", other_than=old)
    with service.client() as client:
        poll_for(lambda: _answers(client), 30, "the restarted uploader", every=0.2)


def _answers(client: Client) -> bool:
    try:
        return "jobs" in client.call("uploader", "status", timeout=2)
    except Exception:
        return False


def main() -> None:
    parser = command_line(__doc__, "a 50 MB document (CI smoke run)")
    parser.add_argument("--chunks", action="store_true",
                        help="also measure chunk_kb 1024 even when the goal is met")
    opts = options(parser)
    pages = 5 if opts.quick else 20

    with Run("upload", opts.keep) as run:
        note("drawing the noise JPEG")
        jpeg = noise_jpeg()
        port = free_port()
        run.process(start_receiver(port))
        url = f"http://127.0.0.1:{port}/up"
        home = run.work / "home"
        write_ini(home, "user_config.ini", f"[access]\nupload_targets = http://127.0.0.1:{port}/\n")
        note(f"starting the service in {run.work}")
        service = run.service(Service(home))
        service.start()
        with service.client() as client:
            wait_service(client, "buffer", timeout=30)
            wait_service(client, "uploader", timeout=30)
            sid = client.call("buffer", "open_session", {})["session"]
            note(f"adding the {len(jpeg) / MB:.1f} MB JPEG {pages} times")
            for _ in range(pages):
                client.call("buffer", "add", {"session": sid}, blobs=[jpeg], timeout=LONG)
            note("buffer.save of the document into upload/ (what submit does first)")
            start = time.perf_counter()
            saved = client.call("buffer", "save", {"session": sid, "format": "pdf",
                                                   "dest": "bench-save/doc.pdf"}, timeout=LONG)
            save_time = time.perf_counter() - start
            Path(saved["path"]).unlink()
        out(f"document: {pages} x {len(jpeg) / MB:.2f} MB noise JPEG (3000x3000 q95) -> PDF "
            f"{saved['bytes'] / MB:.1f} MB; receiver aiohttp on port {port}; {os.cpu_count()} "
            f"CPUs, load average (1 min) {os.getloadavg()[0]:.2f}")

        bench = Bench(service, run.work, url, sid)
        run.callback(bench.close)
        note("warm-up upload (not counted): keeps the rendered PDF for curl")
        doc = run.work / "doc.pdf"
        warm = bench.uploader("POST", keep=doc)
        size, digest = warm["bytes"], sha256_of(doc)
        curl_warm = bench.curl("POST", doc, size, digest)
        note(f"warm-up: uploader {warm['seconds']:.2f} s, curl {curl_warm['seconds']:.2f} s")
        pid = service.pid("uploader")
        bench.watch(pid)
        idle_rss = bench.sampler.read()

        results = {"POST": alternate(bench, "POST", doc, size, digest, "POST"),
                   "PUT": alternate(bench, "PUT", doc, size, digest, "PUT")}
        rss_max = max(bench.sampler.samples)
        hwm = bench.sampler.read("VmHWM")
        renders = [r["render"] for got in results.values() for r in got["uploader"]]

        out(f"render (submit -> answer: buffer renders the PDF into upload/<job>/, job queued; "
            f"{len(renders)} submits): mean {statistics.mean(renders):.2f} s, min "
            f"{min(renders):.2f} s, max {max(renders):.2f} s; for comparison buffer.save "
            f"dest (once): {save_time:.2f} s")
        ratios = {method: report(f"{method} {size / MB:.1f} MB, chunk_kb 256 (default)", got)
                  for method, got in results.items()}
        out(f"uploader RSS during the uploads ({len(bench.sampler.samples)} samples every "
            f"{SAMPLE_EVERY * 1e3:.0f} ms): max {rss_max:.1f} MB; before the timed "
            f"rounds {idle_rss:.1f} MB; VmHWM since start {hwm:.1f} MB")
        for method in results:
            run.summary.append(f"{method}: uploader {rate(results[method]['uploader']):.1f} "
                               f"MB/s vs curl {rate(results[method]['curl']):.1f} MB/s = "
                               f"{ratios[method]:.2f}x (goal >= {GOAL}x: "
                               f"{'met' if ratios[method] >= GOAL else 'NOT met'})")
        run.summary.append(f"render of the {size / MB:.1f} MB PDF before the job is queued: mean "
                           f"{statistics.mean(renders):.2f} s")
        run.summary.append(f"uploader RSS max during the uploads {rss_max:.1f} MB")

        if ratios["POST"] < GOAL or opts.chunks:
            bench.sampler = None
            note("chunk_kb 1024: restarting the uploader")
            set_chunk(service, 1024)
            bench.watch(service.pid("uploader"))
            big = alternate(bench, "POST", doc, size, digest, "POST chunk_kb 1024")
            big_rss = max(bench.sampler.samples)
            big_ratio = report(f"POST {size / MB:.1f} MB, chunk_kb 1024", big)
            out(f"  uploader RSS max with chunk_kb 1024: {big_rss:.1f} MB")
            # Rounds of a few hundred ms vary by 10-20 % on a busy 2-core machine.
            if abs(big_ratio - ratios["POST"]) < NOISE:
                verdict = f"no clear difference (under {NOISE:.2f}x apart)"
            else:
                verdict = f"{1024 if big_ratio > ratios['POST'] else 256} is better"
            out(f"chunk_kb: 256 -> {ratios['POST']:.2f}x ({rate(results['POST']['uploader']):.0f}"
                f" MB/s), 1024 -> {big_ratio:.2f}x ({rate(big['uploader']):.0f} MB/s) of curl: "
                f"{verdict} (each against its own curl rounds; product default unchanged)")
            run.summary.append(f"chunk_kb 256 {ratios['POST']:.2f}x vs 1024 {big_ratio:.2f}x of "
                               f"curl (POST): {verdict}; RSS max {rss_max:.1f} / "
                               f"{big_rss:.1f} MB")


if __name__ == "__main__":
    main()
