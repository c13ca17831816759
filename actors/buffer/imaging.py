"""Pixels: decoding with limits, the edit operations, encodings and blank-page detection.

Everything here works on Pillow images and raises ``Error`` with a stable code for bad
input. Nothing here touches the disk or the index (that is ``store``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

from PIL import Image, ImageChops, ImageColor, ImageEnhance, ImageOps

from broker.protocol import Error
from common.images import (ACCEPTED, KEPT_AS_IS, check_pixels, load_checked,  # noqa: F401
                           open_checked)

OUTPUT = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG", "tiff": "TIFF", "tif": "TIFF",
          "bmp": "BMP", "gif": "GIF"}
EXTENSION = {"JPEG": "jpg", "PNG": "png", "TIFF": "tif", "BMP": "bmp", "GIF": "gif"}
MEDIA_TYPE = {"JPEG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff",
              "BMP": "image/bmp", "GIF": "image/gif"}

# Raw pixel layouts a device may send: name -> (Pillow mode, Pillow raw mode, bits/pixel).
RAW_LAYOUTS = {
    "1": ("1", "1", 1),  # packed bits, 1 = white (Pillow's convention)
    "1;I": ("1", "1;I", 1),  # packed bits, 1 = black (SANE line-art)
    "L": ("L", "L", 8),
    "RGB": ("RGB", "RGB", 24),
    "I;16": ("I;16", "I;16", 16),  # 16-bit grey, little endian
    "I;16B": ("I;16", "I;16B", 16),
}

RESAMPLING = {"nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX,
              "bilinear": Image.Resampling.BILINEAR, "hamming": Image.Resampling.HAMMING,
              "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS}


def describe_mode(mode: str) -> tuple[str, int]:
    """Pillow mode -> (``bw``|``gray``|``color``, bits per pixel)."""
    return {"1": ("bw", 1), "L": ("gray", 8), "LA": ("gray", 16), "I;16": ("gray", 16),
            "I": ("gray", 32), "F": ("gray", 32), "P": ("color", 8), "RGB": ("color", 24),
            "RGBA": ("color", 32), "CMYK": ("color", 32),
            "YCbCr": ("color", 24)}.get(mode, ("color", 24))


def memory_size(image: Image.Image) -> int:
    """Bytes Pillow holds for the decoded image.

    Pillow keeps "1", "L" and "P" in a byte per pixel, 16-bit grey in two, and every
    multi-band mode (RGB included) in four.
    """
    per_pixel = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2}.get(image.mode, 4)
    return image.width * image.height * per_pixel


def frames(image: Image.Image) -> int:
    """Pages of a TIFF (walking its page directories), 1 for other formats."""
    if image.format != "TIFF":
        return 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # "Truncated File Read" is a broken file here
            return image.n_frames
    except Exception as exc:
        raise Error("invalid_image", f"the TIFF's page directory is corrupt ({exc})") from None


def upright(image: Image.Image) -> Image.Image:
    """Apply an EXIF orientation (phone photos) so pixels are the way the page looks."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:
        return image
    return ImageOps.exif_transpose(image) if orientation not in (1, None) else image


def from_raw(data: bytes, width: int, height: int, layout: str) -> Image.Image:
    if not isinstance(layout, str) or layout not in RAW_LAYOUTS:
        raise Error("invalid_argument", f"raw mode {layout!r} is not one of "
                                        f"{', '.join(RAW_LAYOUTS)}")
    mode, rawmode, bits = RAW_LAYOUTS[layout]
    stride = (width * bits + 7) // 8
    if len(data) != stride * height:
        raise Error("invalid_image", f"raw {layout} {width}x{height} needs "
                                     f"{stride * height} bytes, got {len(data)}")
    return Image.frombytes(mode, (width, height), data, "raw", rawmode, stride, 1)


def _snap(value: float) -> float:
    """PNG stores pixels per metre: 300 dpi comes back as 299.9994."""
    return float(round(value)) if abs(value - round(value)) < 0.01 else round(value, 2)


def dpi_of(image: Image.Image, default: float) -> tuple[float, float]:
    dpi = image.info.get("dpi")
    try:
        x, y = _snap(float(dpi[0])), _snap(float(dpi[1]))
        if 1 <= x <= 100000 and 1 <= y <= 100000:
            return x, y
    except (TypeError, ValueError, IndexError):
        pass
    return float(default), float(default)


# --- edit operations: each takes (image, dpi, **params) and returns (image, dpi).

