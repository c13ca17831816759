"""The barcode actor run by the whole service under supervisord, driven over the broker:
every format with both engines, several pages (order, images, formats, region, decode),
rotated pages.

zxing-cpp is the default engine and reads every format; zbar reads the linear ones and QR
and must refuse the others (``invalid_argument`` pointing to the zxing engine). The pages
and checks: tests/support/barcode.py.
"""

from __future__ import annotations

from collections import Counter

import pytest
from PIL import Image

from broker.client import Client
from tests.support.barcode import (A4, Box, ENGINES, FORMATS, KINDS, OnePage, Pages, READ_TIMEOUT,
                                   ZBAR_FORMATS, ZXING_ONLY, add, at, brief, check_page,
                                   check_symbol, compose, encode, error_of, new_session, only_page,
                                   read, rotated_box, symbol)
from tests.support.barcode import formats_page, pages, service  # fixtures

pytestmark = pytest.mark.timeout(120)


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
