"""The invisible text of a searchable PDF, laid over pages img2pdf made.

Each recognised word is written with text render mode 3 (invisible) over its place on the
page image, stretched to the word's box, so selecting and searching in a viewer finds it
where the eye sees it. The page images stay as img2pdf wrote them (pymupdf copies their
streams as they are: JPEGs are byte for byte the stored files).

OCR reads a page upright (``rotation`` degrees clockwise from the stored image); its word
boxes are in that upright image. Here they go back onto the stored image's pixels, the
text runs the way the words do on it, and the page gets ``/Rotate`` so viewers show it
upright.
"""

from __future__ import annotations

import unicodedata
from typing import Any, BinaryIO

from broker.protocol import Error

from .importing import _pymupdf

FONT = "helv"  # a base-14 font: nothing embedded, Latin-1 text (see _latin1)
# Typography OCR returns that Latin-1 lacks: kept searchable as their plain forms.
PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'",
                       "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2013": "-",
                       "\u2014": "-", "\u2026": "...", "\u20ac": "EUR", "\u0153": "oe",
                       "\u0152": "OE", "\ufb01": "fi", "\ufb02": "fl"})


def _latin1(text: str) -> str:
    text = text.translate(PLAIN)
    if all(ord(c) < 256 for c in text):
        return text
    # Other letters lose their accents (NFKD) rather than become unreadable dots.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if ord(c) < 256 and not unicodedata.combining(c))


def check_layers(layers: Any, pages: int) -> list:
    """``[{rotation, width, height, words: [{text, box}]} | None]``, one per page."""
    if not isinstance(layers, list) or len(layers) != pages:
        raise Error("invalid_argument", f"text_layers must be a list of {pages} entries "
                                        "(null for a page without text)")
    for layer in layers:
        if layer is None:
            continue
        if (not isinstance(layer, dict) or layer.get("rotation") not in (0, 90, 180, 270)
                or not isinstance(layer.get("words"), list)
                or not all(isinstance(layer.get(k), int) and layer[k] > 0
                           for k in ("width", "height"))):
            raise Error("invalid_argument", "a text layer is {rotation: 0|90|180|270, "
                                            "width, height, words: [{text, box}]}")
        for word in layer["words"]:
            box = word.get("box") if isinstance(word, dict) else None
            if (not isinstance(word.get("text"), str) or not isinstance(box, list)
                    or len(box) != 4 or not all(isinstance(v, (int, float)) for v in box)):
                raise Error("invalid_argument", "a word is {text, box: [x0, y0, x1, y1]}")
    return layers


def _placed(box: list, rotation: int, width: int, height: int) -> tuple:
    """An upright word box on the stored image: (baseline start x, y, direction degrees,
    height across the text, length along it), all in stored-image pixels."""
    u0, v0, u1, v1 = box
    if rotation == 0:
        return u0, v1, 0, v1 - v0, u1 - u0
    if rotation == 90:  # stored image is the page turned a quarter left: text runs up
        return v1, height - u0, 90, v1 - v0, u1 - u0
    if rotation == 180:
        return width - u0, height - v1, 180, v1 - v0, u1 - u0
    return width - v1, u0, 270, v1 - v0, u1 - u0  # text runs down


def add(pdf: bytes, layers: list, out: BinaryIO) -> None:
    """Write ``pdf`` with the text of ``layers`` (one per page, None = none) to ``out``."""
    pymupdf = _pymupdf()
    font = pymupdf.Font(FONT)
    with pymupdf.open("pdf", pdf) as doc:
        for page, layer in zip(doc, layers, strict=True):
            if not layer:
                continue
            box = page.mediabox  # the stored image's extent, before any /Rotate
            width, height, rotation = layer["width"], layer["height"], layer["rotation"]
            sx, sy = box.width / width, box.height / height
            for word in layer["words"]:
                text = _latin1(word["text"].strip())
                if not text:
                    continue
                x, y, direction, across, along = _placed(word["box"], rotation, width, height)
                across_scale, along_scale = (sy, sx) if direction in (0, 180) else (sx, sy)
                size = max(1.0, across * across_scale)
                natural = font.text_length(text, size)
                stretch = along * along_scale / natural if natural > 0 else 1.0
                point = pymupdf.Point(x * sx, y * sy)
                shape = pymupdf.Matrix(stretch, 0, 0, 1, 0, 0) * pymupdf.Matrix(direction)
                # The trailing space makes extractors see word gaps even where boxes touch.
                page.insert_text(point, text + " ", fontsize=size, fontname=FONT,
                                 render_mode=3, morph=(point, shape))
            if rotation:  # from the stored pixels, so it replaces an EXIF-based /Rotate
                page.set_rotation(rotation)
        out.write(doc.tobytes(garbage=0, deflate=True))
