"""POST .../documents with split_by barcode: one document per part, in a zip.

Six JPEG pages, two of them separator sheets with a QR code: parts are the pages between
separators (separators dropped, or kept as each part's first page), a pattern chooses
which codes separate, and each part's PDF holds the uploaded JPEGs byte for byte. A
pattern that would backtrack for hours in Python's ``re`` does not hold up the gateway.
"""

from __future__ import annotations

import io
import threading
import zipfile

import numpy as np
import pymupdf
import pytest
import zxingcpp
from PIL import Image, ImageDraw

from tests.support.web import Api, WebSession

pytestmark = pytest.mark.timeout(120)


def sheet(label: str, code: str | None = None) -> bytes:
    image = Image.new("L", (850, 1100), 255)  # a letter page at 100 dpi
    ImageDraw.Draw(image).text((60, 60), label, fill=0)
    if code is not None:
        symbol = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.QRCode)
        pixels = np.asarray(zxingcpp.write_barcode_to_image(symbol, scale=8))
        image.paste(Image.fromarray(pixels).convert("L"), (300, 400))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85, dpi=(100, 100))
    return out.getvalue()


PAGES = [("a", None), ("sep", "SEPARATOR"), ("b", None), ("c", None), ("other", "INVOICE-7"),
         ("d", None)]


@pytest.fixture(scope="module")
def batch(service):
    session = WebSession(Api(service))
    files = {label: sheet(label, code) for label, code in PAGES}
    ids = {label: session.upload(files[label], "image/jpeg") for label, _ in PAGES}
    yield session, files, ids
    session.request("DELETE")


def split(session: WebSession, **body) -> list[list[bytes]]:
    """Each part's page images, as the PDFs in the zip hold them."""
    answer = session.request("POST", "/documents", json={"split_by": "barcode", **body})
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/zip"
    parts = []
    with zipfile.ZipFile(io.BytesIO(answer.body)) as archive:
        names = archive.namelist()
        assert names == [f"scan-{n:03d}.pdf" for n in range(1, len(names) + 1)]
        for name in names:
            with pymupdf.open("pdf", archive.read(name)) as pdf:
                parts.append([pdf.extract_image(page.get_images()[0][0])["image"]
                              for page in pdf])
    assert answer.headers["X-Scanbridge-Parts"] == str(len(parts))
    assert answer.headers["X-Scanbridge-Pages"] == str(sum(map(len, parts)))
    return parts


def test_every_page_with_a_barcode_separates_and_is_dropped(batch):
    session, files, _ = batch
    assert split(session) == [[files["a"]], [files["b"], files["c"]], [files["d"]]]


def test_kept_separators_begin_their_parts(batch):
    session, files, _ = batch
    assert split(session, separator={"keep": True}) == [
        [files["a"]], [files["sep"], files["b"], files["c"]], [files["other"], files["d"]]]


def test_a_pattern_chooses_which_codes_separate(batch):
    session, files, _ = batch
    assert split(session, separator={"pattern": "^SEP"}) == [
        [files["a"]], [files["b"], files["c"], files["other"], files["d"]]]
    nothing = split(session, separator={"pattern": "NO-SUCH-CODE"})
    assert nothing == [[files[label] for label, _ in PAGES]]


def test_only_the_chosen_images_are_split(batch):
    session, files, ids = batch
    chosen = [ids[label] for label in ("b", "other", "d")]
    assert split(session, images=chosen) == [[files["b"]], [files["d"]]]


@pytest.mark.parametrize("body, code", [
    ({"split_by": "qr"}, "invalid_argument"),
    ({"split_by": "barcode", "format": "png"}, "invalid_argument"),
    ({"split_by": "barcode", "separator": {"pattern": "("}}, "invalid_argument"),
    ({"split_by": "barcode", "separator": {"pattern": r"(a)\1"}}, "invalid_argument"),
    ({"split_by": "barcode", "separator": {"pattern": "^(?=SEP)"}}, "invalid_argument"),
    ({"split_by": "barcode", "separator": {"keep": "yes"}}, "invalid_argument"),
    ({"split_by": "barcode", "separator": {"what": 1}}, "invalid_argument"),
    ({"split_by": "barcode", "separator": {"formats": ["nosuch"]}}, "invalid_argument"),
])
def test_bad_split_requests_are_400_with_a_code(batch, body, code):
    session, _, _ = batch
    answer = session.request("POST", "/documents", json=body)
    assert answer.status == 400, answer.body
    assert answer.json()["error"]["code"] == code


def test_a_batch_of_only_separators_is_a_conflict(batch):
    session, _, ids = batch
    answer = session.request("POST", "/documents", json={
        "split_by": "barcode", "images": [ids["sep"], ids["other"]]})
    assert answer.status == 409, answer.body
    assert answer.json()["error"]["code"] == "conflict"


STATUS_BOUND = 0.1  # seconds: the status must answer within this during any split


def test_a_backtracking_pattern_does_not_hold_up_the_gateway(service, batch):
    """``^(a+)+$`` against "a" * 40 + "!" takes Python's re about 2**40 steps."""
    session, files, ids = batch
    api = session.api
    evil = [session.upload(sheet(f"evil {n}", "a" * 40 + "!"), "image/jpeg")
            for n in range(4)]
    chosen = [ids["a"], *evil, ids["d"]]
    pid = api.get("/api/v1/status").json()["actors"]["gateway"]["pid"]
    done: list = []

    def run() -> None:
        done.append(session.request("POST", "/documents", timeout=30, json={
            "split_by": "barcode", "images": chosen, "separator": {"pattern": "^(a+)+$"}}))

    splitting = threading.Thread(target=run)
    splitting.start()
    polls = []
    try:
        while splitting.is_alive():
            answer = api.get("/api/v1/status", timeout=10)
            assert answer.status == 200, answer.body
            polls.append(answer.elapsed)
    finally:
        splitting.join(60)
    try:
        answer = done[0]
        assert answer.status == 200, answer.body  # no code matches: one part, every page
        assert answer.headers["X-Scanbridge-Parts"] == "1"
        assert answer.headers["X-Scanbridge-Pages"] == str(len(chosen))
        assert len(polls) >= 3, f"the split ended after {len(polls)} status requests"
        print(f"status during the split: {len(polls)} requests, max {max(polls):.3f} s")
        assert max(polls) < STATUS_BOUND, polls
        assert api.get("/api/v1/status").json()["actors"]["gateway"]["pid"] == pid
    finally:
        session.request("DELETE", "/images", json={"images": evil})
