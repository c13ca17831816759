"""Saving pages as documents: multi-page PDF and TIFF, single images.

PDF pages are built by img2pdf, which embeds JPEG files byte for byte (DCTDecode), PNG
data without recompressing it (FlateDecode with PNG predictors) and CCITT G4 strips from
TIFF files as they are - the same no-generation-loss rule the buffer keeps. We only decide
what each page is handed over as.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable

import img2pdf
import pikepdf
from PIL import Image, ImageCms, TiffImagePlugin

from broker import __version__
from broker.protocol import Error

from . import imaging


@dataclass
class Page:
    """One page to save: its stored file and what the index says about it."""
    path: Path
    format: str  # Pillow format of the stored file
    mode: str
    dpi: tuple[float, float]
    decode: Callable[[], Image.Image]  # the pixels (from memory when cached)


def _g4_tiff(image: Image.Image, dpi: tuple[float, float]) -> bytes:
    out = io.BytesIO()
    # One strip, so img2pdf can lift the G4 data out unchanged.
    image.save(out, "TIFF", compression="group4", dpi=(round(dpi[0]), round(dpi[1])),
               strip_size=1 << 40)
    return out.getvalue()


def _pdf_input(page: Page, compression: str, quality: int) -> bytes | str:
    """What img2pdf gets for a page: the stored file itself whenever it can take it."""
    if page.format == "JPEG" and page.mode in ("L", "RGB", "CMYK"):
        return str(page.path)
    if page.mode == "1":
        return _g4_tiff(page.decode().copy(), page.dpi)  # copy: see imaging.encode
    if compression == "jpeg":
        out = io.BytesIO()
        imaging.encode(page.decode(), "JPEG", out, page.dpi, quality=quality)
        return out.getvalue()
    if page.format == "PNG" and page.mode in ("L", "RGB") and not _png_transparent(page.path):
        return str(page.path)
    out = io.BytesIO()
    imaging.encode(imaging.flatten(page.decode(), ("L", "RGB")), "PNG", out, page.dpi,
                   png_level=6)
    return out.getvalue()


def _png_transparent(path: Path) -> bool:
    """A tRNS chunk (a transparent colour); it must come before the first IDAT."""
    with open(path, "rb") as png:
        head = png.read(1 << 16)
    idat = head.find(b"IDAT")
    return b"tRNS" in (head if idat < 0 else head[:idat])


def _pdfa_metadata(pdf_bytes: bytes, out: BinaryIO) -> None:
    """PDF/A wants the document info repeated in the XMP (img2pdf writes only part)."""
    with pikepdf.open(io.BytesIO(pdf_bytes)) as pdf:
        with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
            meta.load_from_docinfo(pdf.docinfo)
        pdf.save(out, deterministic_id=True)


def srgb_profile(folder: Path) -> str:
    """An sRGB ICC profile for PDF/A's output intent (made once with LittleCMS)."""
    path = folder / "sRGB.icc"
    if not path.exists():
        data = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    return str(path)


def write_pdf(pages: list[Page], out: BinaryIO, *, title: str = "", author: str = "",
              subject: str = "", keywords: list[str] | None = None, pdfa: bool = False,
              compression: str = "auto", quality: int = 85, icc_folder: Path,
              progress: Callable[[int], None] = lambda done: None) -> None:
    if compression not in ("auto", "jpeg", "lossless"):
        raise Error("invalid_argument", "compression must be auto, jpeg or lossless")
    inputs = []
    for done, page in enumerate(pages, 1):
        inputs.append(_pdf_input(page, compression, quality))
        progress(done)
    sizes = iter(pages)

    def layout(width_px: int, height_px: int, _dpi: Any) -> tuple:
        # Our index's DPI wins over what the file says (a "dpi" edit reuses the file).
        page = next(sizes)
        width_pt = width_px * 72.0 / page.dpi[0]
        height_pt = height_px * 72.0 / page.dpi[1]
        return width_pt, height_pt, width_pt, height_pt

    options: dict[str, Any] = {
        "layout_fun": layout, "creator": f"Scanbridge {__version__}",
        "producer": f"Scanbridge {__version__} (img2pdf)", "engine": img2pdf.Engine.internal,
        "rotation": img2pdf.Rotation.ifvalid,
    }
    for key, value in (("title", title), ("author", author), ("subject", subject)):
        if value:
            options[key] = str(value)
    if keywords:
        options["keywords"] = [str(k) for k in keywords]
    if pdfa:
        options["pdfa"] = srgb_profile(icc_folder)
    first = io.BytesIO() if pdfa else out
    try:
        img2pdf.convert(*inputs, outputstream=first, **options)
    except (img2pdf.ImageOpenError, img2pdf.PdfTooLargeError, ValueError) as exc:
        raise Error("invalid_image", f"a page cannot be put into a PDF: {exc}") from None
    if pdfa:
        _pdfa_metadata(first.getvalue(), out)


TIFF_COMPRESSION = {"lzw": "tiff_lzw", "jpeg": "jpeg", "deflate": "tiff_adobe_deflate",
                    "none": "raw"}


def write_tiff(pages: list[Page], out: BinaryIO, *, compression: str = "lzw",
               quality: int = 85, progress: Callable[[int], None] = lambda done: None) -> None:
    """Multi-page TIFF: B/W pages CCITT G4, the others ``compression`` (lzw by default)."""
    if not isinstance(compression, str) or compression not in TIFF_COMPRESSION:
        raise Error("invalid_argument", f"tiff compression must be one of "
                                        f"{', '.join(TIFF_COMPRESSION)}")
    with TiffImagePlugin.AppendingTiffWriter(out) as tiff:
        for done, page in enumerate(pages, 1):
            image = page.decode().copy()  # saved below: see imaging.encode
            options: dict[str, Any] = {"dpi": (round(page.dpi[0]), round(page.dpi[1]))}
            if image.mode == "1":
                options["compression"] = "group4"
            else:
                keep = ("L", "RGB") if compression == "jpeg" else imaging.KEEPS["TIFF"]
                image = imaging.flatten(image, keep)
                options["compression"] = TIFF_COMPRESSION[compression]
                if compression == "jpeg":
                    options["quality"] = quality
            image.save(tiff, "TIFF", **options)
            tiff.newFrame()
            progress(done)
