"""OCR and barcode benchmark (issue 9).

Starts the whole service in fresh temp homes (``Service`` of the tests) and measures in the
same run:

  1. Barcodes: an A4 300 dpi page (2480 x 3508, PNG) with a QR code and a Code 128 on it,
     put into a session through ``buffer.add``. ``barcode.read`` of that page through the
     broker (the actor locates the stored file, decodes it and runs zxing-cpp) against the
     direct baseline in this process: Pillow opens the same stored file and
     ``zxingcpp.read_barcodes`` reads it; alternating in short blocks. Mean / p50 / p95 and
     the ratio of the means                                       (goal: <= 1.3 x direct)
     The same with the zbar engine against ``pyzbar.decode`` directly (information).
  2. OCR scaling: distinct A4 300 dpi text pages (DejaVu Sans 10 pt on off-white paper with
     scanner grain, JPEG q85, about 1.6 MB) read by
       - tesserocr directly in this process (one ``PyTessBaseAPI``, lang eng,
         OMP_THREAD_LIMIT=1 like the workers): decode, grey, recognise, text and the words
         with boxes and confidences, page after page;
       - the service with ``[ocr] ocr_workers = 1`` (a second temp home): all pages sent at
         once as ``ocr.page`` requests (``rotate: false``: the same work as the baseline)
         through the broker, which queues them for its worker;
       - the service with ``ocr_workers = N`` (N = cores), the same way;
     in rounds that alternate the three (the order turns each round). Pages/s of each
     (pages / wall time of the batch), the scaling ratio N-worker pages/s /
     (N x 1-worker pages/s)                                        (goal: >= 0.85)
     also from the fastest round of each, and the 1-worker service against the direct
     baseline (information). Then, once, the gateway job path on the N-worker service: the
     pages imported into a session, ``POST /api/v1/sessions/{sid}/ocr`` (rotate false,
     text) until its ``ocr.done`` event: pages/s against the broker path (the gateway's
     overhead, information). Every text is checked (>= 90 % of the page's words found).
     Beside each batch: the CPU that other processes on the machine used meanwhile
     (/proc/stat less this bench's processes); a busy machine lowers the scaling figure.

Prints one line per figure, the OCR figures as a table, and a summary.
``python -m bench.ocr [--quick] [--pages M] [--rounds R] [--keep]``: M OCR pages per batch
(default 4 x cores, 2 x cores with --quick), R rounds (default 2, 1 with --quick). The
default run takes about 100 s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import zxingcpp
from PIL import Image, ImageChops, ImageDraw, ImageFont
from pyzbar import pyzbar

from bench.report import ms, note, out, shut_down, stop_service
from bench.report import summary as report_summary
from broker.client import AsyncClient
from tests.support.service import Service
from tests.support.stack import poll_for, workers
from tests.support.web import Api

BLOCK = 5  # reads per side before the other side's turn
A4_300 = (2480, 3508)
MB = 1 << 20
LONG = 600.0  # request timeout (s): a slow machine must not turn a figure into an error
SCALING_GOAL = 0.85
BUSY = 0.2  # CPUs used by other processes above which the figures are not clean
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata"
FONTS = "/usr/share/fonts/truetype/dejavu"
MIN_READ = 0.9  # share of a page's words the OCR must find, or the figures mean nothing
WORDS = ("the invoice total amount payment due date customer account number order delivery "
         "address service period reference please transfer within thirty days of receipt "
         "questions contact our office monday friday between hours scanner document page "
         "paper tray station network printer quality resolution colour archive storage "
         "retention policy statement balance credit note shipping item quantity price tax "
         "from to for and with by on at is are will be has been this that your we").split()


# --- barcodes


def page_with_codes() -> bytes:
    page = Image.new("L", A4_300, 255)
    for number, (text, kind) in enumerate([("https://scanbridge.example/doc/42",
                                            zxingcpp.BarcodeFormat.QRCode),
                                           ("INVOICE-2026-0042", zxingcpp.BarcodeFormat.Code128)]):
        code = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(text, kind), scale=6)
        page.paste(Image.fromarray(code), (300, 400 + number * 1400))
    out_file = io.BytesIO()
    page.save(out_file, "PNG")
    return out_file.getvalue()


def direct(path: str, engine: str) -> int:
    with Image.open(path) as image:
        gray = image.convert("L")
        if engine == "zbar":
            return len(pyzbar.decode(gray))
        return len(zxingcpp.read_barcodes(gray))


def alternate(rounds: int, through, baseline) -> tuple[list[float], list[float]]:
    via, plain = [], []
    for _ in range(rounds):
        for side, record in ((through, via), (baseline, plain)):
            for _ in range(BLOCK):
                start = time.perf_counter()
                side()
                record.append(time.perf_counter() - start)
    return via, plain


def barcode_part(service: Service, rounds: int, summary: list[str]) -> None:
    with service.client() as client:
        session = client.call("buffer", "open_session", {})["session"]
        image = client.call("buffer", "add", {"session": session},
                            blobs=[page_with_codes()])["id"]
        path = client.call("buffer", "locate", {"session": session, "image": image})["path"]
        for engine in ("zxing", "zbar"):
            found = client.call("barcode", "read", {"session": session, "engine": engine})
            count = len(found["pages"][0]["barcodes"])
            if count != 2 or direct(path, engine) != 2:
                raise RuntimeError(f"{engine}: expected the 2 codes, got {count}")
            note(f"{engine}: {rounds * BLOCK} reads each way, alternating")
            via, plain = alternate(
                rounds,
                lambda e=engine: client.call("barcode", "read",
                                             {"session": session, "engine": e}),
                lambda e=engine: direct(path, e))
            ratio = statistics.mean(via) / statistics.mean(plain)
            out(f"{engine}: barcode.read through the broker  {ms(via)}")
            out(f"{engine}: Pillow + {engine} directly       {ms(plain)}")
            goal = " (goal <= 1.3x: " + ("met)" if ratio <= 1.3 else "NOT met)") \
                if engine == "zxing" else " (information)"
            summary.append(f"barcode read of an A4 300 dpi page, {engine}: "
                           f"{statistics.mean(via) * 1e3:.1f} ms vs "
                           f"{statistics.mean(plain) * 1e3:.1f} ms direct = "
                           f"{ratio:.2f}x{goal}")


# --- OCR: the pages


def text_pages(count: int) -> list[tuple[bytes, Counter]]:
    """``count`` distinct A4 300 dpi text pages as colour JPEG (q85), each with the words
    drawn on it: a bold heading, then lines of 10 pt DejaVu Sans in paragraphs over the
    page, on off-white paper with scanner grain."""
    width, height = A4_300
    body = ImageFont.truetype(f"{FONTS}/DejaVuSans.ttf", 42)  # 10 pt at 300 dpi
    bold = ImageFont.truetype(f"{FONTS}/DejaVuSans-Bold.ttf", 66)
    noise = Image.effect_noise((width + 64, height + 64), 3).convert("L")
    pages = []
    for number in range(count):
        rnd = random.Random(4242 + number)
        image = Image.new("RGB", A4_300, (246, 244, 238))
        draw = ImageDraw.Draw(image)
        truth: list[str] = []
        heading = f"Scanbridge invoice {number + 1:04d}"
        draw.text((236, 250), heading, font=bold, fill=(20, 20, 60))
        truth += heading.lower().split()
        y = 480
        while y < height - 320:
            line: list[str] = []
            while True:
                word = rnd.choice(WORDS)
                if draw.textlength(" ".join(line + [word]), font=body) > width - 2 * 236:
                    break
                line.append(word)
            draw.text((236, y), " ".join(line), font=body, fill=(25, 25, 30))
            truth += line
            y += 62 if rnd.random() > 0.15 else 124  # a blank line between paragraphs
        ox, oy = rnd.randrange(64), rnd.randrange(64)
        grain = noise.crop((ox, oy, ox + width, oy + height))
        image = ImageChops.subtract(image, Image.merge("RGB", (grain,) * 3), 1, 128)
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=85, dpi=(300, 300))
        pages.append((buf.getvalue(), Counter(truth)))
    return pages


def read_share(text: str, truth: Counter) -> float:
    """The share of the page's words found in the recognised text."""
    return sum((Counter(text.lower().split()) & truth).values()) / sum(truth.values())


