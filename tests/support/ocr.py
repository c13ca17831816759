"""What the OCR tests share (test_ocr and test_ocr_jobs): pages rendered with Pillow, text
compared by character error rate, a web session with OCR jobs and their events, and one
service for both modules with two OCR workers, ``ocr_00`` and ``ocr_01``.

Every page is rendered in a DejaVu font at 300 dpi (12 pt = 50 px), so each test knows the
text a reader must give back and where each word was drawn (Pillow's ``textbbox``). Text
is compared by character error rate (Levenshtein distance over the expected length,
whitespace normalised): at most 2 % on clean pages.
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass, field

import aiohttp
import pytest
from PIL import Image, ImageDraw, ImageFont

from .service import Service
from .shared import shared_by_modules
from .stack import poll_for, wait_service
from .web import Answer, WebSession

V1 = "/api/v1"
DPI = 300
FONTS = "/usr/share/fonts/truetype/dejavu/"
SANS = FONTS + "DejaVuSans.ttf"
SERIF = FONTS + "DejaVuSerif.ttf"
FONT_PX = 50  # 12 pt at 300 dpi
MARGIN = 60
MAX_CER = 0.02
BOX_TOL = 6  # pixels between Tesseract's word box and Pillow's textbbox of the word
WAIT = 60.0  # seconds a job or an expected event may take (2 loaded cores)
WORKERS = ("ocr_00", "ocr_01")

ENGLISH = ["The quick brown fox jumps over", "the lazy dog near the river.",
           "Invoice 4711 dated 12 March 2024", "Please pay within thirty days."]
ENGLISH_SERIF = ["Scanbridge reads every page it", "scans and keeps the words with",
                 "their boxes and confidences."]
GERMAN = ["Größere Übungen für Schüler", "Die Bücher liegen auf dem Tisch",
          "Äpfel und Öl kosten fünf Euro", "Viele Grüße aus München"]
TURNED = ["Orientation detection needs text", "so this page has six lines of it.",
          "Tesseract finds which way is up", "and the service turns the page",
          "before it reads the words back.", "Thank you for scanning with us."]
KNOWN_WORDS = ("quick", "Invoice", "March", "Please")  # words of ENGLISH checked by box
TURNED_WORDS = ("Orientation", "Tesseract", "Thank")


# --- pages


@dataclass
class Page:
    image: Image.Image
    lines: list[str]
    boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def render(lines: list[str], font: str = SANS, size: tuple[int, int] | None = None,
           margin: int = MARGIN) -> Page:
    """Black text on a white grey page, one line per entry; ``boxes`` holds where each
    word was drawn (its first occurrence), as Pillow's textbbox (x0, y0, x1, y1)."""
    face = ImageFont.truetype(font, FONT_PX)
    step = int(FONT_PX * 1.5)
    if size is None:
        size = (int(max(face.getlength(line) for line in lines)) + 2 * margin,
                step * len(lines) + 2 * margin)
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    page = Page(image, list(lines))
    for number, line in enumerate(lines):
        y = margin + number * step
        draw.text((margin, y), line, font=face, fill=0)
        x = float(margin)
        for word in line.split(" "):
            page.boxes.setdefault(word, draw.textbbox((x, y), word, font=face))
            x += face.getlength(word + " ")
    return page


