"""OCR and barcode benchmark (issue 9). For now: barcode reading; OCR scaling comes with
the OCR actor.

Starts the whole service in a fresh temp home (``Service`` of the tests), puts an A4
300 dpi page (2480 x 3508, PNG) with a QR code and a Code 128 on it into a session through
``buffer.add``, then measures in the same run, alternating in short blocks:

  1. ``barcode.read`` of that page through the broker (the actor locates the stored file,
     decodes it and runs zxing-cpp) against the direct baseline in this process: Pillow
     opens the same stored file and ``zxingcpp.read_barcodes`` reads it. Mean / p50 / p95
     and the ratio of the means                                  (goal: <= 1.3 x direct)
  2. The same with the zbar engine against ``pyzbar.decode`` directly (information).

``python bench/ocr.py [--quick] [--keep]``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import zxingcpp
from PIL import Image
from pyzbar import pyzbar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.report import ms, note, out, shut_down  # noqa: E402
from bench.report import summary as report_summary  # noqa: E402
from tests.support.service import Service  # noqa: E402

BLOCK = 5  # reads per side before the other side's turn
A4_300 = (2480, 3508)


def page_with_codes() -> bytes:
    page = Image.new("L", A4_300, 255)
    for number, (text, kind) in enumerate([("https://scanbridge.example/doc/42",
                                            zxingcpp.BarcodeFormat.QRCode),
                                           ("INVOICE-2026-0042", zxingcpp.BarcodeFormat.Code128)]):
        code = zxingcpp.write_barcode_to_image(zxingcpp.create_barcode(text, kind), scale=6)
        page.paste(Image.fromarray(code), (300, 400 + number * 1400))
    out_file = io.BytesIO()
    page.save(out_file, "PNG")
    return out_file.getvalue()


def direct(path: str, engine: str) -> int:
    with Image.open(path) as image:
        gray = image.convert("L")
        if engine == "zbar":
            return len(pyzbar.decode(gray))
        return len(zxingcpp.read_barcodes(gray))


def alternate(rounds: int, through, baseline) -> tuple[list[float], list[float]]:
    via, plain = [], []
    for _ in range(rounds):
        for side, record in ((through, via), (baseline, plain)):
            for _ in range(BLOCK):
                start = time.perf_counter()
                side()
                record.append(time.perf_counter() - start)
    return via, plain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer reads (CI smoke run)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder")
    opts = parser.parse_args()
    rounds = 2 if opts.quick else 8

    work = Path(tempfile.mkdtemp(prefix="scanbridge-bench-ocr-"))
    service: Service | None = None
    summary: list[str] = []
    try:
        note(f"starting the service in {work}")
        service = Service(work / "home")
        service.start()
        with service.client() as client:
            session = client.call("buffer", "open_session", {})["session"]
            image = client.call("buffer", "add", {"session": session},
                                blobs=[page_with_codes()])["id"]
            path = client.call("buffer", "locate", {"session": session, "image": image})["path"]
            for engine in ("zxing", "zbar"):
                found = client.call("barcode", "read", {"session": session, "engine": engine})
                count = len(found["pages"][0]["barcodes"])
                if count != 2 or direct(path, engine) != 2:
                    raise RuntimeError(f"{engine}: expected the 2 codes, got {count}")
                note(f"{engine}: {rounds * BLOCK} reads each way, alternating")
                via, plain = alternate(
                    rounds,
                    lambda e=engine: client.call("barcode", "read",
                                                 {"session": session, "engine": e}),
                    lambda e=engine: direct(path, e))
                ratio = statistics.mean(via) / statistics.mean(plain)
                out(f"{engine}: barcode.read through the broker  {ms(via)}")
                out(f"{engine}: Pillow + {engine} directly       {ms(plain)}")
                goal = " (goal <= 1.3x: " + ("met)" if ratio <= 1.3 else "NOT met)") \
                    if engine == "zxing" else " (information)"
                summary.append(f"barcode read of an A4 300 dpi page, {engine}: "
                               f"{statistics.mean(via) * 1e3:.1f} ms vs "
                               f"{statistics.mean(plain) * 1e3:.1f} ms direct = "
                               f"{ratio:.2f}x{goal}")
    finally:
        shut_down(None, service, work, opts.keep)
    report_summary(summary)


if __name__ == "__main__":
    main()