def check_read(where: str, texts: list[str], pages: list[tuple[bytes, Counter]]) -> float:
    if len(texts) != len(pages):
        raise RuntimeError(f"{where}: {len(texts)} texts for {len(pages)} pages")
    shares = [read_share(text, truth) for text, (_, truth) in zip(texts, pages, strict=True)]
    if min(shares) < MIN_READ:
        raise RuntimeError(f"{where}: the pages were not read (share of words found: "
                           f"{', '.join(f'{s:.2f}' for s in shares)})")
    return statistics.mean(shares)


# --- OCR: the three ways


class Direct:
    """The baseline: tesserocr in this process, the actor's work without broker or actor:
    decode, grey, recognise, text, the words with boxes and confidences."""

    def __init__(self):
        # Like the workers under supervisord: one OpenMP thread. libgomp reads it when
        # libtesseract loads it, so before the first import of tesserocr.
        os.environ["OMP_THREAD_LIMIT"] = "1"
        import tesserocr
        self.tesserocr = tesserocr
        self.api = tesserocr.PyTessBaseAPI(path=TESSDATA, lang="eng", psm=tesserocr.PSM.AUTO)

    def page(self, data: bytes) -> str:
        tesserocr, api = self.tesserocr, self.api
        with Image.open(io.BytesIO(data)) as image:
            dpi = image.info.get("dpi")
            gray = image.convert("L")
        api.SetImage(gray)
        if dpi:
            api.SetSourceResolution(round(float(dpi[0])))
        api.Recognize()
        text = api.GetUTF8Text()
        level = tesserocr.RIL.WORD
        words = []
        for item in tesserocr.iterate_level(api.GetIterator(), level):
            word, box = item.GetUTF8Text(level), item.BoundingBox(level)
            if word and word.strip() and box is not None:
                words.append((word, item.Confidence(level), box))
        api.Clear()
        return text

    def batch(self, pages: list[tuple[bytes, Counter]]) -> tuple[float, list[str], list]:
        """Page after page: (wall seconds, texts, seconds per page)."""
        texts, each = [], []
        start = time.perf_counter()
        for data, _ in pages:
            began = time.perf_counter()
            texts.append(self.page(data))
            each.append(time.perf_counter() - began)
        return time.perf_counter() - start, texts, each

    def close(self) -> None:
        self.api.End()


