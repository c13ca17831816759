"""The buffer's pages: edits checked on pixels, undo, outputs, raw adds, order, tags,
blank detection and sessions.

Runs the real ``Buffer`` object in this process (SQLite and files in a temp home) through
the ``buffer`` fixture; every result is decoded with Pillow and checked on its pixels.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont, ImageOps, ImageStat

from actors.buffer import imaging
from broker.protocol import Error
from tests.support.buffer import encoded, page

W, H = 400, 300  # the default test page; its black marker is in the top-left corner
RESAMPLES = ["nearest", "box", "bilinear", "hamming", "bicubic", "lanczos"]


# --- helpers

def add_png(lb, image: Image.Image, session: str | None = None, **kwargs) -> str:
    return lb.b.add(session or lb.session, [encoded(image, "PNG")], **kwargs)["id"]


def add_raw(lb, image: Image.Image, **kwargs) -> str:
    """Add ``image`` as raw pixels (its own mode; Pillow's "1" packing is the raw "1")."""
    return lb.b.add(lb.session, [image.tobytes()], format="raw", width=image.width,
                    height=image.height, mode=image.mode, **kwargs)["id"]


def edit(lb, image: str, *ops: dict) -> dict:
    return lb.b.edit(lb.session, list(ops), image=image)[0]


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def pixels(lb, image: str, session: str | None = None) -> Image.Image:
    """The page's current pixels (as PNG, which keeps every mode the buffer stores)."""
    return decode(lb.b.get(session or lb.session, image, format="png").blobs[0])


def dark_corners(image: Image.Image) -> set[str]:
    w, h, m = image.width, image.height, 3
    points = {"top-left": (m, m), "top-right": (w - 1 - m, m),
              "bottom-left": (m, h - 1 - m), "bottom-right": (w - 1 - m, h - 1 - m)}
    grey = image.convert("L")
    return {name for name, xy in points.items() if grey.getpixel(xy) < 64}


def textured(width: int = W, height: int = H) -> Image.Image:
    """An RGB image whose every pixel differs from its neighbours (to compare crops)."""
    ramp = Image.linear_gradient("L")
    return Image.merge("RGB", (ramp.resize((width, height)),
                               ramp.transpose(Image.Transpose.ROTATE_90).resize((width, height)),
                               Image.radial_gradient("L").resize((width, height))))


def text_page(width: int = 600, height: int = 400) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).text((40, 180), "The quick brown fox jumps over the lazy dog",
                               fill="black", font=ImageFont.load_default(size=24))
    return image


def code_of(call, *args, **kwargs) -> str:
    with pytest.raises(Error) as caught:
        call(*args, **kwargs)
    return caught.value.code


def page_files(lb) -> set[Path]:
    return {p for p in (lb.home / "cache" / "buffer" / "files").glob("*/*") if p.is_file()}


def stored_path(lb, image: str, session: str | None = None) -> Path:
    return Path(lb.b.locate(session or lb.session, image)["path"])


def order(lb) -> list[str]:
    return [info["id"] for info in lb.b.list_images(lb.session)]


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


# --- order, tags, delete

def test_list_is_in_add_order_and_index_inserts(buffer):
    a = add_png(buffer, page(40, 30))
    b = add_png(buffer, page(40, 30))
    c = buffer.b.add(buffer.session, [encoded(page(40, 30), "PNG")], index=1)
    assert c["index"] == 1
    listed = buffer.b.list_images(buffer.session)
    assert [(i["id"], i["index"]) for i in listed] == [(a, 0), (c["id"], 1), (b, 2)]


def test_move_and_reorder(buffer):
    a, b, c = (add_png(buffer, page(40, 30)) for _ in range(3))
    assert buffer.b.move(buffer.session, [c], 0) == [c, a, b] == order(buffer)
    assert buffer.b.move(buffer.session, [c, a], 1) == [b, c, a] == order(buffer)
    assert buffer.b.reorder(buffer.session, [a, b, c]) == [a, b, c] == order(buffer)
    assert [i["index"] for i in buffer.b.list_images(buffer.session)] == [0, 1, 2]


