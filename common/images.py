"""Opening images that come from outside: type, pixel limit and corrupt files checked.

Shared by the actors that decode pages (buffer, barcode, ocr). Each sets
``Image.MAX_IMAGE_PIXELS`` to its limit at start, so Pillow's bomb check agrees with ours.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from PIL import Image, ImageFile

from broker.protocol import Error

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never half a page

# Formats kept byte for byte as they arrived (lossless, or already lossy like JPEG).
KEPT_AS_IS = {"JPEG": "jpg", "PNG": "png", "BMP": "bmp", "GIF": "gif", "TIFF": "tif"}
ACCEPTED = ", ".join(["PDF", *KEPT_AS_IS])


def check_pixels(width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise Error("invalid_image", f"the image has no pixels ({width}x{height})")
    if width * height > limit:
        raise Error("too_large", f"the image has {width}x{height} pixels "
                                 f"({width * height / 1e6:.0f} MP); the limit is "
                                 f"{limit / 1e6:.0f} MP (max_image_megapixels)")


def open_checked(data: Any, limit: int, what: str = "the file") -> Image.Image:
    """Open an encoded image (bytes or a path) lazily, checking type and size only."""
    source = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Error("too_large", f"{what} has more pixels than the limit of "
                                 f"{limit / 1e6:.0f} MP (max_image_megapixels)") from None
    except Exception:
        raise Error("invalid_image", f"{what} is not an image of a supported type "
                                     f"(accepted: {ACCEPTED})") from None
    if image.format not in KEPT_AS_IS:
        raise Error("invalid_image", f"{what} is {image.format}, which is not accepted "
                                     f"(accepted: {ACCEPTED})")
    check_pixels(image.width, image.height, limit)
    return image


def load_checked(image: Image.Image, what: str = "the image") -> Image.Image:
    """Decode all pixels now, so a truncated or corrupt file fails here and not later."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except Image.DecompressionBombWarning:
        raise Error("too_large", f"{what} has more pixels than the limit "
                                 "(max_image_megapixels)") from None
    except Exception as exc:
        raise Error("invalid_image", f"{what} is corrupt or truncated ({exc})") from None
    return image


def decode(data: Any, limit: int, what: str = "the image") -> Image.Image:
    """An encoded image (bytes or a path), fully decoded; invalid_image or too_large."""
    return load_checked(open_checked(data, limit, what), what)


def grayscale(image: Image.Image) -> Image.Image:
    """8-bit grey for recognisers; transparent areas become white paper, not black."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    return image if image.mode == "L" else image.convert("L")
