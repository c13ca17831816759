"""The buffer's edits checked on pixels: rotate, flip, mirror, crop, resize, bit depth,
brightness, contrast, invert, dpi; a JPEG page kept as it came, its history and undo.

Runs the real ``Buffer`` object in this process (SQLite and files in a temp home) through
the ``buffer`` fixture; every result is decoded with Pillow and checked on its pixels.
"""

from __future__ import annotations

import math

import pytest
from PIL import Image, ImageOps, ImageStat

from tests.support.buffer import encoded, page
from tests.support.buffer_edits import (H, RESAMPLES, W, add_png, add_raw, code_of, dark_corners,
                                        edit, pixels, stored_path, textured)


# --- rotate, flip, mirror

@pytest.mark.parametrize("angle, size, dpi, corner", [
    (90, (H, W), [150.0, 300.0], "top-right"), (180, (W, H), [300.0, 150.0], "bottom-right"),
    (270, (H, W), [150.0, 300.0], "bottom-left")])
def test_right_angle_rotation_is_clockwise_and_swaps_size_and_dpi(buffer, angle, size, dpi,
                                                                  corner):
    image = add_raw(buffer, page(W, H), dpi=[300, 150])
    info = edit(buffer, image, {"op": "rotate", "angle": angle})
    shown = pixels(buffer, image)
    assert (info["width"], info["height"]) == shown.size == size
    assert info["dpi"] == dpi
    assert dark_corners(shown) == {corner}


def test_rotate_30_enlarges_canvas_fills_corners_and_turns_clockwise(buffer):
    image = add_png(buffer, page(W, H))
    info = edit(buffer, image, {"op": "rotate", "angle": 30, "fill": "#ff0000"})
    a = math.radians(30)
    assert abs(info["width"] - (W * math.cos(a) + H * math.sin(a))) <= 2
    assert abs(info["height"] - (W * math.sin(a) + H * math.cos(a))) <= 2
    shown = pixels(buffer, image).convert("RGB")
    w, h = shown.size
    for xy in [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)]:
        assert shown.getpixel(xy) == (255, 0, 0)
    # A point inside the marker, turned clockwise about the centre (y points down).
    x, y = 20 - W / 2, 15 - H / 2
    turned = (w / 2 + x * math.cos(a) - y * math.sin(a), h / 2 + x * math.sin(a) + y * math.cos(a))
    assert shown.convert("L").getpixel(tuple(round(v) for v in turned)) < 64


def test_rotate_fill_on_16_bit_page_is_full_scale_white(buffer):
    grey = Image.frombytes("I;16", (60, 40), (30000).to_bytes(2, "little") * 2400)
    image = add_raw(buffer, grey)
    edit(buffer, image, {"op": "rotate", "angle": 30, "fill": "white"})
    assert pixels(buffer, image).getpixel((0, 0)) == 65535


@pytest.mark.parametrize("op, corner", [("flip", "bottom-left"), ("mirror", "top-right")])
def test_flip_and_mirror_move_the_marker(buffer, op, corner):
    image = add_png(buffer, page(W, H))
    info = edit(buffer, image, {"op": op})
    shown = pixels(buffer, image)
    assert (info["width"], info["height"]) == shown.size == (W, H)
    assert dark_corners(shown) == {corner}


# --- crop and resize

def test_crop_keeps_exactly_the_box(buffer):
    source = textured()
    image = add_png(buffer, source)
    box = {"left": 10, "top": 20, "right": 110, "bottom": 70}
    info = edit(buffer, image, {"op": "crop", **box})
    shown = pixels(buffer, image)
    assert (info["width"], info["height"]) == shown.size == (100, 50)
    assert shown.tobytes() == source.crop((10, 20, 110, 70)).tobytes()