def test_reorder_needs_every_id_exactly_once(buffer):
    a, b, c = ids = [add_png(buffer, page(40, 30)) for _ in range(3)]
    for wrong in [[a, b], [a, b, b], [a, b, c, c], [c, b, "x"]]:
        assert code_of(buffer.b.reorder, buffer.session, wrong) == "invalid_argument"
    assert order(buffer) == ids


def test_tags_add_remove_and_filter(buffer):
    a, b, c = (add_png(buffer, page(40, 30)) for _ in range(3))
    buffer.b.tag(buffer.session, [a, b], add=["invoice"])
    buffer.b.tag(buffer.session, [b, c], add=["2024", "draft"])
    [info] = buffer.b.tag(buffer.session, [b], remove=["draft"])
    assert info["tags"] == ["invoice", "2024"]

    def ids(tags, match):
        return [i["id"] for i in buffer.b.list_images(buffer.session, tags=tags, match=match)]

    assert ids(["invoice", "2024"], "any") == [a, b, c]
    assert ids(["invoice", "2024"], "all") == [b]
    assert ids(["draft"], "any") == [c]
    assert ids(["nothing"], "any") == []
    assert code_of(buffer.b.list_images, buffer.session, tags=["x"],
                   match="some") == "invalid_argument"


def test_delete_removes_renumbers_and_drops_files(buffer):
    a, b, c = (add_png(buffer, page(40, 30)) for _ in range(3))
    first_file = stored_path(buffer, b)
    edit(buffer, b, {"op": "invert"})
    edited_file = stored_path(buffer, b)
    kept = {stored_path(buffer, a), stored_path(buffer, c)}
    assert buffer.b.delete(buffer.session, [b]) == {"deleted": [b]}
    listed = buffer.b.list_images(buffer.session)
    assert [(i["id"], i["index"]) for i in listed] == [(a, 0), (c, 1)]
    assert not first_file.exists() and not edited_file.exists()
    assert page_files(buffer) == kept
    assert code_of(buffer.b.get, buffer.session, b) == "not_found"


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


# --- sessions

def test_open_session_by_id_twice_reopens_it(buffer):
    first = buffer.b.open_session(session="scanner-42-session")
    assert (first["session"], first["new"], first["images"]) == ("scanner-42-session", True, 0)
    image = add_png(buffer, page(40, 30), session="scanner-42-session")
    again = buffer.b.open_session(session="scanner-42-session")
    assert (again["new"], again["images"]) == (False, 1)
    assert [i["id"] for i in buffer.b.list_images("scanner-42-session")] == [image]


def test_other_session_cannot_reach_the_image(buffer):
    image = add_png(buffer, page(W, H))
    other = buffer.b.open_session()["session"]
    assert code_of(buffer.b.get, other, image) == "not_found"
    assert code_of(buffer.b.edit, other, [{"op": "invert"}], image=image) == "not_found"
    assert code_of(buffer.b.delete, other, [image]) == "not_found"
    assert buffer.b.list_images(other) == []
    assert dark_corners(pixels(buffer, image)) == {"top-left"}


def test_close_session_removes_its_images_and_files(buffer):
    other = buffer.b.open_session()["session"]
    kept = add_png(buffer, page(40, 30), session=other)
    image = add_png(buffer, page(W, H))
    edit(buffer, image, {"op": "flip"})
    assert buffer.b.close_session(buffer.session) == {"session": buffer.session, "removed": 1}
    assert page_files(buffer) == {stored_path(buffer, kept, other)}
    assert code_of(buffer.b.list_images, buffer.session) == "not_found"


def test_idle_session_expires_at_the_next_tick(buffer):
    buffer.ini("[buffer]\nsession_expiry = 1\n")
    session = buffer.b.open_session()["session"]
    add_png(buffer, page(W, H), session=session)
    buffer.b.on_tick()
    assert buffer.b.session(session)["images"] == 1
    time.sleep(1.2)
    buffer.b.on_tick()
    assert code_of(buffer.b.session, session) == "not_found"
    assert page_files(buffer) == set()


