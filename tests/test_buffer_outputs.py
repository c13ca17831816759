"""The buffer's outputs and inputs of pixels: each format and size out, thumbnails, raw
pixel layouts in, blank page detection.

Runs the real ``Buffer`` object in this process through the ``buffer`` fixture; every
result is decoded with Pillow and checked on its pixels.
"""

from __future__ import annotations

import pytest
from PIL import Image, ImageStat

from actors.buffer import imaging
from tests.support.buffer import page
from tests.support.buffer_edits import (H, W, add_png, add_raw, code_of, dark_corners, decode,
                                        page_files, pixels, text_page, textured)


# --- outputs

@pytest.mark.parametrize("fmt, pillow", [("jpeg", "JPEG"), ("png", "PNG"), ("tiff", "TIFF"),
                                         ("bmp", "BMP"), ("gif", "GIF")])
def test_get_in_each_format_decodes_to_the_page(buffer, fmt, pillow):
    image = add_png(buffer, page(W, H))
    result = buffer.b.get(buffer.session, image, format=fmt)
    shown = decode(result.blobs[0])
    assert (result.value["format"], shown.format, shown.size) == (fmt, pillow, (W, H))
    assert result.value["bytes"] == len(result.blobs[0])
    assert dark_corners(shown) == {"top-left"}


@pytest.mark.parametrize("width, height, size", [
    (200, None, (200, 150)), (200, 100, (133, 100)), (1000, 1000, (W, H))])
def test_get_fits_in_the_box_keeping_aspect_and_never_enlarges(buffer, width, height, size):
    image = add_png(buffer, page(W, H))
    result = buffer.b.get(buffer.session, image, format="jpeg", width=width, height=height)
    assert decode(result.blobs[0]).size == size


def test_get_with_bad_quality_or_format_is_refused(buffer):
    image = add_png(buffer, page(W, H))
    for kwargs in [{"quality": 0}, {"quality": 101}, {"format": "webp"}]:
        kwargs = {"format": "jpeg", **kwargs}
        assert code_of(buffer.b.get, buffer.session, image, **kwargs) == "invalid_argument"


def test_16_bit_page_output_keeps_its_grey_levels(buffer):
    mid_grey = Image.frombytes("I;16", (64, 48), (32768).to_bytes(2, "little") * 64 * 48)
    image = add_raw(buffer, mid_grey)
    shown = decode(buffer.b.get(buffer.session, image, format="jpeg").blobs[0])
    assert abs(ImageStat.Stat(shown).mean[0] - 128) < 4


def test_thumbnail_fits_is_jpeg_and_is_made_once(buffer, monkeypatch):
    image = add_png(buffer, page(W, H))
    encodings = []
    real_encode = imaging.encode
    monkeypatch.setattr(imaging, "encode",
                        lambda *a, **k: (encodings.append(a[1]), real_encode(*a, **k)))
    first = buffer.b.thumbnail(buffer.session, image, size=64)
    second = buffer.b.thumbnail(buffer.session, image, size=64)
    shown = decode(first.blobs[0])
    assert (shown.format, shown.size) == ("JPEG", (64, 48))
    assert second.blobs[0] == first.blobs[0]
    assert encodings == ["JPEG"]
    cached = list((buffer.home / "cache" / "buffer" / "derived").glob("*thumb64*"))
    assert [path.read_bytes() for path in cached] == [first.blobs[0]]


# --- raw pixels

@pytest.mark.parametrize("layout, set_bit_is_black", [("1", False), ("1;I", True)])
def test_raw_one_bit_layouts(buffer, layout, set_bit_is_black):
    # 10 pixels a row: 2 bytes a row. Row 0 sets its first bit, row 1 its second.
    data = bytes([0x80, 0x00, 0x40, 0x00])
    info = buffer.b.add(buffer.session, [data], format="raw", width=10, height=2, mode=layout)
    assert (info["mode"], info["pixel_mode"], info["width"], info["height"]) == (
        "bw", "1", 10, 2)
    shown = pixels(buffer, info["id"])
    black, white = (0, 255) if set_bit_is_black else (255, 0)
    expected = [black if (x, y) in {(0, 0), (1, 1)} else white
                for y in range(2) for x in range(10)]
    assert shown.mode == "1"
    assert [shown.getpixel((x, y)) for y in range(2) for x in range(10)] == expected


@pytest.mark.parametrize("mode", ["L", "RGB", "I;16"])
def test_raw_pages_are_stored_losslessly(buffer, mode):
    if mode == "I;16":
        source = Image.frombytes("I;16", (300, 200), bytes(range(256)) * 468 + bytes(192))
    else:
        source = textured(300, 200).convert(mode)
    image = add_raw(buffer, source, dpi=300)
    info = buffer.b.info(buffer.session, image)
    assert (info["pixel_mode"], info["width"], info["height"], info["dpi"]) == (
        mode, 300, 200, [300.0, 300.0])
    shown = pixels(buffer, image)
    assert shown.mode == mode
    assert shown.tobytes() == source.tobytes()


def test_raw_with_wrong_byte_count_is_refused(buffer):
    for size in [64 * 48 * 3 - 1, 64 * 48 * 3 + 1]:
        assert code_of(buffer.b.add, buffer.session, [bytes(size)], format="raw", width=64,
                       height=48, mode="RGB") == "invalid_image"
    assert buffer.b.list_images(buffer.session) == []
    assert page_files(buffer) == set()


# --- blank pages

def test_white_page_is_blank_and_text_page_is_not(buffer):
    white = add_png(buffer, page(600, 400, marker=False))
    text = add_png(buffer, text_page())
    found = {r["id"]: r for r in buffer.b.blank(buffer.session)}
    assert found[white]["blank"] is True and found[white]["ink"] == 0
    assert found[text]["blank"] is False and found[text]["ink"] > 0.1


def test_blank_threshold_is_respected(buffer):
    text = add_png(buffer, text_page())
    ink = buffer.b.blank(buffer.session, [text])[0]["ink"]
    assert buffer.b.blank(buffer.session, [text], threshold=ink * 2)[0]["blank"] is True
    assert buffer.b.blank(buffer.session, [text], threshold=ink / 2)[0]["blank"] is False
