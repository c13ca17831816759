"""The barcode actor run by the whole service under supervisord, driven over the broker.

Every symbol is generated here with zxing-cpp and pasted at a known place on a white A4
page at 300 dpi (2480 x 3508 pixels), so each test knows which format, text and rectangle
a reader must report. A symbol's ``points`` must lie inside the pasted rectangle (the
generated image includes its quiet zone) give or take ``TOL`` pixels, in page pixels also
when a ``region`` was read.

zxing-cpp is the default engine and reads every format; zbar reads the linear ones and QR
and must refuse the others (``invalid_argument`` pointing to the zxing engine).

Three services: the module's default one (``service`` fixture), one with
``[barcode] engine = zbar`` and one with ``[limits] max_image_megapixels = 1``.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
import zxingcpp
from PIL import Image

from broker.client import Client
from broker.protocol import Error
from tests.support.service import Service

pytestmark = pytest.mark.timeout(120)

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


# --- 1. every format, both engines


@pytest.mark.parametrize("name", FORMATS)
def test_zxing_reads_every_format_where_it_was_pasted(formats_page: OnePage, name: str):
    result = formats_page.reads["zxing"]
    assert result["engine"] == "zxing"
    assert [p["image"] for p in result["pages"]] == [formats_page.image]
    check_symbol(only_page(result), formats_page.boxes[name], name, KINDS[name].text, "zxing")


@pytest.mark.parametrize("name", ZBAR_FORMATS)
def test_zbar_reads_the_linear_formats_and_qr(formats_page: OnePage, name: str):
    result = formats_page.reads["zbar"]
    assert result["engine"] == "zbar"
    check_symbol(only_page(result), formats_page.boxes[name], name, KINDS[name].text, "zbar")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_page_of_every_format_gives_each_symbol_once_and_nothing_else(
        formats_page: OnePage, engine: str):
    found = only_page(formats_page.reads[engine])
    readable = FORMATS if engine == "zxing" else ZBAR_FORMATS
    counted = Counter(b["format"] for b in found)
    assert counted == Counter(readable), (f"{engine}: missing {Counter(readable) - counted}, "
                                          f"extra {counted - Counter(readable)}")
    # zbar skips the 2D symbols it cannot read: nothing of it lands on them
    for name in FORMATS:
        hits = at(found, formats_page.boxes[name])
        assert len(hits) == (1 if name in readable else 0), (name, brief(hits))


@pytest.mark.parametrize("engine", ENGINES)
def test_each_format_alone_in_a_region_around_it(client: Client, formats_page: OnePage,
                                                 engine: str):
    """formats=[name] with a region just around the symbol: that symbol, in page pixels."""
    readable = FORMATS if engine == "zxing" else ZBAR_FORMATS
    failures = []
    for name in readable:
        left, top, right, bottom = formats_page.boxes[name]
        region = {"left": left - 20, "top": top - 20, "width": right - left + 40,
                  "height": bottom - top + 40}
        result = read(client, {"session": formats_page.session, "formats": [name],
                               "region": region, "engine": engine})
        try:
            check_symbol(only_page(result), formats_page.boxes[name], name, KINDS[name].text,
                         engine)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ZXING_ONLY)
def test_zbar_refuses_the_formats_only_zxing_reads(client: Client, formats_page: OnePage,
                                                   name: str):
    for op, args, blobs in (("read", {"session": formats_page.session}, ()),
                            ("decode", {}, [encode(symbol(name))])):
        error = error_of(client, op, {**args, "formats": [name], "engine": "zbar"}, blobs)
        assert error.code == "invalid_argument", (op, error)
        assert name in error.message and "zxing" in error.message, (op, error.message)


# --- 2. several pages: order, images, formats, region, decode


def test_read_gives_every_page_in_order_with_its_barcodes(client: Client, pages: Pages):
    listed = client.call("buffer", "list", {"session": pages.session})
    for engine in ENGINES:
        result = read(client, {"session": pages.session, "engine": engine})
        assert result["engine"] == engine
        assert isinstance(result["seconds"], (int, float)) and result["seconds"] >= 0
        assert [p["image"] for p in result["pages"]] == pages.ids
        assert [p["index"] for p in result["pages"]] == [i["index"] for i in listed]
        for page, expected in zip(result["pages"], pages.expected, strict=True):
            check_page(page["barcodes"], expected, engine)


def test_images_reads_only_those_pages(client: Client, pages: Pages):
    wanted = [pages.ids[1], pages.ids[3]]
    result = read(client, {"session": pages.session, "images": wanted})
    assert [p["image"] for p in result["pages"]] == wanted
    assert [p["index"] for p in result["pages"]] == [1, 3]
    check_page(result["pages"][0]["barcodes"], pages.expected[1], "zxing")
    check_page(result["pages"][1]["barcodes"], pages.expected[3], "zxing")


def test_images_given_out_of_order_come_back_in_page_order(client: Client, pages: Pages):
    """The op's contract: "Barcodes on the session's pages (all, or images), in page order"."""
    result = read(client, {"session": pages.session,
                           "images": [pages.ids[3], pages.ids[0]]})
    assert [p["image"] for p in result["pages"]] == [pages.ids[0], pages.ids[3]]


