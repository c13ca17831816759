"""OCR: the ``ocr`` actor over the broker and the gateway's OCR jobs, against the real service.

Every page is rendered here with Pillow in a DejaVu font at 300 dpi (12 pt = 50 px), so each
test knows the text a reader must give back and where each word was drawn (Pillow's
``textbbox``). Text is compared by character error rate (Levenshtein distance over the
expected length, whitespace normalised): at most 2 % on clean pages.

Covered: accuracy in English and German through a job and through ``ocr.page``; words with
confidences and boxes where they were drawn (in the upright image, also for turned pages);
hOCR as XML with one numbered ``ocr_page`` per page; the searchable PDF (the uploaded JPEGs
byte for byte, a text layer pymupdf reads, ``/Rotate`` on turned pages); orientation found
for pages turned 90, 180 and 270 degrees and the control with ``rotate: false``; languages
and refused ones; blank, tiny, non-image and too-large pages; refused job bodies, the token
and another session's job; progress, done and cancelled events on the session WebSocket,
the job list and cancel; and a worker killed mid-page, whose page the other worker reads.

Two services: the module's shared one (two OCR workers, ``ocr_00`` and ``ocr_01``) and, for
the pixel limit only, one with ``[limits] max_image_megapixels = 1``.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import aiohttp
import pymupdf
import pytest
from PIL import Image, ImageDraw, ImageFont

from broker.protocol import Error
from tests.support.service import Service
from tests.support.stack import poll_for, wait_service
from tests.support.web import Answer, Api, WebSession

pytestmark = pytest.mark.timeout(120)

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


async def ws_events(svc: Service, session: Session):
    """An aiohttp session and the session's event socket, once its hello arrived."""
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(svc.url(f"{session.path}/events"),
                               params={"token": session.token})
    hello = json.loads((await ws.receive(timeout=WAIT)).data)
    assert hello["topic"] == "hello", hello
    return http, ws


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


@pytest.fixture(scope="module")
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


# --- accuracy


def test_ocr_page_over_the_broker_reads_english_and_german(service, client, pages):
    pids = worker_pids(service)
    for name, lang, kind in (("english", "eng", "PNG"), ("serif", "eng", "JPEG"),
                             ("german", "deu", "PNG")):
        page = pages[name]
        result = client.call("ocr", "page", {"lang": lang, "index": 3},
                             blobs=[encoded(page.image, kind)], timeout=WAIT)
        assert result["lang"] == lang and result["index"] == 3, result
        assert result["rotation"] == 0, result
        assert (result["width"], result["height"]) == page.size, result
        assert result["worker"]["pid"] in pids, (result["worker"], pids)
        assert result["seconds"] > 0, result
        assert "hocr" not in result, result
        assert_read(page.text, result["text"])


def test_a_job_reads_english_and_german_pages_in_page_order(session, pages):
    english = session.upload(encoded(pages["english"].image, "PNG"))
    serif = session.upload(encoded(pages["serif"].image, "JPEG"), "image/jpeg")
    german = session.upload(encoded(pages["german"].image, "PNG"))

    result = session.run(images=[serif, english], lang="eng")  # page order, not list order
    assert result["lang"] == "eng", result
    assert [(p["image"], p["index"]) for p in result["pages"]] == [(english, 0), (serif, 1)]
    for page, expected in zip(result["pages"], (pages["english"], pages["serif"]), strict=True):
        assert_read(expected.text, page["text"])
        assert (page["width"], page["height"]) == expected.size, page
        assert page["rotation"] == 0 and 80 <= page["confidence"] <= 100, page
        assert "words" not in page, page  # only with output "words"
    assert result["text"].split("\f") == [p["text"] for p in result["pages"]]
    assert set(result["files"]) == {"text"}, result["files"]
    text = session.file(result, "text")
    assert text.headers.get_content_type() == "text/plain"
    assert text.body.decode() == result["text"]

    result = session.run(images=[german], lang="deu")
    assert result["lang"] == "deu", result
    (page,) = result["pages"]
    assert_read(pages["german"].text, page["text"])
    for word in ("Größere", "Übungen", "Bücher", "Äpfel", "Öl", "fünf", "Grüße", "München"):
        assert word in page["text"], (word, page["text"])


