"""What the buffer's page tests share: adding and editing pages, reading their pixels,
test pictures, and the files and order the buffer keeps.

The tests run the real ``Buffer`` object in this process (SQLite and files in a temp home)
through the ``buffer`` fixture; every result is decoded with Pillow and checked on its pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from broker.protocol import Error

from .buffer import encoded

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
