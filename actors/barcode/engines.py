"""The two barcode engines behind one shape of result.

zxing-cpp is the default: it reads every format we name, in any orientation. pyzbar
(libzbar) is the alternative for sites that standardised on it; it reads the linear
formats and QR. A result is ``{format, text, raw (base64), points, engine}``, with
``points`` the four corners (x, y) in the pixels of the whole page, clockwise from the
top left of the symbol as the engine saw it.
"""

from __future__ import annotations

import base64
from typing import Any

import zxingcpp
from PIL import Image

from broker.protocol import Error
from common import images

# Our stable names -> zxing-cpp format, pyzbar symbol type (None: zbar cannot read it).
FORMATS: dict[str, tuple[Any, str | None]] = {
    "qr": (zxingcpp.BarcodeFormat.QRCode, "QRCODE"),
    "micro_qr": (zxingcpp.BarcodeFormat.MicroQRCode, None),
    "datamatrix": (zxingcpp.BarcodeFormat.DataMatrix, None),
    "pdf417": (zxingcpp.BarcodeFormat.PDF417, None),
    "aztec": (zxingcpp.BarcodeFormat.Aztec, None),
    "code128": (zxingcpp.BarcodeFormat.Code128, "CODE128"),
    "code39": (zxingcpp.BarcodeFormat.Code39, "CODE39"),
    "code93": (zxingcpp.BarcodeFormat.Code93, "CODE93"),
    "ean8": (zxingcpp.BarcodeFormat.EAN8, "EAN8"),
    "ean13": (zxingcpp.BarcodeFormat.EAN13, "EAN13"),
    "upca": (zxingcpp.BarcodeFormat.UPCA, "UPCA"),
    "upce": (zxingcpp.BarcodeFormat.UPCE, "UPCE"),
    "itf": (zxingcpp.BarcodeFormat.ITF, "I25"),
    "codabar": (zxingcpp.BarcodeFormat.Codabar, "CODABAR"),
}
ENGINES = ("zxing", "zbar")
_BY_ZXING = {str(fmt): name for name, (fmt, _) in FORMATS.items()}
_BY_ZBAR = {kind: name for name, (_, kind) in FORMATS.items() if kind}


def check_formats(formats: Any, engine: str) -> list[str]:
    """The asked formats (all the engine reads when none); unknown → invalid_argument."""
    readable = [n for n, (_, zbar) in FORMATS.items() if engine == "zxing" or zbar]
    if formats is None:
        return readable
    if not isinstance(formats, list) or not formats or \
            not all(isinstance(f, str) for f in formats):
        raise Error("invalid_argument", "formats must be a non-empty list of format names")
    plain = {name.replace("_", ""): name for name in FORMATS}  # EAN-13, micro-qr, ...
    names = [plain.get(f.lower().replace("-", "").replace("_", "").replace(" ", ""), f)
             for f in formats]
    unknown = [f for f in names if f not in FORMATS]
    if unknown:
        raise Error("invalid_argument", f"unknown barcode formats: {', '.join(unknown)} "
                                        f"(known: {', '.join(FORMATS)})")
    unreadable = [f for f in names if f not in readable]
    if unreadable:
        raise Error("invalid_argument", f"the {engine} engine cannot read "
                                        f"{', '.join(unreadable)}; use engine zxing")
    return names


def check_region(region: Any) -> tuple[int, int, int, int] | None:
    """(left, top, width, height) of a region object; invalid_argument if it is none."""
    if region is None:
        return None
    try:
        left, top = int(region["left"]), int(region["top"])
        width, height = int(region["width"]), int(region["height"])
    except (TypeError, KeyError, ValueError):
        raise Error("invalid_argument", "region must be {left, top, width, height} in "
                                        "pixels") from None
    if width <= 0 or height <= 0 or left < 0 or top < 0:
        raise Error("invalid_argument", "region needs left, top >= 0 and width, height > 0")
    return left, top, width, height


def crop(image: Image.Image, region: Any) -> tuple[Image.Image, int, int]:
    """The image inside ``region`` {left, top, width, height} (pixels), and its offset."""
    checked = check_region(region)
    if checked is None:
        return image, 0, 0
    left, top, width, height = checked
    if left + width > image.width or top + height > image.height:
        raise Error("invalid_argument", f"region is not inside the {image.width}x"
                                        f"{image.height} image")
    return image.crop((left, top, left + width, top + height)), left, top


def read(image: Image.Image, formats: list[str], engine: str) -> list[dict]:
    gray = images.grayscale(image)
    if engine == "zbar":
        return _zbar(gray, formats)
    return _zxing(gray, formats)


def _zxing(gray: Image.Image, formats: list[str]) -> list[dict]:
    asked = set(formats)
    if "upca" in asked:  # zxing-cpp reads UPC-A through its EAN-13 reader
        asked.add("ean13")
    wanted = zxingcpp.BarcodeFormats([FORMATS[name][0] for name in asked])
    found = []
    for code in zxingcpp.read_barcodes(gray, formats=wanted):
        name, text = _BY_ZXING.get(str(code.format)), code.text
        # The printed digits, as zbar and the symbol itself give them: UPC-A is an EAN-13
        # with a leading 0 to zxing, UPC-E comes expanded to 13 digits.
        if name == "ean13" and "upca" in formats and text.startswith("0"):
            name, text = "upca", text[1:]
        elif name == "upca" and len(text) == 13 and text.startswith("0"):
            text = text[1:]
        elif name == "upce":
            text = (getattr(code, "extra", None) or {}).get("UPCE", text)
        if name is None or name not in formats:
            continue
        p = code.position
        corners = [p.top_left, p.top_right, p.bottom_right, p.bottom_left]
        found.append({"format": name, "text": text,
                      "raw": base64.b64encode(code.bytes).decode(),
                      "points": [[c.x, c.y] for c in corners], "engine": "zxing"})
    return found


def _zbar(gray: Image.Image, formats: list[str]) -> list[dict]:
    from pyzbar import pyzbar
    from pyzbar.pyzbar import ZBarSymbol
    kinds = {FORMATS[name][1] for name in formats}
    if "UPCA" in kinds:  # zbar reads UPC-A through its EAN-13 decoder
        kinds.add("EAN13")
    found = []
    for code in pyzbar.decode(gray, symbols=[getattr(ZBarSymbol, k) for k in kinds]):
        name = _BY_ZBAR.get(code.type)
        if name is None or name not in formats:
            continue
        r = code.rect
        corners = [[r.left, r.top], [r.left + r.width, r.top],
                   [r.left + r.width, r.top + r.height], [r.left, r.top + r.height]]
        found.append({"format": name, "text": code.data.decode("utf-8", "replace"),
                      "raw": base64.b64encode(code.data).decode(), "points": corners,
                      "engine": "zbar"})
    return found


def shifted(results: list[dict], left: int, top: int) -> list[dict]:
    for result in results:
        result["points"] = [[x + left, y + top] for x, y in result["points"]]
    return results
