"""Files from outside: JPEG, PNG, TIFF (multi-page), BMP, GIF and PDF, checked as hostile.

``pages()`` checks the whole file's shape first (type, size, page count, password) and then
yields one page at a time, so a 500-page PDF never sits decoded in memory. Every problem
is an ``Error`` (``invalid_image``, ``too_large``, ``password_required``,
``wrong_password``); the caller adds nothing unless every page came out right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from PIL import Image

from broker.protocol import Error

from . import imaging



def _pymupdf():
    """pymupdf, imported on the first PDF: it adds about 120 MB to the process."""
    import pymupdf
    pymupdf.TOOLS.mupdf_display_errors(False)  # hostile PDFs: errors come back as exceptions
    return pymupdf


@dataclass
class Limits:
    pixels: int
    file_bytes: int
    pages: int


@dataclass
class Incoming:
    """One page out of a file: either bytes to keep as they are, or decoded pixels."""
    image: Image.Image  # decoded and checked
    dpi: tuple[float, float]
    keep: bytes | None = None  # the original encoding, stored byte for byte
    format: str | None = None  # Pillow format of ``keep``
    number: int = 1  # page number in the file
    total: int = 1


def is_pdf(data: bytes) -> bool:
    return data[:1024].lstrip().startswith(b"%PDF-") or b"%PDF-" in data[:1024]


def count_pages(data: bytes, limits: Limits, password: str | None = None) -> int:
    if len(data) > limits.file_bytes:
        raise Error("too_large", f"the file has {len(data) >> 20} MB; the limit is "
                                 f"{limits.file_bytes >> 20} MB (max_import_mb)")
    if not data:
        raise Error("invalid_image", "the file is empty")
    if is_pdf(data):
        with _open_pdf(data, password, limits) as pdf:
            return pdf.page_count
    image = imaging.open_checked(data, limits.pixels)
    count = imaging.frames(image)
    if count > limits.pages:
        raise Error("too_large", f"the {image.format} file has {count} pages; the limit is "
                                 f"{limits.pages} (max_pdf_pages)")
    return count


def pages(data: bytes, limits: Limits, *, password: str | None = None, dpi: int = 200,
          default_dpi: float = 200) -> Iterator[Incoming]:
    """The pages of an image file or PDF, checked; raises before yielding on bad shape."""
    count_pages(data, limits, password)  # size, type and page count before any work
    if is_pdf(data):
        yield from _pdf_pages(data, limits, password, dpi)
        return
    image = imaging.open_checked(data, limits.pixels)
    frames = imaging.frames(image)
    if frames == 1:
        imaging.load_checked(image)
        yield Incoming(imaging.upright(image), imaging.dpi_of(image, default_dpi),
                       keep=bytes(data), format=image.format)
        return
    for number in range(frames):
        try:
            image.seek(number)
        except Exception as exc:
            raise Error("invalid_image", f"TIFF page {number + 1} of {frames} cannot be "
                                         f"read ({exc})") from None
        imaging.check_pixels(image.width, image.height, limits.pixels)
        page = imaging.load_checked(image, f"TIFF page {number + 1} of {frames}").copy()
        # A page of a multi-page TIFF is stored on its own, losslessly (see the caller).
        yield Incoming(page, imaging.dpi_of(image, default_dpi), number=number + 1,
                       total=frames)


class _open_pdf:
    def __init__(self, data: bytes, password: str | None, limits: Limits):
        try:
            self.pdf = _pymupdf().open(stream=data, filetype="pdf")
        except Exception as exc:
            raise Error("invalid_image", f"the PDF cannot be read ({exc})") from None
        try:
            if self.pdf.needs_pass:
                if not password:
                    raise Error("password_required", "the PDF is encrypted: send its password")
                if not self.pdf.authenticate(password):
                    raise Error("wrong_password", "the password does not open this PDF")
            if self.pdf.page_count < 1:
                raise Error("invalid_image", "the PDF has no pages")
            if self.pdf.page_count > limits.pages:
                raise Error("too_large", f"the PDF has {self.pdf.page_count} pages; the limit "
                                         f"is {limits.pages} (max_pdf_pages)")
        except BaseException:
            self.pdf.close()
            raise

    def __enter__(self):
        return self.pdf

    def __exit__(self, *exc) -> None:
        self.pdf.close()


def _scanned_jpeg(pdf, page, limits: Limits) -> Incoming | None:
    """A page that is nothing but one upright image filling it (a scan saved as PDF).

    The image is taken at its own resolution - a JPEG byte for byte - rather than
    rasterised: importing a PDF we saved earlier then loses nothing.
    """
    infos = page.get_image_info(xrefs=True)
    if len(infos) != 1 or infos[0]["has-mask"] or page.rotation:
        return None
    info, rect = infos[0], page.rect
    a, b, c, d, _, _ = info["transform"]
    if b or c or a <= 0 or d <= 0 or any(
            abs(u - v) > 1 for u, v in zip(info["bbox"], tuple(rect), strict=True)):
        return None
    if page.get_text("text").strip() or page.get_drawings():
        return None
    dpi = (round(info["width"] * 72 / rect.width, 3), round(info["height"] * 72 / rect.height, 3))
    imaging.check_pixels(info["width"], info["height"], limits.pixels)
    extracted = pdf.extract_image(info["xref"])
    if extracted and extracted.get("ext") == "jpeg" and not extracted.get("smask"):
        try:
            image = imaging.load_checked(imaging.open_checked(extracted["image"], limits.pixels))
        except Error:
            image = None
        if image is not None and image.mode in ("L", "RGB"):
            return Incoming(image, dpi, keep=extracted["image"], format="JPEG")
    # Any other single image (CCITT B/W, Flate colour): its own pixels, losslessly.
    pixmap = _pymupdf().Pixmap(pdf, info["xref"])
    if pixmap.alpha or pixmap.n not in (1, 3):
        return None
    image = Image.frombytes("L" if pixmap.n == 1 else "RGB", (pixmap.width, pixmap.height),
                            pixmap.samples)
    if info["bpc"] == 1 and pixmap.n == 1:
        image = image.convert("1", dither=Image.Dither.NONE)
    return Incoming(image, dpi)


def _pdf_pages(data: bytes, limits: Limits, password: str | None,
               dpi: int) -> Iterator[Incoming]:
    with _open_pdf(data, password, limits) as pdf:
        total = pdf.page_count
        for number in range(total):
            try:
                page = pdf.load_page(number)
                scanned = _scanned_jpeg(pdf, page, limits)
                if scanned is not None:
                    scanned.number, scanned.total = number + 1, total
                    yield scanned
                    continue
                rect = page.rect
                width = round(rect.width * dpi / 72)
                height = round(rect.height * dpi / 72)
                imaging.check_pixels(width, height, limits.pixels)
                pixmap = page.get_pixmap(dpi=dpi, alpha=False, colorspace=_pymupdf().csRGB)
                image = Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples)
            except Error:
                raise
            except Exception as exc:
                raise Error("invalid_image", f"PDF page {number + 1} of {total} cannot be "
                                             f"rendered ({exc})") from None
            yield Incoming(image, (float(dpi), float(dpi)), number=number + 1, total=total)


def decode_one(data: bytes, limit: int) -> Image.Image:
    """A single encoded image (from a scanner or camera), fully decoded and checked."""
    if not data:
        raise Error("invalid_image", "the image is empty")
    return imaging.load_checked(imaging.open_checked(data, limit, "the image"))
