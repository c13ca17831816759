"""OCR and barcodes from a real browser (Debian's Chromium through Playwright): the demo's
OCR and Barcodes panels, and ``session.ocr()`` / ``session.barcodes()`` of scanbridge.js,
against the real service (its OCR workers and barcode actor).

The page used everywhere: two lines of text and a QR code (``PAGE``), small enough for a
fast OCR.

The demo's panels (element ids, in the style of the upload panel):

==========================  =========================================================
``#ocr-form``               the OCR panel (submit reads every page)
``#ocr-lang``               the languages of ``ocrLanguages()``, the default selected
``#ocr-out-pdf|hocr|words`` what to make besides the text (checkboxes)
``#ocr-rotate``             turn pages upright
``#ocr-all``, ``#ocr-selected``, ``#ocr-cancel``
``#ocr-progress``           <progress> 0-100 (pages read), ``#ocr-progress-text``
``#ocr-result``             shown at the end; ``data-state`` done or error (``data-code``)
``#ocr-pdf``, ``#ocr-hocr``, ``#ocr-text``   links to the job's files (hidden if not made)
``#ocr-pages``              one ``section.ocr-page[data-image]`` per page, its text in a <pre>
``#barcode-form``           the Barcodes panel; ``#barcode-format`` a format filter
``#barcode-read``, ``#barcode-cancel``, ``#barcode-progress``, ``#barcode-progress-text``
``#barcode-result``         ``data-state``; ``#barcode-list``: ``li[data-image][data-format]``
``.thumb .codes-overlay``   an SVG over a page's thumbnail (viewBox: the page's pixels),
                            one ``polygon.code-box`` per code at its corners
==========================  =========================================================
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pymupdf
import pytest
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from tests.support.browser import CAUGHT, Watched
from tests.support.service import started

pytestmark = pytest.mark.timeout(120)

WAIT_MS = 30_000  # the longest a page may take for one expected change (2 loaded cores)
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
QR_TEXT = "SB-QR-2026-0042"
QR_AT = (600, 40)  # the QR code's top left corner on the page, in pixels
LINES = ("Scanbridge invoice 4711", "Total due 128 EUR")


def make_page() -> tuple[bytes, tuple[int, int, int, int]]:
    """A 900x320 PNG: the two LINES at the left, the QR code at QR_AT; and the QR's box
    (left, top, right, bottom) in page pixels, quiet zone excluded."""
    page = Image.new("L", (900, 320), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 34)
    for number, line in enumerate(LINES):
        draw.text((30, 70 + 80 * number), line, fill=0, font=font)
    code = zxingcpp.create_barcode(QR_TEXT, zxingcpp.BarcodeFormat.QRCode)
    symbol = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=10)))
    page.paste(symbol.convert("L"), QR_AT)
    # The dark modules' extent (write_barcode_to_image may add a quiet zone).
    dark = np.argwhere(np.asarray(symbol.convert("L")) < 128)
    (top, left), (bottom, right) = dark.min(axis=0), dark.max(axis=0) + 1
    box = (QR_AT[0] + int(left), QR_AT[1] + int(top), QR_AT[0] + int(right),
           QR_AT[1] + int(bottom))
    out = io.BytesIO()
    page.save(out, "PNG")
    return out.getvalue(), box


PAGE, QR_BOX = make_page()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("home"), "[ocr]\nocr_workers = 1\n")


def words(text: str) -> str:
    return " ".join(text.lower().split())


def test_the_demo_reads_the_text_and_the_qr_code_of_a_page(context, service):
    watched = Watched.demo(context, service)
    page = watched.page
    page.set_input_files("#import-file", files=[
        {"name": "invoice.png", "mimeType": "image/png", "buffer": PAGE}])
    page.wait_for_function("() => document.querySelectorAll('#thumbnails .thumb').length === 1",
                           timeout=WAIT_MS)
    page.wait_for_function("() => !document.getElementById('ocr-all').disabled",
                           timeout=WAIT_MS)
    languages = page.eval_on_selector_all("#ocr-lang option", "os => os.map(o => o.value)")
    assert "eng" in languages, languages
    assert page.input_value("#ocr-lang") == "eng"  # the service's default
    assert page.is_disabled("#ocr-selected")  # no page selected yet

    # OCR of the selected page, with the searchable PDF and hOCR.
    page.click("#thumbnails .thumb")
    page.check("#ocr-out-hocr")
    page.click("#ocr-selected")
    page.wait_for_selector('#ocr-result[data-state="done"]:not([hidden])', timeout=WAIT_MS)
    page.wait_for_function("() => document.body.dataset.ocr === '0'", timeout=WAIT_MS)
    image_id = page.get_attribute("#thumbnails .thumb", "data-id")
    [section] = page.query_selector_all("#ocr-pages .ocr-page")
    assert section.get_attribute("data-image") == image_id
    text = words(section.query_selector("pre").inner_text())
    assert all(words(line) in text for line in LINES), text
    assert section.query_selector("h3").inner_text().startswith("Page 1")
    assert page.eval_on_selector("#ocr-progress", "p => p.value") == 100
    assert page.inner_text("#ocr-status") == "eng"
    # The links carry the token: they work as they are, from the page's own context.
    pdf_url = page.get_attribute("#ocr-pdf", "href")
    assert "/ocr/" in pdf_url and "download=1" in pdf_url and "token=" in pdf_url, pdf_url
    pdf = page.request.get(pdf_url)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    assert "attachment" in pdf.headers["content-disposition"]
    with pymupdf.open(stream=pdf.body(), filetype="pdf") as document:
        assert document.page_count == 1
        assert "4711" in document[0].get_text(), document[0].get_text()
    hocr = page.request.get(page.get_attribute("#ocr-hocr", "href"))
    assert hocr.status == 200 and "ocrx_word" in hocr.text()
    assert page.is_hidden("#ocr-text") is False
    assert words(page.request.get(page.get_attribute("#ocr-text", "href")).text()) == text

    # Barcodes, QR codes only: the code listed, and a box drawn over the thumbnail where
    # the code is on the page (its page pixels scaled to the thumbnail as shown).
    page.select_option("#barcode-format", "qr,micro_qr")
    page.click("#barcode-read")
    page.wait_for_selector('#barcode-result[data-state="done"]:not([hidden])', timeout=WAIT_MS)
    page.wait_for_function("() => document.body.dataset.barcodes === '0'", timeout=WAIT_MS)
    [item] = page.query_selector_all("#barcode-list li")
    assert (item.get_attribute("data-image"), item.get_attribute("data-format")) == \
        (image_id, "qr")
    assert QR_TEXT in item.inner_text() and "page 1" in item.inner_text()
    assert page.inner_text("#barcode-status") == "1"
    boxes = page.query_selector_all(".thumb .codes-overlay polygon.code-box")
    assert len(boxes) == 1
    # Where the box's corners are on the screen (its stroke aside), against where the
    # code is in the thumbnail as shown.
    shown = page.eval_on_selector(".thumb img", "i => {const r = i.getBoundingClientRect(); "
                                  "return {x: r.x, y: r.y, w: r.width, h: r.height}}")
    corners = boxes[0].evaluate("p => [...p.points].map((q) => { const s = new DOMPoint(q.x, "
                                "q.y).matrixTransform(p.getScreenCTM()); return [s.x, s.y]; })")
    scale = shown["w"] / 900
    assert shown["w"] < 900 and abs(shown["h"] - 320 * scale) < 1.5, shown
    left, top, right, bottom = QR_BOX
    xs, ys = [x for x, _ in corners], [y for _, y in corners]
    expected = (shown["x"] + left * scale, shown["y"] + top * scale,
                shown["x"] + right * scale, shown["y"] + bottom * scale)
    found = (min(xs), min(ys), max(xs), max(ys))
    assert all(abs(a - b) < 2 for a, b in zip(found, expected, strict=True)), \
        (corners, expected)

    # An edit of the page takes its boxes away (they belong to the page as it was read).
    page.click("#rotate-right")
    page.wait_for_function("() => !document.querySelector('.thumb .codes-overlay')",
                           timeout=WAIT_MS)
    assert watched.errors == []


SCRIPT = """
async (png) => {
  const {connect, OcrJob, BarcodeJob, ScanbridgeError} = await import("/scanbridge.js");
  const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
  const blob = new Blob([bytes], {type: "image/png"});
""" + CAUGHT + """
  const wait = async (check, what) => {
    for (const end = Date.now() + 20000; Date.now() < end;) {
      if (check()) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const out = {};
  const session = await connect({url: location.origin, reuse: false});
  const first = (await session.import(blob))[0];
  const second = (await session.import(blob))[0];
  out.ids = [first.id, second.id];
  await wait(() => session.eventsConnected, "the event socket");
  const topics = [];
  session.on("ocr.*", (event) => topics.push(event.topic));
  session.on("barcode.*", (event) => topics.push(event.topic));
  out.languages = await session.ocrLanguages();

  // OCR of both pages, with words, hOCR and the PDF.
  const calls = [];
  const job = session.ocr({lang: "eng", output: ["words", "hocr", "pdf"],
    onProgress: (p) => calls.push({...p, state: job.state})});
  out.atOnce = {instance: job instanceof OcrJob, state: job.state, id: job.id,
                early: await caught((async () => job.fileUrl("pdf"))())};
  const started = await job.started;
  out.started = {job: started.job, kind: started.kind, state: started.state,
                 progress: started.progress};
  const result = await job.done;
  out.ocr = {result, calls, state: job.state, same: job.result === result,
             progress: job.progress, id: job.id};
  const text = await fetch(job.fileUrl("text"));
  out.text = {status: text.status, type: text.headers.get("Content-Type"),
              body: await text.text()};
  const pdf = await fetch(job.fileUrl("pdf", {download: true, filename: "invoice"}));
  out.pdf = {status: pdf.status, disposition: pdf.headers.get("Content-Disposition"),
             head: new TextDecoder().decode((await pdf.arrayBuffer()).slice(0, 5))};
  out.badOutput = await caught((async () => job.fileUrl("docx"))());
  out.refreshed = (await job.refresh()).state;

  // A language that is not installed: the POST's 422, started and done reject.
  const bad = session.ocr({lang: "xx_not_there"});
  out.badLang = {done: await caught(bad.done), started: await caught(bad.started),
                 state: bad.state, id: bad.id};

  // Cancelled while its pages are read.
  const stopped = session.ocr({images: [second.id, first.id]});
  const cancelled = await stopped.cancel();
  out.cancelled = {record: cancelled.state, state: stopped.state,
                   ...await caught(stopped.done)};

  // Barcodes of both pages.
  const barcodeCalls = [];
  const codes = session.barcodes({formats: ["qr"],
    onProgress: (p) => barcodeCalls.push(p)});
  out.barcodes = {instance: codes instanceof BarcodeJob, result: await codes.done,
                  calls: barcodeCalls, state: codes.state};
  out.badFormat = await caught(session.barcodes({formats: ["nope"]}).done);
  out.lists = {ocr: (await session.ocrJobs()).map((j) => [j.job, j.state]),
               barcodes: (await session.barcodeJobs()).map((j) => [j.job, j.state])};
  out.jobIds = {ocr: job.id, stopped: stopped.id, barcodes: codes.id};
  out.topics = topics;

  // Without the event socket the job polls, and still ends with its result.
  const quiet = await connect({url: location.origin, reuse: false, events: false,
                               storageKey: "quiet"});
  await quiet.import(blob);
  const polled = [];
  const slow = quiet.barcodes({onProgress: (p) => polled.push(p)});
  const found = await slow.done;
  out.polled = {count: found.count, calls: polled, live: quiet.eventsConnected};
  await quiet.close();

  // Closing the session ends a running job.
  const last = session.ocr({});
  await last.started;
  await session.close();
  out.closed = await caught(last.done);
  return out;
}
"""


def test_session_ocr_and_barcodes_from_a_page_script(context, service):
    watched = Watched(context)
    page = watched.page
    page.goto(service.url("/"))
    out = page.evaluate(SCRIPT, base64.b64encode(PAGE).decode())
    first, second = out["ids"]

    assert "eng" in out["languages"]["installed"], out["languages"]
    assert out["languages"]["default"] == "eng"

    # At once: an OcrJob, starting, no id; no file URL before the service answered.
    assert {k: v for k, v in out["atOnce"].items() if k != "early"} == \
        {"instance": True, "state": "starting", "id": None}
    assert (out["atOnce"]["early"]["isError"], out["atOnce"]["early"]["code"]) == \
        (True, "conflict")
    started = out["started"]
    assert (started["job"], started["kind"]) == (out["ocr"]["id"], "ocr"), started
    assert started["state"] in ("queued", "running")
    assert started["progress"]["total"] == 2

    # Done: both pages' text, words with boxes, the files; progress 1 of 2 then 2 of 2.
    ocr = out["ocr"]
    result = ocr["result"]
    assert ocr["state"] == "done" and ocr["same"], ocr["state"]
    assert result["lang"] == "eng"
    assert [p["image"] for p in result["pages"]] == [first, second]
    for entry in result["pages"]:
        assert all(words(line) in words(entry["text"]) for line in LINES), entry["text"]
        assert (entry["width"], entry["height"], entry["rotation"]) == (900, 320, 0)
        assert any(w["text"] == "4711" for w in entry["words"]), entry["words"]
    assert result["text"].split("\f") == [p["text"] for p in result["pages"]]
    assert set(result["files"]) == {"text", "hocr", "pdf"}
    assert [(c["done"], c["total"], c["percent"]) for c in ocr["calls"]] == \
        [(1, 2, 50), (2, 2, 100)], ocr["calls"]
    assert all(c["state"] == "running" for c in ocr["calls"]), ocr["calls"]
    assert {c["image"] for c in ocr["calls"]} == {first, second}, ocr["calls"]
    assert ocr["progress"]["percent"] == 100
    assert out["text"]["status"] == 200 and out["text"]["type"].startswith("text/plain")
    assert out["text"]["body"] == result["text"]
    assert out["pdf"]["status"] == 200 and out["pdf"]["head"] == "%PDF-"
    assert "invoice.pdf" in out["pdf"]["disposition"], out["pdf"]
    assert out["badOutput"]["code"] == "invalid_argument"
    assert out["refreshed"] == "done"

    bad = out["badLang"]
    assert (bad["done"]["code"], bad["done"]["status"], bad["started"]["code"]) == \
        ("invalid_option", 422, "invalid_option"), bad
    assert "eng" in bad["done"]["details"]["installed"], bad
    assert (bad["state"], bad["id"]) == ("failed", None)

    cancelled = out["cancelled"]
    assert (cancelled["record"], cancelled["state"], cancelled["code"]) == \
        ("cancelled", "cancelled", "cancelled"), cancelled
    assert cancelled["details"]["job"] == out["jobIds"]["stopped"]

    # Barcodes: the QR on each page at its place, progress per page.
    barcodes = out["barcodes"]
    assert barcodes["instance"] and barcodes["state"] == "done"
    found = barcodes["result"]
    assert found["count"] == 2 and [p["image"] for p in found["pages"]] == [first, second]
    left, top, right, bottom = QR_BOX
    for entry in found["pages"]:
        [code] = entry["barcodes"]
        assert (code["format"], code["text"]) == ("qr", QR_TEXT), code
        assert base64.b64decode(code["raw"]) == QR_TEXT.encode()
        xs, ys = [x for x, _ in code["points"]], [y for _, y in code["points"]]
        assert abs(min(xs) - left) <= 3 and abs(max(xs) - right) <= 3, code["points"]
        assert abs(min(ys) - top) <= 3 and abs(max(ys) - bottom) <= 3, code["points"]
    assert [(c["done"], c["total"]) for c in barcodes["calls"]] == [(1, 2), (2, 2)], \
        barcodes["calls"]
    assert (out["badFormat"]["code"], out["badFormat"]["status"]) in \
        {("invalid_argument", 400), ("invalid_option", 422)}, out["badFormat"]

    ids = out["jobIds"]
    assert out["lists"] == {"ocr": [[ids["ocr"], "done"], [ids["stopped"], "cancelled"]],
                            "barcodes": [[ids["barcodes"], "done"]]}, out["lists"]
    assert {"ocr.progress", "ocr.done", "ocr.cancelled", "barcode.progress",
            "barcode.done"} <= set(out["topics"]), out["topics"]

    polled = out["polled"]
    assert polled["live"] is False and polled["count"] == 1
    assert polled["calls"][-1]["percent"] == 100, polled

    assert (out["closed"]["code"]) in ("session_closed", "cancelled"), out["closed"]
    # The browser logs the failed POSTs' answers (422, 4xx) itself; nothing else went wrong.
    assert [e for e in watched.errors if "status of 4" not in e] == [], watched.errors