def _number(params: dict, name: str, lo: float, hi: float, default: Any = None) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value) or not lo <= value <= hi:
        raise Error("invalid_argument", f"{name} must be a number in {lo:g}..{hi:g}, "
                                        f"got {value!r}")
    return value


def _fill(params: dict, image: Image.Image) -> Any:
    colour = params.get("fill", "#ffffff")
    try:
        rgb = ImageColor.getrgb(str(colour))
    except ValueError:
        raise Error("invalid_argument", f"fill {colour!r} is not a colour "
                                        "(e.g. #ffffff or white)") from None
    if image.mode in ("1", "L", "I;16", "I"):
        grey = round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
        if image.mode == "1":
            return 255 if grey >= 128 else 0
        return grey * 257 if image.mode in ("I;16", "I") else grey
    return rgb[:3] if image.mode == "RGB" else rgb


def _editable(image: Image.Image) -> Image.Image:
    """Palette images become plain colour, deep grey 8-bit, for pixel arithmetic."""
    if image.mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in DEEP:
        return to_8bit(image)
    return image


DEEP = ("I;16", "I", "F")  # grey deeper than 8 bits


def to_8bit(image: Image.Image) -> Image.Image:
    """Deep grey scaled to 8 bits (Pillow's convert("L") would clip, not scale)."""
    if image.mode == "I;16":
        return image.convert("I").point(lambda v: v / 256).convert("L")
    if image.mode in ("I", "F"):
        low, high = image.getextrema()
        span = max(1.0, float(high) - min(0.0, float(low)))
        return image.convert("F").point(lambda v: (v - min(0.0, low)) * 255 / span).convert("L")
    return image.convert("L")


def _angle(params: dict) -> float:
    return _number(params, "angle", -360, 360) % 360


def rotated_size(width: int, height: int, angle: float) -> tuple[int, int]:
    """The canvas of ``rotate(-angle, expand=True)``, by Pillow's own arithmetic.

    Known before any pixel is made: a strip 1 pixel tall turned 45 degrees needs a square
    canvas of its length squared."""
    if angle % 90 == 0:  # a transpose
        return (width, height) if angle % 180 == 0 else (height, width)
    rad = math.radians(angle)
    a, b = round(math.cos(rad), 15), round(math.sin(rad), 15)
    c = a * -width / 2 + b * -height / 2 + width / 2
    f = -b * -width / 2 + a * -height / 2 + height / 2
    corners = ((0, 0), (width, 0), (width, height), (0, height))
    xs = [a * x + b * y + c for x, y in corners]
    ys = [-b * x + a * y + f for x, y in corners]
    return (math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys)))


def rotate(image, dpi, params):
    """Clockwise by ``angle`` degrees; right angles are exact, others fill with ``fill``."""
    angle = _angle(params)
    exact = {0: None, 90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180,
             270: Image.Transpose.ROTATE_90}
    if angle in exact:
        if exact[angle] is None:
            return image, dpi
        swap = angle != 180
        return image.transpose(exact[angle]), (dpi[1], dpi[0]) if swap else dpi
    if image.mode == "P":
        image = _editable(image)
    resample = Image.Resampling.NEAREST if image.mode == "1" else Image.Resampling.BICUBIC
    return image.rotate(-angle, resample=resample, expand=True,
                        fillcolor=_fill(params, image)), dpi


def flip(image, dpi, params):
    """Upside down (top <-> bottom)."""
    return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), dpi


def mirror(image, dpi, params):
    """Left <-> right."""
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), dpi


def crop(image, dpi, params):
    """Keep the box ``left, top, right, bottom`` (pixels, right/bottom exclusive)."""
    box = [int(_number(params, key, 0, 1 << 20)) for key in ("left", "top", "right", "bottom")]
    left, top, right, bottom = box
    if not (left < right <= image.width and top < bottom <= image.height):
        raise Error("invalid_argument", f"crop box {box} is empty or outside the "
                                        f"{image.width}x{image.height} image")
    return image.crop(box), dpi


def resized_size(width: int, height: int, params: dict) -> tuple[int, int]:
    """The size ``resize`` makes of a ``width`` x ``height`` page."""
    if params.get("width") is None and params.get("height") is None:
        raise Error("invalid_argument", "resize needs width, height or both")
    w = int(_number(params, "width", 1, 65535)) if params.get("width") is not None else None
    h = int(_number(params, "height", 1, 65535)) if params.get("height") is not None else None
    return (w or max(1, round(width * h / height)), h or max(1, round(height * w / width)))