def encoded(image: Image.Image, kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    image.save(out, kind, dpi=(DPI, DPI), **({"quality": 90} if kind == "JPEG" else {}))
    return out.getvalue()


def a4_page() -> Page:
    """A full A4 page of text at 300 dpi (~40 lines; Tesseract needs ~2 s)."""
    words = ("scanning reading pages with several workers keeps every document moving "
             "while the broker hands each page to the next idle process").split()
    lines, line = [], []
    face = ImageFont.truetype(SERIF, FONT_PX)
    number = 0
    while len(lines) < 40:
        word = words[number % len(words)] + (str(number) if number % 7 == 3 else "")
        number += 1
        if face.getlength(" ".join([*line, word])) > 2480 - 2 * 150:
            lines.append(" ".join(line))
            line = []
        line.append(word)
    return render(lines, SERIF, size=(2480, 3508), margin=150)


# --- text comparison


def normal(text: str) -> str:
    return " ".join(text.split())


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def cer(expected: str, got: str) -> float:
    expected, got = normal(expected), normal(got)
    return levenshtein(expected, got) / max(1, len(expected))


def assert_read(expected: str, got: str, limit: float = MAX_CER) -> None:
    rate = cer(expected, got)
    assert rate <= limit, f"CER {rate:.3f} > {limit}:\nexpected {normal(expected)!r}\n" \
                          f"got      {normal(got)!r}"


def assert_box_near(box, drawn, what: str) -> None:
    assert all(abs(a - b) <= BOX_TOL for a, b in zip(box, drawn, strict=True)), (what, box, drawn)


# --- HTTP


def assert_error(answer: Answer, status: int, code: str | None = None) -> dict:
    """The answer is an error of ``status``: JSON ``{error: {code, message, ...}}``."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get_content_type() == "application/json", answer.headers
    error = answer.json()["error"]
    assert isinstance(error.get("code"), str) and isinstance(error.get("message"), str), error
    if code is not None:
        assert error["code"] == code, error
    return error


class Session(WebSession):
    """A web session and its OCR jobs."""

    def start(self, **body) -> dict:
        """POST an OCR job: 202 with the job view and its Location."""
        answer = self.request("POST", "/ocr", json=body)
        assert answer.status == 202, answer.body
        job = answer.json()
        assert answer.headers["Location"] == f"{self.path}/ocr/{job['job']}"
        assert job["kind"] == "ocr" and job["session"] == self.id, job
        assert job["state"] in ("queued", "running"), job
        return job

    def job(self, job: str) -> dict:
        answer = self.request("GET", f"/ocr/{job}")
        assert answer.status == 200, answer.body
        return answer.json()

    def wait(self, job: str, timeout: float = WAIT) -> dict:
        """The job's view once it has ended (done, failed or cancelled)."""
        return poll_for(lambda: (view := self.job(job))["state"] not in ("queued", "running")
                        and view, timeout, f"OCR job {job} to end")

    def run(self, **body) -> dict:
        """A job started and waited for; it must be done. Returns its result."""
        view = self.wait(self.start(**body)["job"])
        assert view["state"] == "done", view
        total = view["progress"]["total"]
        assert view["progress"] == {"done": total, "total": total}, view
        assert view["finished"] >= view["created"], view
        return view["result"]

    def file(self, result: dict, name: str) -> Answer:
        """GET of a job file by the URL the result gives."""
        answer = self.api.get(result["files"][name], token=self.token)
        assert answer.status == 200, answer.body[:300]
        return answer


async def until(ws, match, timeout: float = WAIT) -> list[dict]:
    """Messages up to and including the first ``match(message)`` is true for."""
    got = []
    end = time.monotonic() + timeout
    while True:
        msg = await ws.receive(timeout=max(0.1, end - time.monotonic()))
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        message = json.loads(msg.data)
        assert set(message) == {"seq", "topic", "data", "time"}, message
        got.append(message)
        if match(message):
            return got


def of_job(messages: list[dict], job: str) -> list[dict]:
    return [m for m in messages if m["topic"].startswith("ocr.") and m["data"]["job"] == job]


# --- fixtures


@shared_by_modules
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"), extra_ini="[ocr]\nocr_workers = 2\n")
    svc.start()
    try:
        with svc.client() as client:  # the gateway answers once `scanbridge start` returns
            wait_service(client, "ocr", len(WORKERS), timeout=30)
    except BaseException:
        svc.stop()
        raise
    yield svc
    svc.stop()


@pytest.fixture
def session(api):
    opened = Session(api)
    yield opened
    opened.request("DELETE")


@pytest.fixture(scope="module")
def pages() -> dict[str, Page]:
    return {"english": render(ENGLISH), "serif": render(ENGLISH_SERIF, SERIF),
            "german": render(GERMAN), "turned": render(TURNED)}


def worker_pids(service: Service) -> set[int]:
    processes = service.processes()
    return {processes[name]["pid"] for name in WORKERS}
