"""The barcode actor's refusals and settings, driven over the broker: bad input (blank,
tiny and non-image pages, unknown formats, regions, images, sessions and engines, the pixel
limit of a service with ``[limits] max_image_megapixels = 1``) and the ini's engine (a
service with ``[barcode] engine = zbar``).
"""

from __future__ import annotations

import pytest
from PIL import Image

from broker.client import Client
from tests.support.barcode import (A4, Box, ENGINES, KINDS, Pages, READ_TIMEOUT, add, check_page,
                                   compose, encode, error_of, new_session, only_page, read, symbol)
from tests.support.barcode import pages, service  # fixtures
from tests.support.service import Service, started

pytestmark = pytest.mark.timeout(120)


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
    yield from started(tmp_path_factory.mktemp("limits"), "[limits]\nmax_image_megapixels = 1\n")


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
    yield from started(tmp_path_factory.mktemp("zbar"), "[barcode]\nengine = zbar\n")


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