@pytest.mark.parametrize("engine", ENGINES)
def test_formats_filter_returns_only_those_formats(client: Client, pages: Pages, engine: str):
    for formats in (["qr"], ["code128", "ean13"], ["itf", "code39", "qr"]):
        result = read(client, {"session": pages.session, "formats": formats,
                               "engine": engine})
        assert [p["image"] for p in result["pages"]] == pages.ids
        for page, expected in zip(result["pages"], pages.expected, strict=True):
            kept = {k: v for k, v in expected.items() if v[0] in formats}
            check_page(page["barcodes"], kept, engine)
    # datamatrix is zxing's only
    if engine == "zxing":
        result = read(client, {"session": pages.session, "formats": ["datamatrix"]})
        assert [len(p["barcodes"]) for p in result["pages"]] == [0, 1, 0, 0]


@pytest.mark.parametrize("engine", ENGINES)
def test_region_gives_the_symbols_inside_it_in_page_pixels(client: Client, pages: Pages,
                                                           engine: str):
    first, last = pages.expected[0], pages.expected[3]
    # The lower half of page 1 holds its Code 128 and EAN-13, not its QR.
    lower = {"left": 0, "top": A4[1] // 2, "width": A4[0], "height": A4[1] - A4[1] // 2}
    result = read(client, {"session": pages.session, "images": [pages.ids[0]],
                           "region": lower, "engine": engine})
    check_page(only_page(result), {k: first[k] for k in ("p1-code128", "p1-ean13")}, engine)
    # Just around page 4's QR, on every page: only that QR, nothing from the others.
    left, top, right, bottom = last["p4-qr"][2]
    around = {"left": left - 30, "top": top - 30, "width": right - left + 60,
              "height": bottom - top + 60}
    result = read(client, {"session": pages.session, "region": around, "engine": engine})
    assert [p["image"] for p in result["pages"]] == pages.ids
    assert [len(p["barcodes"]) for p in result["pages"]] == [0, 0, 0, 1], result
    check_page(result["pages"][3]["barcodes"], {"p4-qr": last["p4-qr"]}, engine)


def test_a_region_that_cuts_a_symbol_in_half_does_not_report_it_elsewhere(
        client: Client, pages: Pages):
    left, top, right, bottom = pages.expected[0]["p1-qr"][2]
    region = {"left": 0, "top": 0, "width": (left + right) // 2, "height": A4[1] // 3}
    found = only_page(read(client, {"session": pages.session, "images": [pages.ids[0]],
                                    "region": region}))
    assert found == [], brief(found)


@pytest.mark.parametrize("engine", ENGINES)
def test_decode_reads_images_given_as_blobs(client: Client, pages: Pages, engine: str):
    result = client.call("barcode", "decode", {"engine": engine}, blobs=pages.blobs,
                         timeout=READ_TIMEOUT)
    assert result["engine"] == engine
    assert [p["index"] for p in result["pages"]] == [0, 1, 2, 3]
    for page, expected in zip(result["pages"], pages.expected, strict=True):
        check_page(page["barcodes"], expected, engine)
    # with a region and a format filter: page pixels still
    left, top, right, bottom = pages.expected[3]["p4-code128"][2]
    region = {"left": left - 10, "top": top - 10, "width": right - left + 20,
              "height": bottom - top + 20}
    result = client.call("barcode", "decode",
                         {"engine": engine, "region": region, "formats": ["code128"]},
                         blobs=[pages.blobs[3]], timeout=READ_TIMEOUT)
    check_page(only_page(result), {"c": pages.expected[3]["p4-code128"]}, engine)


# --- 3. rotated pages


ROTATED = ["qr", "datamatrix", "pdf417", "aztec", "code128", "ean13", "codabar"]


def upright_page() -> tuple[Image.Image, dict[str, Box]]:
    return compose({name: (symbol(name), (150 + (i % 2) * 1200, 150 + (i // 2) * 800))
                    for i, name in enumerate(ROTATED)})


def test_a_page_scanned_sideways_reads_with_zxing(client: Client):
    page, boxes = upright_page()
    sideways = page.transpose(Image.Transpose.ROTATE_90)  # a quarter turn counter-clockwise
    session = new_session(client)
    image = add(client, session, encode(sideways))
    result = read(client, {"session": session, "engine": "zxing"})
    assert [p["image"] for p in result["pages"]] == [image]
    check_page(only_page(result),
               {n: (n, KINDS[n].text, rotated_box(boxes[n], A4[0], clockwise=False))
                for n in ROTATED}, "zxing")


def test_a_page_rotated_in_the_buffer_reads_in_its_new_orientation(client: Client):
    """The buffer's rotate edit stores a new file: read follows it, corners included."""
    page, boxes = upright_page()
    session = new_session(client)
    image = add(client, session, encode(page))
    client.call("buffer", "edit", {"session": session, "image": image,
                                   "ops": [{"op": "rotate", "angle": 90}]}, timeout=30)
    result = read(client, {"session": session})
    check_page(only_page(result),
               {n: (n, KINDS[n].text, rotated_box(boxes[n], A4[1], clockwise=True))
                for n in ROTATED}, "zxing")


# --- 4. bad input


@pytest.mark.parametrize("engine", ENGINES)
def test_blank_and_tiny_pages_give_empty_lists(client: Client, engine: str):
    session = new_session(client)
    blank = add(client, session, encode(Image.new("L", A4, 255)))
    tiny = add(client, session, encode(Image.new("L", (4, 4), 0)))
    result = read(client, {"session": session, "engine": engine})
    assert [(p["image"], p["barcodes"]) for p in result["pages"]] == [(blank, []), (tiny, [])]
    for size, fill in ((A4, 255), ((4, 4), 0), ((1, 1), 255), ((8, 8), 0)):
        result = client.call("barcode", "decode", {"engine": engine},
                             blobs=[encode(Image.new("L", size, fill))], timeout=READ_TIMEOUT)
        assert result["pages"] == [{"index": 0, "barcodes": []}], (size, result)


@pytest.mark.parametrize("blob", [b"", b"not an image at all", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n",
                                  "truncated png"])
def test_decode_of_something_that_is_not_an_image_is_invalid_image(client: Client, blob):
    if blob == "truncated png":
        blob = encode(symbol("qr"))[:80]
    error = error_of(client, "decode", {}, [blob])
    assert error.code == "invalid_image", error


def test_decode_without_a_blob_is_invalid_argument(client: Client):
    assert error_of(client, "decode", {}).code == "invalid_argument"


@pytest.mark.parametrize("formats", [["qr", "nope"], ["maxicode"], "qr", [1]])
def test_an_unknown_format_is_invalid_argument(client: Client, pages: Pages, formats):
    for op, args, blobs in (("read", {"session": pages.session}, ()),
                            ("decode", {}, [pages.blobs[0]])):
        error = error_of(client, op, {**args, "formats": formats}, blobs)
        assert error.code == "invalid_argument", (op, formats, error)
    if isinstance(formats, list) and "nope" in formats:
        assert "nope" in error.message


@pytest.mark.parametrize("region", [
    {"left": 2400, "top": 0, "width": 200, "height": 200},  # past the right edge
    {"left": 0, "top": 3500, "width": 100, "height": 100},  # past the bottom
    {"left": 3000, "top": 4000, "width": 10, "height": 10},  # wholly outside
    {"left": -10, "top": 0, "width": 100, "height": 100},
    {"left": 0, "top": 0, "width": 0, "height": 100},
    {"left": 0, "top": 0, "width": 100},  # no height
    {"left": "x", "top": 0, "width": 100, "height": 100},
    [0, 0, 100, 100],
])
def test_a_region_outside_the_image_or_malformed_is_invalid_argument(client: Client,
                                                                     pages: Pages, region):
    error = error_of(client, "read", {"session": pages.session, "images": [pages.ids[0]],
                                      "region": region})
    assert error.code == "invalid_argument", (region, error)
    error = error_of(client, "decode", {"region": region}, [pages.blobs[0]])
    assert error.code == "invalid_argument", (region, error)


def test_unknown_images_and_sessions_are_not_found(client: Client, pages: Pages):
    error = error_of(client, "read", {"session": pages.session,
                                      "images": [pages.ids[0], "0123456789abcdef"]})
    assert error.code == "not_found", error
    assert "0123456789abcdef" in error.message
    error = error_of(client, "read", {"session": "nosuchsession42"})
    assert error.code == "not_found", error
    error = error_of(client, "read", {"session": pages.session, "images": pages.ids[0]})
    assert error.code == "invalid_argument", error  # a bare id, not a list


@pytest.mark.parametrize("engine", ["nope", "ZXING", "", 1])
def test_an_unknown_engine_is_invalid_argument(client: Client, pages: Pages, engine):
    for op, args, blobs in (("read", {"session": pages.session}, ()),
                            ("decode", {}, [pages.blobs[0]])):
        error = error_of(client, op, {**args, "engine": engine}, blobs)
        assert error.code == "invalid_argument", (op, engine, error)


def test_an_image_under_the_default_pixel_limit_is_read(client: Client):
    """Default max_image_megapixels is 200: a 90 MP image (a 1-bit A0 scan at 300 dpi is
    117 MP) is under it and must be read, not refused as too_large."""
    big = Image.new("1", (10000, 9000), 1)
    big.paste(symbol("qr").convert("1"), (100, 100))
    result = client.call("barcode", "decode",
                         {"region": {"left": 0, "top": 0, "width": 600, "height": 600}},
                         blobs=[encode(big)], timeout=READ_TIMEOUT)
    assert [b["text"] for b in only_page(result)] == [KINDS["qr"].text]


@pytest.fixture(scope="module")
def small_limit_service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("limits"),
                  extra_ini="[limits]\nmax_image_megapixels = 1\n")
    svc.start()
    yield svc
    svc.stop()


def test_an_image_over_the_pixel_limit_is_too_large(small_limit_service: Service):
    with small_limit_service.client() as client:
        for image in (Image.new("L", (2000, 1000), 255), Image.new("1", (1001, 1000), 1)):
            error = error_of(client, "decode", {}, [encode(image)])
            assert error.code == "too_large", (image.size, error)
        # exactly at the limit is fine, and read
        at_limit = Image.new("L", (1000, 1000), 255)
        at_limit.paste(symbol("code128"), (100, 100))
        result = client.call("barcode", "decode", {}, blobs=[encode(at_limit)],
                             timeout=READ_TIMEOUT)
        assert [b["text"] for b in only_page(result)] == [KINDS["code128"].text]


# --- 5. the ini's engine


def small_page() -> tuple[bytes, dict[str, Box]]:
    page, boxes = compose({"qr": (symbol("qr"), (100, 100)),
                           "code128": (symbol("code128"), (100, 600)),
                           "micro_qr": (symbol("micro_qr"), (800, 100))}, size=(1200, 900))
    return encode(page), boxes


def test_the_default_engine_is_zxing(client: Client):
    data, boxes = small_page()
    session = new_session(client)
    add(client, session, data)
    result = read(client, {"session": session})
    assert result["engine"] == "zxing"
    assert sorted(b["format"] for b in only_page(result)) == ["code128", "micro_qr", "qr"]
    assert {b["engine"] for b in only_page(result)} == {"zxing"}


@pytest.fixture(scope="module")
def zbar_service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("zbar"), extra_ini="[barcode]\nengine = zbar\n")
    svc.start()
    yield svc
    svc.stop()


def test_engine_zbar_in_the_ini_makes_zbar_the_default(zbar_service: Service):
    data, boxes = small_page()
    with zbar_service.client() as client:
        session = new_session(client)
        add(client, session, data)
        for result in (read(client, {"session": session}),
                       client.call("barcode", "decode", {}, blobs=[data],
                                   timeout=READ_TIMEOUT)):
            assert result["engine"] == "zbar"
            found = only_page(result)
            check_page(found, {n: (n, KINDS[n].text, boxes[n]) for n in ("qr", "code128")},
                       "zbar")
        # zbar's formats are the default's; asking for zxing's own still says so
        error = error_of(client, "read", {"session": session, "formats": ["micro_qr"]})
        assert error.code == "invalid_argument" and "zxing" in error.message
        # a request can still choose zxing
        result = read(client, {"session": session, "engine": "zxing"})
        assert result["engine"] == "zxing"
        check_page(only_page(result), {n: (n, KINDS[n].text, boxes[n])
                                       for n in ("qr", "code128", "micro_qr")}, "zxing")
