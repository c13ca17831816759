"""What the barcode tests share (test_barcode and test_barcode_input): symbols generated
with zxing-cpp and pasted at known places on white A4 pages, the checks of what a reader
reports, pages in a buffer session, and one service with default settings for both
modules.

Every symbol is generated with zxing-cpp and pasted at a known place on a white A4 page at
300 dpi (2480 x 3508 pixels), so each test knows which format, text and rectangle a reader
must report. A symbol's ``points`` must lie inside the pasted rectangle (the generated
image includes its quiet zone) give or take ``TOL`` pixels, in page pixels also when a
``region`` was read.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np
import pytest
import zxingcpp
from PIL import Image

from broker.client import Client
from broker.protocol import Error

from .shared import default_service, shared_by_modules

A4 = (2480, 3508)  # 300 dpi
TOL = 6  # pixels a corner may lie outside the pasted rectangle
READ_TIMEOUT = 60


@dataclass(frozen=True)
class Kind:
    zxing: zxingcpp.BarcodeFormat  # what the test generates it with
    text: str  # what a reader must give back (check digits included)
    scale: int  # pixels per module at 300 dpi
    two_d: bool = False


F = zxingcpp.BarcodeFormat
# Our format names -> how the test makes one. The texts are valid for their symbology:
# EAN/UPC with their check digit, UPC-E a number-system-0 code (UPC-A 012345000065),
# ITF an even count of digits, Codabar with A...B start/stop characters. EAN/UPC texts are
# the digits printed under the symbol: UPC-A 12, UPC-E 8.
KINDS: dict[str, Kind] = {
    "qr": Kind(F.QRCode, "https://scanbridge.example/qr?page=1", 8, True),
    "micro_qr": Kind(F.MicroQRCode, "MQR-42", 8, True),
    "datamatrix": Kind(F.DataMatrix, "DM-Scanbridge-0001", 8, True),
    "pdf417": Kind(F.PDF417, "PDF417 Scanbridge page 1", 3, True),
    "aztec": Kind(F.Aztec, "AZTEC-9876", 6, True),
    "code128": Kind(F.Code128, "SB-Code128-42", 3),
    "code39": Kind(F.Code39, "CODE39 SB", 3),
    "code93": Kind(F.Code93, "CODE93-SB", 3),
    "ean8": Kind(F.EAN8, "96385074", 4),
    "ean13": Kind(F.EAN13, "4006381333931", 4),
    "upca": Kind(F.UPCA, "036000291452", 4),
    "upce": Kind(F.UPCE, "01234565", 4),
    "itf": Kind(F.ITF, "1234567890", 4),
    "codabar": Kind(F.Codabar, "A40156B", 4),
}
FORMATS = list(KINDS)
ZBAR_FORMATS = ["qr", "code128", "code39", "code93", "ean8", "ean13", "upca", "upce", "itf",
                "codabar"]
ZXING_ONLY = [name for name in FORMATS if name not in ZBAR_FORMATS]
ENGINES = ("zxing", "zbar")

Box = tuple[int, int, int, int]  # left, top, right, bottom (right and bottom exclusive)


# --- making pages


def symbol(name: str, text: str | None = None, scale: int | None = None) -> Image.Image:
    """A generated symbol, quiet zone included, as an 8-bit gray image."""
    kind = KINDS[name]
    code = zxingcpp.create_barcode(text or kind.text, kind.zxing)
    pixels = np.asarray(zxingcpp.write_barcode_to_image(code, scale=scale or kind.scale))
    return Image.fromarray(pixels).convert("L")


def compose(placed: dict[str, tuple[Image.Image, tuple[int, int]]],
            size: tuple[int, int] = A4) -> tuple[Image.Image, dict[str, Box]]:
    """A white page with each image pasted at its (left, top); the rectangles by key."""
    page = Image.new("L", size, 255)
    boxes: dict[str, Box] = {}
    for key, (image, (left, top)) in placed.items():
        box = (left, top, left + image.width, top + image.height)
        assert box[2] <= size[0] and box[3] <= size[1], f"{key} does not fit on the page"
        for other, taken in boxes.items():
            assert not overlap(box, taken), f"{key} overlaps {other}"
        page.paste(image, (left, top))
        boxes[key] = box
    return page, boxes


def overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, dpi=(300, 300), **params)
    return out.getvalue()


def rotated_box(box: Box, width: int, clockwise: bool) -> Box:
    """Where ``box`` of a page ``width`` pixels wide lands when the page turns 90°.

    Clockwise (Transpose.ROTATE_270) ``width`` is the page's height instead."""
    left, top, right, bottom = box
    if clockwise:
        return width - bottom, left, width - top, right
    return top, width - right, bottom, width - left


# --- checking results


def centre(points: list) -> tuple[float, float]:
    return sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points)


def inside(point, box: Box, tol: float = 0) -> bool:
    x, y = point
    return box[0] - tol <= x <= box[2] + tol and box[1] - tol <= y <= box[3] + tol


def at(barcodes: list[dict], box: Box) -> list[dict]:
    """The results whose centre lies in ``box``."""
    return [b for b in barcodes if inside(centre(b["points"]), box)]


def brief(barcodes: list[dict]) -> list:
    return [(b["format"], b["text"], b["points"]) for b in barcodes]


