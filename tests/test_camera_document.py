"""Document mode of the camera (actors/camera/document.py): pure pixel math, no service.

Each test builds a synthetic photo: a white A4 page with a black square of a different size
near each corner and a few text lines, warped by a known perspective onto a darker, noisy
desk, with a shadow gradient and slight blur, JPEG-encoded. The page's corners in the frame
are known exactly, and the corner squares tell whether the straightened page comes out
upright and not mirrored.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from actors.camera import document as doc
from broker.protocol import Error

PAGE_W, PAGE_H = 600, 848  # A4 ratio
INSET = 40  # page pixels between a page corner and its marker square
MARKERS = {"tl": 40, "tr": 56, "br": 72, "bl": 88}  # side of each corner's square, page px
A4 = 297 / 210
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def page_image() -> np.ndarray:
    """The flat page (BGR): markers in the corners, text lines in the middle."""
    page = Image.new("RGB", (PAGE_W, PAGE_H), (238, 238, 232))
    draw = ImageDraw.Draw(page)
    for name, side in MARKERS.items():
        x = INSET if name in ("tl", "bl") else PAGE_W - INSET - side
        y = INSET if name in ("tl", "tr") else PAGE_H - INSET - side
        draw.rectangle([x, y, x + side - 1, y + side - 1], fill=(10, 10, 10))
    font = ImageFont.truetype(FONT, 22)
    for line in range(12):
        draw.text((150, 200 + line * 38), f"Line {line + 1}: the quick brown fox", font=font,
                  fill=(30, 30, 30))
    return cv2.cvtColor(np.asarray(page), cv2.COLOR_RGB2BGR)


def quad(centre, width, height, angle=0.0, skew=0.0) -> np.ndarray:
    """A page outline (TL, TR, BR, BL) around ``centre``, turned ``angle`` degrees clockwise.

    ``skew`` narrows the top edge by that fraction, as when the camera looks at the page from
    below its bottom edge.
    """
    half_top, half_bottom, half_h = width / 2 * (1 - skew), width / 2, height / 2
    points = np.float32([[-half_top, -half_h], [half_top, -half_h],
                         [half_bottom, half_h], [-half_bottom, half_h]])
    turn = np.deg2rad(angle)
    rotation = np.float32([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return (points @ rotation.T + np.float32(centre)).astype(np.float32)


def photo(corners: np.ndarray, size=(1280, 720), seed=1, shadow=True,
          desk_colour=(70, 85, 100)) -> bytes:
    """A JPEG of the page warped onto ``corners`` in a frame of ``size`` (w, h)."""
    width, height = size
    rng = np.random.default_rng(seed)
    desk = np.full((height, width, 3), desk_colour, np.float32)  # brownish, darker
    desk += cv2.GaussianBlur(rng.normal(0, 25, (height, width, 1)).astype(np.float32),
                             (0, 0), 3)[..., None]  # wood-like blotches
    source = np.float32([[0, 0], [PAGE_W, 0], [PAGE_W, PAGE_H], [0, PAGE_H]])
    matrix = cv2.getPerspectiveTransform(source, corners)
    page = cv2.warpPerspective(page_image(), matrix, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((PAGE_H, PAGE_W), np.float32), matrix, size)[..., None]
    frame = desk * (1 - mask) + page.astype(np.float32) * mask
    if shadow:  # light falls from the top left; a hand's shadow across the right side
        x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
        y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        frame *= 1.0 - 0.45 * np.clip((x - 0.35) * 1.6, 0, 1) - 0.1 * y
    frame = cv2.GaussianBlur(frame, (0, 0), 1.2)  # slight focus blur
    frame += rng.normal(0, 4, frame.shape).astype(np.float32)
    frame = np.clip(frame, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 88])
    assert ok
    return data.tobytes()


def check_page(data: bytes, corners: np.ndarray, tolerance=8.0) -> dict:
    """Run document mode on a photo and assert the page came out right; returns the info."""
    out, info = doc.document(data)
    assert info["found"] is True
    found = np.float32(info["corners"])
    distances = np.linalg.norm(found - corners, axis=1)
    assert distances.max() <= tolerance, f"corners {found.tolist()} vs {corners.tolist()}"
    page = cv2.imdecode(np.frombuffer(out, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert page.shape == (info["height"], info["width"])
    assert info["height"] / info["width"] == pytest.approx(A4, rel=0.05)
    check_markers(page)
    return info


def check_markers(page: np.ndarray) -> None:
    """Each corner of the output holds its own marker: right size, near that corner."""
    height, width = page.shape
    scale = (width / PAGE_W + height / PAGE_H) / 2
    dark = page < 80
    box_w, box_h = int(width * 0.3), int(height * 0.25)
    for name, side in MARKERS.items():
        x0 = 0 if name in ("tl", "bl") else width - box_w
        y0 = 0 if name in ("tl", "tr") else height - box_h
        region = dark[y0:y0 + box_h, x0:x0 + box_w]
        ys, xs = np.nonzero(region)
        assert len(xs), f"no marker at {name}"
        area = len(xs) / scale**2
        assert area == pytest.approx(side * side, rel=0.25), f"wrong marker at {name}"
        centre_x = (x0 + xs.mean()) / scale
        centre_y = (y0 + ys.mean()) / scale
        expect_x = INSET + side / 2 if name in ("tl", "bl") else PAGE_W - INSET - side / 2
        expect_y = INSET + side / 2 if name in ("tl", "tr") else PAGE_H - INSET - side / 2
        assert abs(centre_x - expect_x) < 15 and abs(centre_y - expect_y) < 15, name


def test_skewed_page_on_a_desk_with_a_shadow():
    corners = quad((640, 370), 440, 620, angle=4, skew=0.12)
    check_page(photo(corners), corners)


def test_page_turned_the_other_way_and_lighter_frame():
    corners = quad((600, 360), 430, 600, angle=-6, skew=0.08)
    check_page(photo(corners, seed=2, shadow=False), corners)


def test_page_tilted_20_degrees():
    corners = quad((640, 360), 380, 537, angle=20)
    check_page(photo(corners, seed=3), corners)


def test_page_filling_almost_the_whole_frame():
    corners = quad((360, 500), 690, 975, angle=0.5)  # about 12 px of desk at the sides
    info = check_page(photo(corners, size=(720, 1000), seed=4), corners)
    assert info["width"] >= 680


def test_page_on_a_light_grey_desk():
    corners = quad((640, 370), 440, 620, angle=-3, skew=0.1)
    check_page(photo(corners, seed=8, shadow=False, desk_colour=(210, 210, 205)), corners)


def test_full_hd_frame():
    corners = quad((960, 540), 660, 930, angle=3, skew=0.1)
    check_page(photo(corners, size=(1920, 1080), seed=5), corners, tolerance=10)


@pytest.mark.parametrize("kind", ["uniform", "noise"])
def test_frame_without_a_page_comes_back_unchanged(kind):
    rng = np.random.default_rng(6)
    if kind == "uniform":
        frame = np.full((720, 1280, 3), 120, np.uint8)
    else:
        frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", frame)[1].tobytes()
    out, info = doc.document(data)
    assert out is data
    assert info == {"found": False, "corners": None, "width": 1280, "height": 720}


def test_desk_without_a_page_is_not_a_page():
    data = photo(quad((-5000, -5000), 10, 10), seed=7)  # the page is far outside the frame
    out, info = doc.document(data)
    assert info["found"] is False and out is data


@pytest.mark.parametrize("data", [b"", b"not a jpeg at all", b"\xff\xd8\xff\xe0" + b"\0" * 64])
def test_corrupt_bytes_are_invalid_image(data):
    with pytest.raises(Error) as caught:
        doc.document(data)
    assert caught.value.code == "invalid_image"


def test_corner_order_starts_at_the_top_edge():
    turned = np.float32([[100, 0], [200, 100], [100, 200], [0, 100]])  # a diamond, 45 degrees
    shuffled = turned[[2, 0, 3, 1]]
    ordered = doc.order_corners(shuffled)
    assert ordered.tolist() in (turned.tolist(), np.roll(turned, 1, axis=0).tolist())
    square = np.float32([[10, 12], [300, 20], [290, 400], [5, 390]])
    assert doc.order_corners(square[[3, 1, 0, 2]]).tolist() == square.tolist()


def test_straighten_keeps_size_of_the_longer_edges():
    image = np.zeros((500, 500, 3), np.uint8)
    out = doc.straighten(image, np.float32([[100, 100], [300, 100], [320, 400], [80, 400]]))
    assert out.shape == (301, 240, 3)


def test_speed_of_a_720p_frame():
    corners = quad((640, 370), 440, 620, angle=4, skew=0.12)
    data = photo(corners)
    doc.document(data)  # warm up
    started = time.perf_counter()
    for _ in range(5):
        doc.document(data)
    per_frame = (time.perf_counter() - started) / 5
    assert per_frame < 0.25, f"{per_frame * 1000:.0f} ms per frame"
