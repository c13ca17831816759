"""``scanbridge ocr`` and ``scanbridge barcodes`` against the whole service (one per module).

The pages are made here: three lines of DejaVu Sans rendered at 300 dpi (small pages, not
A4, so Tesseract takes well under a second each), a 2-page PDF of two such images (the
buffer rasterises it at its import dpi), and a page with a QR code and a Code128 made by
zxing-cpp. Every run must leave no session open in the buffer: the command closes its
session also when it fails.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pymupdf
import pytest
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from tests.support.service import Service

pytestmark = pytest.mark.timeout(120)

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
PAGE_ONE = ["Scanbridge reads invoices", "Quick brown foxes jump", "Seventeen lazy dogs"]
PAGE_TWO = ["Marmalade sandwiches travel", "Harbour lighthouse keeper", "Purple umbrella"]
QR_TEXT = "https://scanbridge.example/cli?page=2"
CODE128_TEXT = "SB-CLI-128"


def text_page(lines: list[str]) -> Image.Image:
    """The lines in 11 pt DejaVu Sans at 300 dpi, on a white page 1300 x 420 pixels."""
    page = Image.new("L", (1300, 420), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 46)
    for number, line in enumerate(lines):
        draw.text((60, 60 + number * 100), line, font=font, fill=0)
    return page


def symbol(fmt: zxingcpp.BarcodeFormat, text: str, scale: int) -> Image.Image:
    code = zxingcpp.create_barcode(text, fmt)
    return Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=scale)))


def code_page() -> Image.Image:
    page = Image.new("L", (1300, 700), 255)
    page.paste(symbol(zxingcpp.BarcodeFormat.QRCode, QR_TEXT, 8).convert("L"), (60, 60))
    page.paste(symbol(zxingcpp.BarcodeFormat.Code128, CODE128_TEXT, 3).convert("L"),
               (60, 500))
    return page


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(300, 300))
    return out.getvalue()


def pdf(*images: Image.Image) -> bytes:
    """One page per image, each as large as the image at 300 dpi."""
    document = pymupdf.open()
    for image in images:
        width, height = image.width * 72 / 300, image.height * 72 / 300
        document.new_page(width=width, height=height).insert_image(
            pymupdf.Rect(0, 0, width, height), stream=png(image))
    return document.tobytes()


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def has_lines(text: str, lines: list[str]) -> bool:
    found = words(text)
    return all(word in found for line in lines for word in words(line))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    made = {"text.png": png(text_page(PAGE_ONE)),
            "two.pdf": pdf(text_page(PAGE_ONE), text_page(PAGE_TWO)),
            "codes.png": png(code_page()),
            "codes.pdf": pdf(text_page(PAGE_TWO), code_page()),
            "notes.txt": b"this is not an image\n",
            "broken.png": b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20}
    for name, data in made.items():
        (folder / name).write_bytes(data)
    return folder


def in_folder(folder, args: tuple[str, ...]) -> list[str]:
    """The arguments, file names (``name.ext``) made paths in ``folder``."""
    return [str(folder / arg) if re.fullmatch(r"[\w-]+\.\w+", arg) else arg for arg in args]


@pytest.fixture
def run(service, files):
    """``run(*args)``: ``scanbridge ARGS``, file names taken in the files' folder; after
    each test the buffer must hold no session (the command closed its own)."""
    def scanbridge(*args: str):
        return service.cli(*in_folder(files, args))
    yield scanbridge
    with service.client() as client:
        assert client.call("buffer", "sessions", {}, timeout=10) == []


def one_line_error(done) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("scanbridge: ")
    return lines[0]


# --- OCR

def test_ocr_prints_the_text_of_an_image(run):
    done = run("ocr", "text.png")
    assert done.returncode == 0, done.stderr
    assert has_lines(done.stdout, PAGE_ONE), done.stdout
    assert "Traceback" not in done.stderr


def test_ocr_writes_a_searchable_pdf_whose_text_layer_holds_the_words(run, files):
    out = files / "out.pdf"
    done = run("ocr", "text.png", "--output", "pdf", "-o", "out.pdf")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{out}\n"
    with pymupdf.open(out) as document:
        assert document.page_count == 1
        assert has_lines(document[0].get_text(), PAGE_ONE), document[0].get_text()


def test_ocr_of_a_two_page_pdf_gives_both_pages_in_order(run):
    done = run("ocr", "two.pdf")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split("\f")
    assert has_lines(first, PAGE_ONE), first
    assert has_lines(second, PAGE_TWO), second


def test_ocr_words_name_each_pages_file_and_page_number(run, files):
    done = run("ocr", "text.png", "two.pdf", "--output", "words", "-o", "words.json")
    assert done.returncode == 0, done.stderr
    found = json.loads((files / "words.json").read_text())
    assert found["lang"] == "eng"
    assert [(p["file"], p["page"]) for p in found["pages"]] == [
        (str(files / "text.png"), 1), (str(files / "two.pdf"), 1), (str(files / "two.pdf"), 2)]
    last = found["pages"][2]
    assert has_lines(" ".join(w["text"] for w in last["words"]), PAGE_TWO)
    assert all(len(w["box"]) == 4 for w in last["words"])


# --- barcodes

def test_barcodes_prints_one_line_per_symbol_with_file_and_page(run, files):
    done = run("barcodes", "codes.png", "codes.pdf")
    assert done.returncode == 0, done.stderr
    png_file, pdf_file = files / "codes.png", files / "codes.pdf"
    assert sorted(done.stdout.splitlines()) == sorted([
        f"{png_file} page 1: qr {QR_TEXT}", f"{png_file} page 1: code128 {CODE128_TEXT}",
        f"{pdf_file} page 2: qr {QR_TEXT}", f"{pdf_file} page 2: code128 {CODE128_TEXT}"])


def test_barcodes_json_and_formats_filter(run, files):
    done = run("barcodes", "codes.png", "--json", "--formats", "qr")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["count"] == 1
    (qr,) = found["barcodes"]
    assert (qr["file"], qr["page"], qr["format"], qr["text"]) == (
        str(files / "codes.png"), 1, "qr", QR_TEXT)
    assert len(qr["points"]) == 4


# --- errors

def test_a_missing_file_is_named_and_a_usage_error(run, files):
    done = run("ocr", "text.png", "missing.png")
    assert done.returncode == 2
    assert one_line_error(done) == (f"scanbridge: cannot read {files / 'missing.png'}: "
                                    "No such file or directory")


def test_a_file_that_is_no_image_is_named(run, files):
    done = run("barcodes", "notes.txt")
    assert done.returncode == 2
    assert f"{files / 'notes.txt'}: not an image or a PDF" in one_line_error(done)


def test_a_broken_image_is_named_with_the_services_reason(run, files):
    done = run("ocr", "text.png", "broken.png")
    assert done.returncode == 2
    assert one_line_error(done).startswith(f"scanbridge: {files / 'broken.png'}: ")


def test_an_unknown_language_gets_the_services_message_listing_the_installed(run):
    done = run("ocr", "text.png", "--lang", "xyz")
    assert done.returncode == 2
    line = one_line_error(done)
    assert "'xyz' is not installed" in line and "eng" in line, line
    assert done.stdout == ""


def test_without_a_running_service_it_says_so_and_exits_3(tmp_path, files):
    idle = Service(tmp_path / "home")  # configured, never started
    for args in (("ocr", "text.png"), ("barcodes", "codes.png")):
        done = idle.cli(*in_folder(files, args))
        assert done.returncode == 3, done.stderr
        assert "not running" in one_line_error(done)
        assert "scanbridge start" in done.stderr