def test_crop_outside_the_image_or_empty_is_refused_and_changes_nothing(buffer):
    image = add_png(buffer, page(W, H))
    before = buffer.b.info(buffer.session, image)
    for right, bottom in [(W + 1, H), (W, H + 1), (0, H)]:
        op = {"op": "crop", "left": 0, "top": 0, "right": right, "bottom": bottom}
        assert code_of(edit, buffer, image, op) == "invalid_argument"
    assert buffer.b.info(buffer.session, image) == before
    assert pixels(buffer, image).size == (W, H)


def test_resize_to_a_width_keeps_aspect_and_dpi_follows(buffer):
    image = add_raw(buffer, page(W, H), dpi=300)
    info = edit(buffer, image, {"op": "resize", "width": 200})
    assert (info["width"], info["height"]) == pixels(buffer, image).size == (200, 150)
    assert info["dpi"] == [150.0, 150.0]


@pytest.mark.parametrize("resample", RESAMPLES)
def test_every_resample_name_works(buffer, resample):
    image = add_png(buffer, page(W, H))
    edit(buffer, image, {"op": "resize", "width": 200, "resample": resample})
    shown = pixels(buffer, image)
    assert shown.size == (200, 150)
    assert dark_corners(shown) == {"top-left"}


def test_unknown_resample_is_refused(buffer):
    image = add_png(buffer, page(W, H))
    op = {"op": "resize", "width": 200, "resample": "cubic"}
    assert code_of(edit, buffer, image, op) == "invalid_argument"
    assert buffer.b.info(buffer.session, image)["width"] == W


# --- bit depth, brightness, contrast, invert

@pytest.mark.parametrize("threshold, expected", [(128, 0), (90, 255)])
def test_bitdepth_bw_respects_the_threshold(buffer, threshold, expected):
    image = add_raw(buffer, Image.new("L", (64, 48), 100))  # grey 100
    info = edit(buffer, image, {"op": "bitdepth", "mode": "bw", "threshold": threshold})
    shown = pixels(buffer, image)
    assert (info["mode"], info["pixel_mode"], info["bit_depth"]) == ("bw", "1", 1)
    assert shown.mode == "1"
    assert shown.getextrema() == (expected, expected)


@pytest.mark.parametrize("source, mode, pixel_mode, expected", [
    (Image.new("RGB", (64, 48), (200, 100, 50)), "gray", "L", 124),
    (Image.new("L", (64, 48), 77), "color", "RGB", (77, 77, 77))])
def test_bitdepth_gray_and_color(buffer, source, mode, pixel_mode, expected):
    image = add_raw(buffer, source)
    info = edit(buffer, image, {"op": "bitdepth", "mode": mode})
    shown = pixels(buffer, image)
    assert (info["mode"], info["pixel_mode"], shown.mode) == (mode, pixel_mode, pixel_mode)
    assert shown.getpixel((10, 10)) == expected


@pytest.mark.parametrize("op, measure", [("brightness", "mean"), ("contrast", "stddev")])
def test_brightness_and_contrast_move_pixels_the_right_way(buffer, op, measure):
    source = Image.linear_gradient("L").resize((128, 128))  # 0..255 top to bottom
    image = add_raw(buffer, source)
    before = getattr(ImageStat.Stat(source), measure)[0]
    edit(buffer, image, {"op": op, "value": 50})
    assert getattr(ImageStat.Stat(pixels(buffer, image)), measure)[0] > before * 1.1
    buffer.b.undo(buffer.session, image)
    edit(buffer, image, {"op": op, "value": -50})
    assert getattr(ImageStat.Stat(pixels(buffer, image)), measure)[0] < before * 0.9


@pytest.mark.parametrize("mode", ["RGB", "L", "1"])
def test_invert_gives_the_negative_and_keeps_the_mode(buffer, mode):
    background = (10, 120, 250) if mode == "RGB" else "white"
    source = page(W, H, mode, background=background)
    image = add_raw(buffer, source)
    edit(buffer, image, {"op": "invert"})
    shown = pixels(buffer, image)
    assert shown.mode == mode
    plain = "RGB" if mode == "RGB" else "L"
    assert shown.convert(plain).tobytes() == ImageOps.invert(source.convert(plain)).tobytes()