# --- words and hOCR


def test_words_have_text_confidence_and_a_box_where_they_were_drawn(session, pages):
    page = pages["english"]
    session.upload(encoded(page.image, "JPEG"), "image/jpeg")
    result = session.run(output="words")
    (read,) = result["pages"]
    words = read["words"]
    assert [w["text"] for w in words] == " ".join(ENGLISH).split(), words
    width, height = page.size
    for word in words:
        assert set(word) >= {"text", "conf", "box", "line", "block"}, word
        assert 0 <= word["conf"] <= 100, word
        x0, y0, x1, y1 = word["box"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, word
    assert [w["line"] for w in words] == [n for n, line in enumerate(ENGLISH)
                                          for _ in line.split(" ")], words
    confidences = [w["conf"] for w in words]
    assert read["confidence"] == pytest.approx(sum(confidences) / len(confidences), abs=0.1)
    by_text = {w["text"]: w for w in words}
    for text in KNOWN_WORDS:
        assert_box_near(by_text[text]["box"], page.boxes[text], text)


def test_hocr_of_a_two_page_job_is_xml_with_one_numbered_ocr_page_each(session, pages):
    first, second = pages["english"], pages["serif"]
    session.upload(encoded(first.image, "PNG"))
    session.upload(encoded(second.image, "PNG"))
    result = session.run(output=["text", "hocr"])
    assert set(result["files"]) == {"text", "hocr"}, result["files"]
    answer = session.file(result, "hocr")
    assert answer.headers.get_content_type() == "text/html"
    root = ET.fromstring(answer.body)
    assert root.tag == "{http://www.w3.org/1999/xhtml}html", root.tag
    ocr_pages = [e for e in root.iter() if e.get("class") == "ocr_page"]
    assert [e.get("id") for e in ocr_pages] == ["page_1", "page_2"]
    for number, (element, page) in enumerate(zip(ocr_pages, (first, second), strict=True)):
        title = element.get("title")
        assert f"bbox 0 0 {page.size[0]} {page.size[1]}" in title, title
        assert f"ppageno {number}" in title, title
        words = ["".join(w.itertext()) for w in element.iter()
                 if w.get("class") == "ocrx_word"]
        assert_read(page.text, " ".join(words))
        assert " ".join(words) == normal(result["pages"][number]["text"])


# --- searchable PDF


def test_a_searchable_pdf_keeps_the_uploaded_jpegs_under_a_text_layer(session, pages):
    jpegs = [encoded(pages["english"].image, "JPEG"), encoded(pages["german"].image, "JPEG")]
    first = session.upload(jpegs[0], "image/jpeg")
    session.upload(jpegs[1], "image/jpeg")
    result = session.run(output="pdf", lang=["deu", "eng"])
    assert set(result["files"]) == {"text", "pdf"}, result["files"]
    answer = session.file(result, "pdf")
    assert answer.headers.get_content_type() == "application/pdf"
    download = session.api.get(result["files"]["pdf"] + "?download=1&filename=letter",
                               token=session.token)
    assert download.status == 200 and download.body == answer.body
    assert "letter.pdf" in download.headers["Content-Disposition"], download.headers
    with pymupdf.open(stream=answer.body, filetype="pdf") as doc:
        assert doc.page_count == 2
        expected_pages = (pages["english"], pages["german"])
        for page, expected, jpeg in zip(doc, expected_pages, jpegs, strict=True):
            assert page.rotation == 0
            assert_read(expected.text, page.get_text())
            (image,) = page.get_images(full=True)
            assert doc.extract_image(image[0])["image"] == jpeg
        # The text layer's words lie over the words of the image.
        width_pt = doc[0].rect.width
        scale = width_pt / pages["english"].size[0]
        found = doc[0].search_for("Invoice")
        assert len(found) == 1, found
        drawn = [v * scale for v in pages["english"].boxes["Invoice"]]
        assert abs(found[0].x0 - drawn[0]) < 5 and abs(found[0].y0 - drawn[1]) < 10, \
            (found, drawn)
    assert result["pages"][0]["image"] == first


# --- orientation


def test_turned_pages_are_read_upright_and_turned_in_the_pdf(session, pages):
    page = pages["turned"]
    angles = (0, 90, 180, 270)
    for angle in angles:  # Image.rotate turns counter-clockwise
        session.upload(encoded(page.image.rotate(angle, expand=True), "JPEG"), "image/jpeg")
    result = session.run(output=["words", "pdf"])
    # rotate(90) counter-clockwise needs 90 degrees clockwise to stand upright again.
    assert [p["rotation"] for p in result["pages"]] == [0, 90, 180, 270], result["pages"]
    for angle, read in zip(angles, result["pages"], strict=True):
        sent = page.size if angle in (0, 180) else page.size[::-1]
        assert (read["width"], read["height"]) == sent, read  # the image as sent
        if angle:
            assert read["orientation_confidence"] >= 1.5, read
        assert_read(page.text, read["text"])
        by_text = {w["text"]: w for w in read["words"]}
        for text in TURNED_WORDS:  # boxes are in the upright image: where they were drawn
            assert_box_near(by_text[text]["box"], page.boxes[text], f"{text} at {angle}")
    with pymupdf.open(stream=session.file(result, "pdf").body, filetype="pdf") as doc:
        assert [p.rotation for p in doc] == [0, 90, 180, 270]
        for turned in doc:
            assert_read(page.text, turned.get_text())


def test_ocr_page_finds_the_orientation_of_each_turn(client, pages):
    page = pages["turned"]
    for angle in (90, 180, 270):
        result = client.call("ocr", "page", {"lang": "eng"},
                             blobs=[encoded(page.image.rotate(angle, expand=True), "PNG")],
                             timeout=WAIT)
        assert result["rotation"] == angle, result
        assert_read(page.text, result["text"])


def test_with_rotate_false_a_turned_page_is_not_read(session, client, pages):
    page = pages["turned"]
    # Only 90 and 180: a page turned 270 (clockwise) is read anyway by Tesseract's own
    # layout analysis, which takes it for vertical text lines.
    for angle in (90, 180):
        result = client.call("ocr", "page", {"lang": "eng", "rotate": False},
                             blobs=[encoded(page.image.rotate(angle, expand=True), "PNG")],
                             timeout=WAIT)
        assert result["rotation"] == 0 and result["orientation_confidence"] == 0, result
        assert cer(page.text, result["text"]) > 0.5, result["text"]
        session.upload(encoded(page.image.rotate(angle, expand=True), "PNG"))
    result = session.run(rotate=False, output="pdf")
    for read in result["pages"]:
        assert read["rotation"] == 0, read
        assert cer(page.text, read["text"]) > 0.5, read["text"]
    with pymupdf.open(stream=session.file(result, "pdf").body, filetype="pdf") as doc:
        assert [p.rotation for p in doc] == [0, 0]


# --- languages


def test_languages_are_listed_and_an_unknown_one_is_refused_at_post(session, api):
    answer = api.get(f"{V1}/ocr/languages", token=session.token)
    assert answer.status == 200, answer.body
    listed = answer.json()
    assert {"eng", "deu", "fra"} <= set(listed["installed"]), listed
    assert listed["default"] == "eng", listed
    assert listed["tesseract"].split(".")[0].isdigit(), listed

    session.upload(encoded(render(GERMAN[:2]).image, "PNG"))
    error = assert_error(session.request("POST", "/ocr", json={"lang": "xx"}), 422,
                         "invalid_option")
    assert "xx" in error["message"], error
    assert_error(session.request("POST", "/ocr", json={"lang": ["deu", "xx"]}), 422,
                 "invalid_option")
    assert_error(session.request("POST", "/ocr", json={"lang": 7}), 400, "invalid_argument")
    assert session.request("GET", "/ocr").json() == []  # no job was made

    result = session.run(lang=["deu", "eng"])
    assert result["lang"] == "deu+eng", result
    assert_read("\n".join(GERMAN[:2]), result["text"])
    assert session.run(lang="fra+eng")["lang"] == "fra+eng"


# --- bad input


def assert_empty(read: dict) -> None:
    assert read["text"].strip() == "" and read["words"] == [], read
    assert read["rotation"] == 0, read


def test_a_blank_page_gives_empty_text_not_an_error(session, client):
    blank = encoded(Image.new("L", (1240, 600), 255), "PNG")
    assert_empty(client.call("ocr", "page", {"hocr": True}, blobs=[blank], timeout=WAIT))
    session.upload(blank)
    result = session.run(output=["words", "hocr"])
    (read,) = result["pages"]
    assert_empty(read)
    assert read["confidence"] is None, read
    root = ET.fromstring(session.file(result, "hocr").body)
    assert [e.get("id") for e in root.iter() if e.get("class") == "ocr_page"] == ["page_1"]
    assert not [e for e in root.iter() if e.get("class") == "ocrx_word"]


def test_a_tiny_image_gives_empty_text_not_an_error(session, pages):
    tiny = Image.new("RGB", (10, 10), "white")
    tiny.putpixel((5, 5), (0, 0, 0))
    session.upload(encoded(pages["english"].image, "PNG"))
    small = session.upload(encoded(tiny, "JPEG"), "image/jpeg")
    result = session.run(output=["words", "hocr"])
    read = result["pages"][1]
    assert read["image"] == small and (read["width"], read["height"]) == (10, 10), read
    assert_empty(read)
    assert read["confidence"] is None, read
    assert_read(pages["english"].text, result["pages"][0]["text"])
    root = ET.fromstring(session.file(result, "hocr").body)
    ocr_pages = [e for e in root.iter() if e.get("class") == "ocr_page"]
    assert [e.get("id") for e in ocr_pages] == ["page_1", "page_2"]
    assert ocr_pages[1].get("title").startswith("bbox 0 0 10 10"), ocr_pages[1].get("title")
    assert not [e for e in ocr_pages[1].iter() if e.get("class") == "ocrx_word"]


def test_ocr_page_refuses_a_non_image_and_bad_arguments(client, pages):
    with pytest.raises(Error) as caught:
        client.call("ocr", "page", {}, blobs=[b"%PDF-1.4 not really an image"], timeout=WAIT)
    assert caught.value.code == "invalid_image", caught.value
    data = encoded(pages["english"].image)
    for args, blobs, code in (({"lang": "xx"}, [data], "invalid_option"),
                              ({}, [data, data], "invalid_argument"),
                              ({}, [], "invalid_argument"),
                              ({"rotate": "yes"}, [data], "invalid_argument"),
                              ({"index": -1}, [data], "invalid_argument")):
        with pytest.raises(Error) as caught:
            client.call("ocr", "page", args, blobs=blobs, timeout=WAIT)
        assert caught.value.code == code, (args, len(blobs), caught.value)


def test_an_image_over_the_pixel_limit_is_too_large(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"),
                  extra_ini="[limits]\nmax_image_megapixels = 1\n")
    svc.start()
    try:
        with svc.client() as client:
            wait_service(client, "ocr", 1, timeout=30)
            big = encoded(Image.new("L", (1200, 1000), 255), "PNG")  # 1.2 MP
            with pytest.raises(Error) as caught:
                client.call("ocr", "page", {}, blobs=[big], timeout=WAIT)
            assert caught.value.code == "too_large", caught.value
            # Within the limit the same service reads.
            fits = render(ENGLISH[:2], size=(1000, 1000))
            result = client.call("ocr", "page", {}, blobs=[encoded(fits.image)], timeout=WAIT)
            assert_read(fits.text, result["text"])
        # Through the gateway: the import is refused, or the job fails, with too_large.
        session = Session(Api(svc))
        answer = session.request("POST", "/images", data=big,
                                 headers={"Content-Type": "image/png"})
        if answer.status == 413:
            assert_error(answer, 413, "too_large")
        else:
            assert answer.status == 201, answer.body
            view = session.wait(session.start()["job"])
            assert view["state"] == "failed" and view["error"]["code"] == "too_large", view
    finally:
        svc.stop()


def test_bad_job_bodies_are_refused_with_json_errors(session):
    assert_error(session.request("POST", "/ocr", json={}), 409, "conflict")  # no pages yet
    session.upload(encoded(render(ENGLISH[:1]).image))
    for body, status, code in (({"output": "doc"}, 400, "invalid_argument"),
                               ({"output": ["text", "doc"]}, 400, "invalid_argument"),
                               ({"output": []}, 400, "invalid_argument"),
                               ({"rotate": "yes"}, 400, "invalid_argument"),
                               ({"timeout": -1}, 400, "invalid_argument"),
                               ({"timeout": "60"}, 400, "invalid_argument"),
                               ({"images": "all"}, 400, "invalid_argument"),
                               ({"images": [1]}, 400, "invalid_argument"),
                               ({"images": ["nosuchimage"]}, 404, "not_found"),
                               ({"colour": True}, 400, "invalid_argument")):
        assert_error(session.request("POST", "/ocr", json=body), status, code)
    answer = session.request("POST", "/ocr", data=b"[1, 2]",
                             headers={"Content-Type": "application/json"})
    assert_error(answer, 400)
    assert_error(session.request("POST", "/ocr", data=b"{not json",
                                 headers={"Content-Type": "application/json"}), 400)
    assert session.request("GET", "/ocr").json() == []
    assert_error(session.request("GET", "/ocr/nosuchjob"), 404, "not_found")
    assert_error(session.request("DELETE", "/ocr/nosuchjob"), 404, "not_found")


def test_the_token_is_needed_and_another_sessions_job_is_not_found(session, api, pages):
    session.upload(encoded(pages["english"].image))
    job = session.start()["job"]
    for method, sub in (("POST", "/ocr"), ("GET", "/ocr"), ("GET", f"/ocr/{job}"),
                        ("DELETE", f"/ocr/{job}"), ("GET", f"/ocr/{job}/text")):
        assert_error(session.request(method, sub, token=None), 401, "unauthorized")
    other = Session(api)
    try:
        assert_error(session.request("GET", f"/ocr/{job}", token=other.token), 403)
        for method, sub in (("GET", f"/ocr/{job}"), ("DELETE", f"/ocr/{job}"),
                            ("GET", f"/ocr/{job}/text")):
            assert_error(other.request(method, sub), 404, "not_found")
        assert other.request("GET", "/ocr").json() == []
    finally:
        other.request("DELETE")
    view = session.wait(job)
    assert view["state"] == "done", view  # untouched by the other session's DELETE
    assert_read(pages["english"].text, view["result"]["text"])
    assert_error(session.request("GET", f"/ocr/{job}/hocr"), 404, "not_found")  # not asked
    assert_error(session.request("GET", f"/ocr/{job}/words"), 404, "not_found")


# --- jobs: events, list, cancel


def test_progress_events_count_the_pages_then_done_and_the_list_shows_the_job(service,
                                                                             session):
    ids = [session.upload(encoded(render([line, "page number " + str(n)]).image))
           for n, line in enumerate(ENGLISH[:3])]

    async def test():
        http, ws = await ws_events(service, session)
        try:
            job = (await asyncio.to_thread(session.start))["job"]
            got = of_job(await until(ws, lambda m: m["topic"] in ("ocr.done", "ocr.failed")
                                     and m["data"]["job"] == job), job)
        finally:
            await ws.close()
            await http.close()
        return job, got

    job, got = asyncio.run(test())
    topics = [m["topic"] for m in got]
    assert topics == ["ocr.progress"] * 3 + ["ocr.done"], got
    progress = [m["data"] for m in got[:3]]
    assert [p["done"] for p in progress] == [1, 2, 3], progress
    assert all(p["total"] == 3 and p["kind"] == "ocr" for p in progress), progress
    assert sorted((p["index"], p["image"]) for p in progress) == list(enumerate(ids))
    assert got[3]["data"]["job"] == job and "error" not in got[3]["data"], got[3]
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4, seqs

    listed = session.request("GET", "/ocr").json()
    assert [v["job"] for v in listed] == [job], listed
    assert listed[0]["state"] == "done" and listed[0]["progress"] == {"done": 3, "total": 3}
    assert len(listed[0]["result"]["pages"]) == 3


def test_deleting_a_running_job_cancels_it(service, session):
    # 8 pages of 12 lines each: ~0.3 s a page, 4 in flight over 2 workers.
    lines = (ENGLISH + ENGLISH_SERIF + TURNED)[:12]
    ids = [session.upload(encoded(render([f"Page {number + 1}", *lines]).image, "JPEG"),
                          "image/jpeg") for number in range(8)]

    async def test():
        http, ws = await ws_events(service, session)
        try:
            job = (await asyncio.to_thread(session.start))["job"]
            answer = await asyncio.to_thread(session.request, "DELETE", f"/ocr/{job}")
            got = of_job(await until(ws, lambda m: m["topic"] in (
                "ocr.done", "ocr.failed", "ocr.cancelled") and m["data"]["job"] == job), job)
        finally:
            await ws.close()
            await http.close()
        return job, answer, got

    job, answer, got = asyncio.run(test())
    assert answer.status == 200, answer.body
    view = answer.json()
    assert view["state"] == "cancelled", view
    assert view["progress"]["total"] == 8 and view["progress"]["done"] < 8, view
    assert "result" not in view and view["finished"], view
    assert got[-1]["topic"] == "ocr.cancelled", got
    assert all(m["topic"] == "ocr.progress" for m in got[:-1]), got
    assert len(got) - 1 == view["progress"]["done"], (got, view)
    assert session.job(job)["state"] == "cancelled"
    for name in ("text", "pdf"):
        assert_error(session.request("GET", f"/ocr/{job}/{name}"), 409, "conflict")
    listed = session.request("GET", "/ocr").json()
    assert [(v["job"], v["state"]) for v in listed] == [(job, "cancelled")]
    # Cancelling an ended job changes nothing.
    again = session.request("DELETE", f"/ocr/{job}")
    assert again.status == 200 and again.json()["state"] == "cancelled", again.body
    # The workers are free again: the next job runs.
    assert "Page 1" in session.run(images=ids[:1])["text"]


# --- a worker dies


def test_a_page_whose_worker_is_killed_is_read_by_the_other_worker(service, client, session):
    page = a4_page()
    session.upload(encoded(page.image, "PNG"))
    seen = {name: len(service.log_records(name)) for name in WORKERS}
    job = session.start()["job"]

    def started():
        for name in WORKERS:
            new = service.log_records(name)[seen[name]:]
            for record in new:
                if record.get("msg") == "page started":
                    return name, record["pid"]
        return None
    name, killed = poll_for(started, 20, "a worker to start the page", every=0.02)
    assert killed == service.processes()[name]["pid"]
    os.kill(killed, signal.SIGKILL)

    view = session.wait(job)
    assert view["state"] == "done", view
    (read,) = view["result"]["pages"]
    assert read["worker"]["pid"] != killed, read["worker"]
    assert_read(page.text, read["text"])
    finished = [r for r in service.log_records(name)[seen[name]:]
                if r.get("msg") == "page done" and r["pid"] == killed]
    assert finished == [], finished  # the killed worker never finished it

    # supervisord starts the killed worker again, and it joins the broker.
    restarted = service.wait_running(name, other_than=killed, timeout=30)
    assert restarted != killed
    wait_service(client, "ocr", len(WORKERS), timeout=30)
    pids = {w.get("pid") for w in client.call("broker", "services", timeout=5)["services"]
            ["ocr"]["workers"]}
    assert killed not in pids, pids