def test_session_in_use_does_not_expire(buffer):
    buffer.ini("[buffer]\nsession_expiry = 1\n")
    session = buffer.b.open_session()["session"]
    image = add_png(buffer, page(W, H), session=session)
    for _ in range(3):  # used every 0.6 s: never idle for the 1 s expiry
        time.sleep(0.6)
        buffer.b.get(session, image)
        buffer.b.on_tick()
    assert buffer.b.session(session)["images"] == 1


def test_restart_keeps_sessions_images_and_history(buffer):
    data = encoded(page(W, H), "JPEG", quality=90)
    image = buffer.b.add(buffer.session, [data])["id"]
    edit(buffer, image, {"op": "rotate", "angle": 90})
    buffer.restart()
    assert buffer.session in [s["session"] for s in buffer.b.sessions()]
    info = buffer.b.info(buffer.session, image)
    assert (info["width"], info["height"], info["edits"]) == (H, W, 1)
    assert dark_corners(pixels(buffer, image)) == {"top-right"}
    buffer.b.undo(buffer.session, image)
    assert buffer.b.get(buffer.session, image).blobs[0] == data


# --- retried adds

def test_add_with_the_same_key_returns_the_first_page(buffer):
    first = buffer.b.add(buffer.session, [encoded(page(W, H), "PNG")], key="scan-7")
    files = page_files(buffer)
    again = buffer.b.add(buffer.session, [encoded(page(40, 30), "PNG")], key="scan-7")
    assert not first.get("duplicate")
    assert (again["id"], again["duplicate"], again["width"]) == (first["id"], True, W)
    assert order(buffer) == [first["id"]]
    assert page_files(buffer) == files


# --- staged adds (a scanner's pipeline: stage in parallel, commit in scan order)

def raw_page(width: int, height: int, shade: int) -> dict:
    return {"blobs": [bytes([shade]) * (width * height)], "format": "raw", "width": width,
            "height": height, "mode": "L", "dpi": [150, 150]}


def test_staged_pages_are_listed_in_commit_order_not_stage_order(buffer):
    tokens = [buffer.b.stage(buffer.session, **raw_page(W, H, shade))["stage"]
              for shade in (10, 20, 30)]
    assert buffer.b.list_images(buffer.session) == []  # durable, but not listed yet
    assert len(page_files(buffer)) == 3

    ids = [buffer.b.commit(buffer.session, token, key=f"job:{number}")["id"]
           for number, token in ((1, tokens[2]), (2, tokens[0]), (3, tokens[1]))]

    assert order(buffer) == ids
    assert [pixels(buffer, image).getpixel((0, 0)) for image in ids] == [30, 10, 20]


def test_a_commit_of_a_lost_stage_says_so_and_a_known_key_drops_the_new_file(buffer):
    first = buffer.b.commit(buffer.session, buffer.b.stage(
        buffer.session, **raw_page(W, H, 50))["stage"], key="job:1")
    token = buffer.b.stage(buffer.session, **raw_page(W, H, 60))["stage"]
    files = page_files(buffer)

    again = buffer.b.commit(buffer.session, token, key="job:1")  # a retried commit

    assert (again["id"], again["duplicate"]) == (first["id"], True)
    assert len(page_files(buffer)) == len(files) - 1
    with pytest.raises(Error) as caught:
        buffer.b.commit(buffer.session, token)
    assert caught.value.code == "not_found" and caught.value.details["stage_lost"]


def test_pages_staged_before_a_restart_are_removed_and_their_commit_fails(buffer):
    token = buffer.b.stage(buffer.session, **raw_page(W, H, 70))["stage"]
    assert len(page_files(buffer)) == 1

    buffer.restart()

    assert page_files(buffer) == set()  # recover() removed the unlisted file
    with pytest.raises(Error) as caught:
        buffer.b.commit(buffer.session, token)
    assert caught.value.details["stage_lost"]