# --- dpi

def test_dpi_edit_changes_only_the_dpi_and_reuses_the_file(buffer):
    data = encoded(page(W, H), "JPEG", quality=90, dpi=(200, 200))
    image = buffer.b.add(buffer.session, [data])["id"]
    before = buffer.b.info(buffer.session, image)
    path = stored_path(buffer, image)
    info = edit(buffer, image, {"op": "dpi", "x": 300, "y": 600})
    assert info["dpi"] == [300.0, 600.0]
    assert before["dpi"] == [200.0, 200.0]
    assert (info["bytes"], info["format"], info["width"], info["height"]) == (
        before["bytes"], "jpeg", W, H)
    assert stored_path(buffer, image) == path
    assert buffer.b.get(buffer.session, image).blobs[0] == data


def test_dpi_out_of_range_is_refused(buffer):
    image = add_png(buffer, page(W, H))
    for params in [{"x": 0}, {"x": 100001}, {"x": 300, "y": 0}, {"x": "300"}, {}]:
        assert code_of(edit, buffer, image, {"op": "dpi", **params}) == "invalid_argument"
    assert buffer.b.info(buffer.session, image)["edits"] == 0


# --- a JPEG page: kept as it came, history and undo

def test_jpeg_page_is_served_byte_for_byte(buffer):
    data = encoded(page(W, H), "JPEG", quality=90)
    info = buffer.b.add(buffer.session, [data])
    assert (info["format"], info["width"], info["height"]) == ("jpeg", W, H)
    assert buffer.b.get(buffer.session, info["id"]).blobs[0] == data
    assert buffer.b.get(buffer.session, info["id"], format="jpeg").blobs[0] == data
    assert stored_path(buffer, info["id"]).read_bytes() == data


def test_undo_gives_back_the_original_jpeg_bytes_and_drops_the_edit_file(buffer):
    data = encoded(page(W, H), "JPEG", quality=90)
    image = buffer.b.add(buffer.session, [data])["id"]
    edited = edit(buffer, image, {"op": "rotate", "angle": 90})
    assert edited["format"] == "png"
    edit_file = stored_path(buffer, image)
    restored = buffer.b.undo(buffer.session, image)
    assert (restored["format"], restored["width"], restored["edits"]) == ("jpeg", W, 0)
    assert buffer.b.get(buffer.session, image).blobs[0] == data
    assert not edit_file.exists()


def test_several_ops_in_one_edit_are_one_undo_step(buffer):
    data = encoded(page(W, H), "JPEG", quality=90)
    image = buffer.b.add(buffer.session, [data])["id"]
    ops = [{"op": "rotate", "angle": 90}, {"op": "crop", "left": 0, "top": 0, "right": 100,
                                           "bottom": 200}, {"op": "bitdepth", "mode": "gray"}]
    assert len(buffer.b.info(buffer.session, image)["history"]) == 1
    info = buffer.b.edit(buffer.session, ops, image=image)[0]
    history = buffer.b.info(buffer.session, image)["history"]
    assert (info["width"], info["height"], info["pixel_mode"], info["edits"]) == (
        100, 200, "L", 1)
    assert len(history) == 2 and history[-1]["edit"] == ops
    undone = buffer.b.undo(buffer.session, image)
    assert (undone["width"], undone["height"], undone["pixel_mode"]) == (W, H, "RGB")
    assert len(buffer.b.info(buffer.session, image)["history"]) == 1
    assert buffer.b.get(buffer.session, image).blobs[0] == data


def test_undo_without_an_edit_is_a_conflict(buffer):
    image = add_png(buffer, page(W, H))
    assert code_of(buffer.b.undo, buffer.session, image) == "conflict"