class OtherCpu:
    """The CPU that processes other than this bench's (this process and the services'
    process trees) use on the machine: /proc/stat's busy time less ours."""

    def __init__(self, services: list[Service]):
        self.pids = {os.getpid()} | {info["pid"] for service in services
                                     for info in service.processes().values()
                                     if info.get("pid")}
        self.seconds = 0.0
        self.other = 0.0
        self.last = 0.0  # CPUs the others used during the last measure()

    @staticmethod
    def machine() -> float:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        return (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def process(pid: int) -> float:
        """CPU seconds of a process and its waited-for children."""
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def ours(self) -> float:
        return sum(self.process(pid) for pid in self.pids)

    def measure(self, work):
        """``work()``, counting the other processes' CPU meanwhile."""
        machine, ours, start = self.machine(), self.ours(), time.perf_counter()
        try:
            return work()
        finally:
            took = time.perf_counter() - start
            other = max(0.0, (self.machine() - machine) - (self.ours() - ours))
            self.seconds += took
            self.other += other
            self.last = other / took

    def cpus(self) -> float:
        """CPUs the others used on average while measuring."""
        return self.other / self.seconds if self.seconds else 0.0


def service_batch(service: Service, pages: list[tuple[bytes, Counter]]) -> tuple[float, list]:
    """All pages in flight at once as ``ocr.page`` requests: (wall seconds, results)."""
    async def run() -> tuple[float, list]:
        client = AsyncClient(f"ipc://{service.home}/run/broker.sock")
        try:
            start = time.perf_counter()
            results = await asyncio.gather(*(
                client.call("ocr", "page", {"lang": "eng", "rotate": False, "index": number},
                            blobs=[data], timeout=LONG, idempotent=True)
                for number, (data, _) in enumerate(pages)))
            return time.perf_counter() - start, results
        finally:
            await client.close()
    seconds, results = asyncio.run(run())
    if [result["index"] for result in results] != list(range(len(pages))):
        raise RuntimeError("ocr.page answers out of order")
    return seconds, results


def ocr_service(home: Path, count: int) -> Service:
    """A service (not started) with ``count`` OCR workers."""
    return Service(home, extra_ini=f"[ocr]\nocr_workers = {count}\n")


def ready(service: Service, count: int, pages: list[tuple[bytes, Counter]]) -> None:
    """Wait for ``count`` OCR workers, then give each one a page (the model loads then)."""
    with service.client() as client:
        poll_for(lambda: len(workers(client, "ocr")) == count, 60,
                 f"{count} ocr workers registered", every=0.1)
    _, results = service_batch(service, (pages * count)[:count])
    pids = {result["worker"]["pid"] for result in results}
    if len(pids) != count:
        raise RuntimeError(f"{count} warm-up pages went to {len(pids)} workers")


def gateway_session(service: Service, pages: list[tuple[bytes, Counter]]) -> tuple:
    """A gateway session with the pages imported: (api, session, token)."""
    api = Api(service)
    service.wait_running("gateway")
    poll_for(lambda: api.get("/api/v1/status").status == 200, 30, "the gateway")
    sid, token = api.open_session()
    with service.client() as client:
        for data, _ in pages:
            client.call("buffer", "add", {"session": sid}, blobs=[data], timeout=LONG)
    return api, sid, token


def gateway_job(service: Service, api: Api, sid: str, token: str) -> tuple[float, dict]:
    """``POST .../ocr`` on the session's pages, then wait for the job's ``ocr.done`` on
    the session's event socket (no polling that would take CPU from the workers):
    (seconds from the POST to the event, the job view)."""
    base = service.url(f"/api/v1/sessions/{sid}", api.port)
    auth = {"Authorization": f"Bearer {token}"}

    async def run() -> tuple[float, str]:
        async with aiohttp.ClientSession() as http, \
                http.ws_connect(f"{base}/events?token={token}".replace("http", "ws", 1)) as ws:
            if (await ws.receive_json(timeout=30))["topic"] != "hello":
                raise RuntimeError("no hello on the event socket")
            start = time.perf_counter()
            async with http.post(f"{base}/ocr", headers=auth, json={
                    "lang": "eng", "rotate": False, "output": "text"}) as answer:
                if answer.status != 202:
                    raise RuntimeError(f"POST .../ocr: {answer.status} "
                                       f"{(await answer.read())[:300]!r}")
                job = (await answer.json())["job"]
            while True:
                message = await ws.receive_json(timeout=LONG)
                if message["topic"] in ("ocr.done", "ocr.failed", "ocr.cancelled") \
                        and message["data"].get("job") == job:
                    return time.perf_counter() - start, job

    seconds, job = asyncio.run(run())
    view = api.get(f"/api/v1/sessions/{sid}/ocr/{job}", token=token).json()
    if view["state"] != "done":
        raise RuntimeError(f"the OCR job ended {view['state']}: {view.get('error')}")
    return seconds, view


def ocr_part(one: Service, many: Service, count: int, rounds: int,
             summary: list[str]) -> None:
    """Direct vs 1 worker vs ``cores`` workers, alternating; then the gateway job path."""
    cores = os.cpu_count() or 1
    note(f"drawing {count} A4 300 dpi text pages")
    pages = text_pages(count)
    note("waiting for the OCR workers; one warm-up page each")
    ready(one, 1, pages)
    ready(many, cores, pages)
    baseline = Direct()
    baseline.page(pages[0][0])
    others = OtherCpu([one, many])
    names = ["direct", "1 worker", f"{cores} workers"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    per_page: dict[str, list[float]] = {name: [] for name in names}
    shares: dict[str, list[float]] = {name: [] for name in names}
    disturbed: dict[str, list[float]] = {name: [] for name in names}  # others' CPUs
    for number in range(rounds):
        order = names[number % 3:] + names[:number % 3]
        note(f"round {number + 1} of {rounds}: {count} pages each, {', '.join(order)}")
        for name in order:
            if name == "direct":
                wall, texts, each = others.measure(lambda: baseline.batch(pages))
            else:
                wall, results = others.measure(
                    lambda n=name: service_batch(one if n == "1 worker" else many, pages))
                texts = [result["text"] for result in results]
                each = [result["seconds"] for result in results]
                used = {result["worker"]["pid"] for result in results}
                if name != "1 worker" and len(used) != min(cores, count):
                    raise RuntimeError(f"{count} pages went to {len(used)} of {cores} "
                                       "workers")
            seconds[name].append(wall)
            disturbed[name].append(others.last)
            per_page[name] += each
            shares[name].append(check_read(name, texts, pages))
    baseline.close()
    note(f"gateway OCR job: {count} pages, {cores} workers")
    session = gateway_session(many, pages)
    gw_others = OtherCpu([one, many])
    gw_pid = many.pid("gateway")
    gw_cpu = OtherCpu.process(gw_pid)
    gw_seconds, view = gw_others.measure(lambda: gateway_job(many, *session))
    gw_cpu = OtherCpu.process(gw_pid) - gw_cpu
    gw_pages = view["result"]["pages"]
    gw_share = check_read("gateway", [page["text"] for page in gw_pages], pages)

    def rate(name: str) -> float:
        return count * len(seconds[name]) / sum(seconds[name])

    size = statistics.mean(len(data) for data, _ in pages) / MB
    out(f"OCR: {count} distinct A4 300 dpi text pages (2480x3508 colour JPEG q85, "
        f"{size:.2f} MB, {statistics.mean(sum(t.values()) for _, t in pages):.0f} words "
        f"each), eng, no auto-rotate; {rounds} rounds alternating the three ways; {cores} "
        f"CPUs; other processes used {others.cpus():.2f} CPUs meanwhile")
    out(f"  {'way':32s} {'pages':>5s} {'seconds':>8s} {'pages/s':>8s} {'s/page':>7s} "
        f"{'OCR s/page':>10s} {'words read':>10s}  pages/s per round (others' CPUs)")
    rows = [("tesserocr directly (this process)", "direct"),
            ("service, ocr_workers = 1, broker", "1 worker"),
            (f"service, ocr_workers = {cores}, broker", f"{cores} workers")]
    for label, name in rows:
        per_round = "  ".join(f"{count / wall:.3f} ({other:.2f})"
                              for wall, other in zip(seconds[name], disturbed[name], strict=True))
        out(f"  {label:32s} {count * rounds:5d} {sum(seconds[name]):8.2f} {rate(name):8.3f} "
            f"{1 / rate(name):7.2f} {statistics.mean(per_page[name]):10.2f} "
            f"{statistics.mean(shares[name]):10.1%}  {per_round}")
    gw_rate = count / gw_seconds
    gw_each = statistics.mean(page["seconds"] for page in gw_pages)
    out(f"  {f'gateway job, {cores} workers':32s} {count:5d} {gw_seconds:8.2f} {gw_rate:8.3f} "
        f"{1 / gw_rate:7.2f} {gw_each:10.2f} {gw_share:10.1%}  {gw_rate:.3f} ({gw_others.last:.2f})"
        "  (POST .../ocr to ocr.done)")
    out("  (pages/s: pages / wall time of the whole batch; OCR s/page: the time one page "
        "takes to read, the worker's own figure for the service; others' CPUs: what other "
        "processes on the machine used meanwhile)")
    if others.cpus() > BUSY:
        out(f"  the machine was busy: other processes used {others.cpus():.2f} CPUs on "
            "average while the pages were read; the figures (the scaling above all) are "
            "not clean")
    one_rate, many_rate = rate("1 worker"), rate(f"{cores} workers")
    scaling = many_rate / (cores * one_rate)
    # Other processes only ever slow a batch down: the fastest round of each is the
    # figure least touched by them.
    best = min(seconds["1 worker"]) / (cores * min(seconds[names[2]]))
    actor = one_rate / rate("direct")
    gateway = gw_rate / many_rate
    out(f"  scaling: {many_rate:.3f} / ({cores} x {one_rate:.3f}) pages/s = {scaling:.2f} "
        f"(goal >= {SCALING_GOAL}: {'met' if scaling >= SCALING_GOAL else 'NOT met'}); "
        f"fastest round of each: {best:.2f}")
    out(f"  1 worker through the broker / tesserocr directly: {actor:.2f}x pages/s")
    out(f"  gateway job / broker requests, {cores} workers: {gateway:.2f}x pages/s (the "
        f"gateway process used {gw_cpu:.2f} CPU seconds for the job)")
    summary.append(f"OCR pages/s, A4 300 dpi text: {cores} workers {many_rate:.3f} vs 1 worker "
                   f"{one_rate:.3f} = scaling {scaling:.2f} of {cores}x (goal >= "
                   f"{SCALING_GOAL}: {'met' if scaling >= SCALING_GOAL else 'NOT met'}; "
                   f"fastest rounds {best:.2f}; other processes used {others.cpus():.2f} CPUs "
                   "meanwhile)")
    summary.append(f"OCR 1 worker through the broker vs tesserocr directly: {one_rate:.3f} vs "
                   f"{rate('direct'):.3f} pages/s = {actor:.2f}x (information)")
    summary.append(f"OCR gateway job vs broker requests, {cores} workers: {gw_rate:.3f} vs "
                   f"{many_rate:.3f} pages/s = {gateway:.2f}x (information)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer reads and pages (CI smoke run)")
    parser.add_argument("--pages", type=int, default=None,
                        help="OCR pages per batch (default 4 x cores, 2 x with --quick)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="OCR rounds of the three ways (default 2, 1 with --quick)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folders")
    opts = parser.parse_args()
    cores = os.cpu_count() or 1
    count = opts.pages if opts.pages is not None else (2 if opts.quick else 4) * cores
    rounds = opts.rounds if opts.rounds is not None else (1 if opts.quick else 2)
    if count < 1 or rounds < 1:
        parser.error("--pages and --rounds must be at least 1")

    work = Path(tempfile.mkdtemp(prefix="scanbridge-bench-ocr-"))
    service: Service | None = None
    one: Service | None = None
    summary: list[str] = []
    try:
        note(f"starting the service ({cores} OCR workers) in {work}")
        service = ocr_service(work / "home", cores)
        service.start()
        barcode_part(service, 2 if opts.quick else 8, summary)
        note("starting a second service with 1 OCR worker")
        one = ocr_service(work / "home-1", 1)
        one.start()
        ocr_part(one, service, count, rounds, summary)
    finally:
        if one is not None:
            stop_service(one, "the 1-worker service")
        shut_down(None, service, work, opts.keep)
    report_summary(summary)


if __name__ == "__main__":
    main()
