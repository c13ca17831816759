"""The pages and the three ways of reading them that bench/ocr.py compares: text pages with
known words, Tesseract called directly, on another CPU, and through the service (the
broker's ``ocr`` workers and the gateway's OCR jobs).
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import statistics
import time
from collections import Counter
from pathlib import Path

import aiohttp
from PIL import Image, ImageChops, ImageDraw, ImageFont

from broker.client import AsyncClient
from tests.support.service import Service
from tests.support.stack import poll_for, workers
from tests.support.web import Api

A4_300 = (2480, 3508)
LONG = 600.0  # request timeout (s): a slow machine must not turn a figure into an error
TESSDATA = "/usr/share/tesseract-ocr/5/tessdata"
FONTS = "/usr/share/fonts/truetype/dejavu"
MIN_READ = 0.9  # share of a page's words the OCR must find, or the figures mean nothing
WORDS = ("the invoice total amount payment due date customer account number order delivery "
         "address service period reference please transfer within thirty days of receipt "
         "questions contact our office monday friday between hours scanner document page "
         "paper tray station network printer quality resolution colour archive storage "
         "retention policy statement balance credit note shipping item quantity price tax "
         "from to for and with by on at is are will be has been this that your we").split()


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