def resize(image, dpi, params):
    """To ``width`` and/or ``height`` pixels (one alone keeps the aspect); DPI follows."""
    w, h = resized_size(image.width, image.height, params)
    name = params.get("resample", "lanczos")
    if not isinstance(name, str) or name not in RESAMPLING:
        raise Error("invalid_argument", f"resample {name!r} is not one of "
                                        f"{', '.join(RESAMPLING)}")
    source = image.convert("L") if image.mode == "1" and name != "nearest" else image
    resized = source.resize((w, h), RESAMPLING[name])
    if image.mode == "1" and resized.mode != "1":
        resized = resized.point(lambda v: 255 if v >= 128 else 0).convert("1")
    return resized, (dpi[0] * w / image.width, dpi[1] * h / image.height)


def bitdepth(image, dpi, params):
    """To ``mode`` bw (with ``threshold`` 0..255, or ``dither``), gray or color."""
    mode = params.get("mode")
    if mode == "color":
        return image.convert("RGB"), dpi
    grey = _editable(image)
    grey = grey if grey.mode == "L" else grey.convert("L")
    if mode == "gray":
        return grey, dpi
    if mode == "bw":
        if params.get("dither"):
            return grey.convert("1", dither=Image.Dither.FLOYDSTEINBERG), dpi
        threshold = _number(params, "threshold", 0, 255, 128)
        return grey.point(lambda v: 255 if v >= threshold else 0, mode="1"), dpi
    raise Error("invalid_argument", f"bitdepth mode {mode!r} is not one of bw, gray, color")


def _enhance(image: Image.Image, enhancer: Callable, value: float) -> Image.Image:
    mode = image.mode
    work = _editable(image)
    if work.mode not in ("L", "RGB", "RGBA"):
        work = work.convert("L" if describe_mode(mode)[0] != "color" else "RGB")
    result = enhancer(work).enhance(1 + value / 100)
    return result.convert("1") if mode == "1" else result


def brightness(image, dpi, params):
    """``value`` -100 (black) .. 0 (unchanged) .. 100 (twice as bright)."""
    return _enhance(image, ImageEnhance.Brightness, _number(params, "value", -100, 100)), dpi


def contrast(image, dpi, params):
    """``value`` -100 (flat grey) .. 0 (unchanged) .. 100 (twice the contrast)."""
    return _enhance(image, ImageEnhance.Contrast, _number(params, "value", -100, 100)), dpi


def invert(image, dpi, params):
    """Negative: black <-> white."""
    if image.mode == "1":
        return ImageChops.invert(image), dpi
    work = _editable(image)
    if work.mode == "RGBA":
        r, g, b, a = work.split()
        return Image.merge("RGBA", (*ImageOps.invert(Image.merge("RGB", (r, g, b))).split(),
                                    a)), dpi
    if work.mode not in ("L", "RGB"):
        work = work.convert("L" if describe_mode(work.mode)[0] != "color" else "RGB")
    return ImageOps.invert(work), dpi


def set_dpi(image, dpi, params):
    """Declare the resolution (``x`` and optional ``y``); pixels stay as they are."""
    x = _number(params, "x", 1, 100000)
    y = _number(params, "y", 1, 100000, x)
    return image, (float(x), float(y))


EDITS: dict[str, Callable] = {
    "rotate": rotate, "flip": flip, "mirror": mirror, "crop": crop, "resize": resize,
    "bitdepth": bitdepth, "brightness": brightness, "contrast": contrast, "invert": invert,
    "dpi": set_dpi,
}
PIXEL_FREE = {"dpi"}  # edits that leave the pixels alone (the stored file is reused)


def check_ops(ops: Any) -> list[dict]:
    """Validate the shape of an edit list before any work: a list of ``{op, ...}`` maps."""
    if not isinstance(ops, list) or not ops:
        raise Error("invalid_argument", "ops must be a non-empty list of {op: ...} maps")
    for op in ops:
        if not isinstance(op, dict) or not isinstance(op.get("op"), str) or (
                op["op"] not in EDITS):
            name = op.get("op") if isinstance(op, dict) else op
            raise Error("invalid_argument", f"unknown edit {name!r} (edits: "
                                            f"{', '.join(EDITS)})")
    return ops


# The size an edit makes, for those that can grow the page; the others keep its size
# or (crop) shrink it.
GROWING: dict[str, Callable[[int, int, dict], tuple[int, int]]] = {
    "resize": resized_size,
    "rotate": lambda width, height, params: rotated_size(width, height, _angle(params)),
}


