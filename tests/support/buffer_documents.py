"""What the buffer's document tests share: files to import (JPEG, raw, multi-page TIFF and
PDF, encrypted, bombs) and readers of what comes out (pymupdf, Pillow).
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw

from broker.protocol import Error

from .buffer import encoded, page

# --- making test files


def noise(width: int, height: int, seed: int = 1) -> Image.Image:
    """A colour image whose every pixel differs (any lossy step would show)."""
    return Image.frombytes("RGB", (width, height),
                           random.Random(seed).randbytes(width * height * 3))


def jpeg(width: int = 400, height: int = 300, colour=(200, 60, 30)) -> bytes:
    return encoded(page(width, height, background=colour), "JPEG", quality=90)


def bw_raw(width: int = 200, height: int = 100) -> tuple[bytes, Image.Image]:
    """Packed 1-bit pixels (format=raw, mode "1") and the image they make."""
    image = page(width, height, mode="1")
    ImageDraw.Draw(image).line((0, height - 1, width - 1, 0), fill=0)
    return image.tobytes(), image


def multi_tiff(frames: list[Image.Image], **options) -> bytes:
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:], **options)
    return out.getvalue()


PDF_PAGES = [(612, 792), (360, 216), (144, 288)]  # points: whole pixels at 100 and 200 dpi


def text_pdf(sizes=PDF_PAGES, **save_options) -> bytes:
    doc = pymupdf.open()
    for number, (width, height) in enumerate(sizes, 1):
        doc.new_page(width=width, height=height).insert_text((20, 40), f"Page {number}",
                                                             fontsize=8 * number)
    return doc.tobytes(**save_options)


def encrypted_pdf() -> bytes:
    return text_pdf(PDF_PAGES[:1], encryption=pymupdf.PDF_ENCRYPT_AES_256,
                    user_pw="open sesame", owner_pw="owner secret")


def many_page_pdf(count: int) -> bytes:
    """A valid PDF of ``count`` empty pages, written directly (instant even for 10,000)."""
    kids = b" ".join(b"%d 0 R" % (3 + n) for n in range(count))
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>",
               b"<< /Type /Pages /Count %d /Kids [%s] >>" % (count, kids)]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 72 72] >>"] * count
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, xref)
    return bytes(out)


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# --- reading results


def pdf_of(result) -> pymupdf.Document:
    assert len(result.blobs) == 1
    return pymupdf.open(stream=result.blobs[0], filetype="pdf")


def image_xref(doc: pymupdf.Document, number: int) -> int:
    images = doc[number].get_images(full=True)
    assert len(images) == 1, f"page {number + 1} has {len(images)} images"
    return images[0][0]


def image_filter(doc: pymupdf.Document, number: int) -> str:
    return doc.xref_get_key(image_xref(doc, number), "Filter")[1]


def extracted_pixels(doc: pymupdf.Document, number: int, mode: str) -> bytes:
    data = doc.extract_image(image_xref(doc, number))["image"]
    return Image.open(io.BytesIO(data)).convert(mode).tobytes()


def page_size(doc: pymupdf.Document, number: int) -> tuple[float, float]:
    rect = doc[number].rect
    return round(rect.width, 3), round(rect.height, 3)


def tiff_frames(data: bytes) -> list[Image.Image]:
    tiff = Image.open(io.BytesIO(data))
    assert tiff.format == "TIFF"
    frames = []
    for number in range(tiff.n_frames):
        tiff.seek(number)
        frame = tiff.copy()
        frame.info["compression"] = tiff.info.get("compression")
        frames.append(frame)
    return frames


def listed(lb) -> list[str]:
    return [info["id"] for info in lb.b.list_images(lb.session)]


def stored_files(lb) -> set[Path]:
    return {p for p in (lb.home / "cache" / "buffer" / "files").rglob("*") if p.is_file()}


def pixels_of(lb, image: str, mode: str = "RGB") -> Image.Image:
    data = lb.b.get(lb.session, image, format="png").blobs[0]
    return Image.open(io.BytesIO(data)).convert(mode)


def add(lb, data: bytes, **kwargs) -> str:
    return lb.b.add(lb.session, [data], **kwargs)["id"]


def refused(lb, data: bytes, code: str, **kwargs) -> Error:
    """Import ``data``; it must fail with ``code`` and leave the pages and files as they were."""
    before = listed(lb), stored_files(lb)
    with pytest.raises(Error) as failure:
        lb.b.import_file(lb.session, [data], **kwargs)
    assert failure.value.code == code, failure.value
    assert (listed(lb), stored_files(lb)) == before, "a refused import left something behind"
    return failure.value


@pytest.fixture
def filled(buffer):
    """The buffer with one page already in it (so "nothing added" is checked against it)."""
    add(buffer, jpeg())
    return buffer