def check_symbol(barcodes: list[dict], box: Box, name: str, text: str, engine: str) -> None:
    """Exactly one result at ``box``: the right format and text, corners around the box."""
    hits = at(barcodes, box)
    assert len(hits) == 1, (f"{engine}: expected one {name} {text!r} at {box}, found "
                            f"{brief(hits)}; on the page: {brief(barcodes)}")
    hit = hits[0]
    assert (hit["format"], hit["text"]) == (name, text), \
        f"{engine} read the {name} {text!r} at {box} as {hit['format']} {hit['text']!r}"
    assert hit["engine"] == engine
    points = hit["points"]
    assert len(points) == 4 and all(len(p) == 2 for p in points), points
    assert all(inside(p, box, TOL) for p in points), \
        f"{engine}: corners of the {name} {points} are not around its rectangle {box}"
    # Not a sliver: the corners span most of the symbol (the box adds its quiet zone) -
    # along the bars' run for a linear symbol (its height may be one scan line), both ways
    # for a 2D one. Sorted, so that this holds on a page turned a quarter too.
    short, long = sorted((max(p[i] for p in points) - min(p[i] for p in points))
                         for i in (0, 1))
    box_short, box_long = sorted((box[2] - box[0], box[3] - box[1]))
    assert long >= 0.6 * box_long, f"{engine}: {name} corners {points} in {box}"
    if KINDS[name].two_d:
        assert short >= 0.6 * box_short, f"{engine}: {name} corners {points} in {box}"
    raw = base64.b64decode(hit["raw"], validate=True)
    if name in ("upca", "upce"):  # the digits, in whichever length the engine keeps them
        assert raw.isdigit(), raw
    else:
        assert raw == text.encode(), f"{engine}: raw bytes of the {name}: {raw!r}"


def error_of(client: Client, op: str, args: dict, blobs=()) -> Error:
    with pytest.raises(Error) as caught:
        client.call("barcode", op, args, blobs=list(blobs), timeout=READ_TIMEOUT)
    return caught.value


def read(client: Client, args: dict) -> dict:
    return client.call("barcode", "read", args, timeout=READ_TIMEOUT)


def only_page(result: dict) -> list[dict]:
    assert len(result["pages"]) == 1, result
    return result["pages"][0]["barcodes"]


# --- fixtures


def new_session(client: Client) -> str:
    return client.call("buffer", "open_session", {})["session"]


def add(client: Client, session: str, data: bytes) -> str:
    return client.call("buffer", "add", {"session": session}, blobs=[data], timeout=30)["id"]


@dataclass
class OnePage:
    session: str
    image: str
    boxes: dict[str, Box]
    reads: dict[str, dict]  # engine -> read result of the whole page


@pytest.fixture(scope="module")
def formats_page(client: Client) -> OnePage:
    """Every format once on one A4 page: 3 columns x 5 rows, each a little shifted."""
    placed = {}
    for i, name in enumerate(FORMATS):
        column, row = i % 3, i // 3
        placed[name] = (symbol(name), (110 + column * 800 + (row * 37) % 90, 130 + row * 680))
    page, boxes = compose(placed)
    session = new_session(client)
    image = add(client, session, encode(page))
    reads = {engine: read(client, {"session": session, "engine": engine})
             for engine in ENGINES}
    return OnePage(session, image, boxes, reads)


@dataclass
class Pages:
    session: str
    ids: list[str]
    blobs: list[bytes]  # each page as added (the 2nd is a JPEG)
    expected: list[dict[str, tuple[str, str, Box]]]  # per page: key -> (format, text, box)


# What the several-pages session holds: key -> (format, text, (left, top)).
SEVERAL = [
    {"p1-qr": ("qr", "PAGE 1 QR", (200, 200)),
     "p1-code128": ("code128", "P1-CODE128", (1300, 2950)),
     "p1-ean13": ("ean13", "5901234123457", (250, 3000))},
    {"p2-datamatrix": ("datamatrix", "PAGE 2 DATAMATRIX", (1900, 260)),
     "p2-code39": ("code39", "P2 CODE39", (220, 1650))},
    {},  # a blank page
    {"p4-qr": ("qr", "PAGE 4 QR", (1800, 2900)),
     "p4-itf": ("itf", "98765432", (260, 240)),
     "p4-code128": ("code128", "P4-CODE128", (900, 1500))},
]


@pytest.fixture(scope="module")
def pages(client: Client) -> Pages:
    """Four pages in one session; page 2 is a color JPEG (as scanners send), page 3 blank."""
    session = new_session(client)
    ids, datas, expected = [], [], []
    for number, content in enumerate(SEVERAL, 1):
        page, boxes = compose({key: (symbol(fmt, text), where)
                               for key, (fmt, text, where) in content.items()})
        data = encode(page.convert("RGB"), "JPEG", quality=92) if number == 2 else encode(page)
        ids.append(add(client, session, data))
        datas.append(data)
        expected.append({key: (fmt, text, boxes[key]) for key, (fmt, text, _) in content.items()})
    return Pages(session, ids, datas, expected)


def check_page(barcodes: list[dict], expected: dict[str, tuple[str, str, Box]],
               engine: str) -> None:
    """Each expected symbol the engine can read, and nothing more."""
    readable = FORMATS if engine == "zxing" else ZBAR_FORMATS
    expected = {k: v for k, v in expected.items() if v[0] in readable}
    for fmt, text, box in expected.values():
        check_symbol(barcodes, box, fmt, text, engine)
    assert len(barcodes) == len(expected), \
        f"{engine}: expected {len(expected)} symbols, found {brief(barcodes)}"


# conftest.py's service, one for both modules as it was one for the file
service = shared_by_modules(default_service, "service")