def apply(image: Image.Image, dpi: tuple[float, float], ops: list[dict],
          limit: int) -> tuple[Image.Image, tuple[float, float]]:
    """Run ``ops`` in turn; one that would make more than ``limit`` pixels is refused
    before it allocates them (and with it the whole list)."""
    for op in ops:
        params = {k: v for k, v in op.items() if k != "op"}
        if op["op"] in GROWING:
            check_pixels(*GROWING[op["op"]](image.width, image.height, params), limit)
        image, dpi = EDITS[op["op"]](image, dpi, params)
    return image, (round(dpi[0], 3), round(dpi[1], 3))


# --- encodings

def fit(image: Image.Image, width: int | None, height: int | None) -> Image.Image:
    """Shrink to fit in ``width`` x ``height`` keeping the aspect (never enlarges)."""
    if not width and not height:
        return image
    box = (width or image.width, height or image.height)
    if image.width <= box[0] and image.height <= box[1]:
        return image
    scale = min(box[0] / image.width, box[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    source = image.convert("L") if image.mode == "1" else _editable(image)
    return source.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def flatten(image: Image.Image, keep: tuple[str, ...]) -> Image.Image:
    """Convert to the nearest mode the target format keeps (alpha goes onto white)."""
    if image.mode in keep:
        return image
    if image.mode in ("RGBA", "LA", "P") and "transparency" in image.info or image.mode in (
            "RGBA", "LA"):
        rgba = image.convert("RGBA")
        base = Image.new("RGB", rgba.size, "white")
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base if "RGB" in keep else base.convert("L")
    if image.mode in DEEP:
        return to_8bit(image) if "L" in keep else to_8bit(image).convert("RGB")
    return image.convert("RGB" if "RGB" in keep and describe_mode(image.mode)[0] == "color"
                         else "L" if "L" in keep else "RGB")


KEEPS = {"JPEG": ("L", "RGB", "CMYK"), "PNG": ("1", "L", "LA", "I;16", "P", "RGB", "RGBA"),
         "TIFF": ("1", "L", "I;16", "P", "RGB", "RGBA", "CMYK"), "BMP": ("1", "L", "P", "RGB"),
         "GIF": ("1", "L", "P")}


def encode(image: Image.Image, fmt: str, out: Any, dpi: tuple[float, float],
           quality: int = 85, png_level: int = 6, shared: bool = True,
           tiff_compression: str | None = None) -> None:
    """Write ``image`` as ``fmt`` (a Pillow format name) into the file object ``out``.

    ``shared=False`` says no other thread can see ``image`` yet (a page being stored)."""
    source = image
    if fmt == "GIF" and image.mode not in KEEPS["GIF"]:
        image = flatten(image, ("RGB",)).convert("P", palette=Image.Palette.ADAPTIVE)
    image = flatten(image, KEEPS[fmt])
    if image is source and shared:
        # Image.save() keeps its options on the image object: a page shared between
        # threads (the decoded cache) must not be saved by two of them at once.
        image = image.copy()
    rounded = (round(dpi[0]), round(dpi[1]))
    options: dict[str, Any] = {"dpi": rounded}
    if fmt == "JPEG":
        options.update(quality=quality, optimize=False, progressive=False)
    elif fmt == "PNG":
        options.update(compress_level=png_level)
    elif fmt == "TIFF":
        options.update(compression=tiff_compression or (
            "group4" if image.mode == "1" else "tiff_lzw"))
    image.save(out, fmt, **options)


def thumbnail_source(path: str, size: int) -> Image.Image:
    """Open a stored JPEG at a reduced scale when that is enough (much faster)."""
    image = Image.open(path)
    if image.format == "JPEG":
        image.draft("RGB" if image.mode not in ("L", "1") else "L", (size, size))
    return image


# --- blank pages

def ink_percent(image: Image.Image) -> float:
    """Percent of pixels clearly darker than the paper, ignoring a 3 % margin.

    The page is reduced to about 600 px wide first: specks of dust and scanner noise fade,
    a line of text does not.
    """
    grey = _editable(image)
    grey = flatten(grey, ("L",)) if grey.mode != "L" else grey
    if grey.width > 600:
        grey = grey.reduce(max(1, grey.width // 600))
    mx, my = int(grey.width * 0.03), int(grey.height * 0.03)
    inner = grey.crop((mx, my, grey.width - mx, grey.height - my)) if grey.width > 10 else grey
    histogram = inner.histogram()
    total = sum(histogram) or 1
    # The paper is the brightest big population; ink is 64 levels darker than it.
    running, paper = 0, 255
    for level in range(255, -1, -1):
        running += histogram[level]
        if running >= total * 0.5:
            paper = level
            break
    dark = sum(histogram[: max(0, paper - 64)])
    return round(100 * dark / total, 4)
