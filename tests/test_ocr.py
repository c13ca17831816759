"""OCR: what the ``ocr`` actor reads, over the broker and through the gateway's OCR jobs,
against the real service.

Accuracy in English and German through a job and through ``ocr.page``; words with
confidences and boxes where they were drawn (in the upright image, also for turned pages);
hOCR as XML with one numbered ``ocr_page`` per page; the searchable PDF (the uploaded JPEGs
byte for byte, a text layer pymupdf reads, ``/Rotate`` on turned pages); orientation found
for pages turned 90, 180 and 270 degrees and the control with ``rotate: false``.

tests/support/ocr.py renders the pages and compares the text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pymupdf
import pytest

from tests.support.ocr import (ENGLISH, KNOWN_WORDS, TURNED_WORDS, WAIT, assert_box_near,
                               assert_read, cer, encoded, normal, worker_pids)
from tests.support.ocr import pages, service, session  # fixtures

pytestmark = pytest.mark.timeout(120)


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
