"""The buffer's documents: saving PDF, TIFF and single images, importing files, hostile input.

Every test runs the real ``Buffer`` object (SQLite and files on disk in a temp home) and
checks the bytes that come out: PDFs are read back with pymupdf, images with Pillow.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from pathlib import Path

import pymupdf
import pytest
from PIL import Image, ImageDraw

from broker.protocol import Error
from tests.support.buffer import encoded, page

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


# --- save as PDF


def test_pdf_has_one_page_per_image_each_jpeg_embedded_byte_for_byte(buffer):
    originals = [jpeg(400, 300, (200, 60, 30)), jpeg(320, 240, (20, 160, 90)),
                 jpeg(100, 80, (0, 0, 0))]
    for data in originals:
        add(buffer, data)
    doc = pdf_of(buffer.b.save(buffer.session, format="pdf"))
    assert doc.page_count == 3
    for number, data in enumerate(originals):
        assert image_filter(doc, number) == "/DCTDecode"
        assert doc.xref_stream_raw(image_xref(doc, number)) == data


def test_pdf_embeds_a_raw_bw_page_as_ccitt_g4_without_changing_a_pixel(buffer):
    raw, image = bw_raw()
    buffer.b.add(buffer.session, [raw], format="raw", width=200, height=100, mode="1")
    doc = pdf_of(buffer.b.save(buffer.session))
    assert "CCITTFaxDecode" in image_filter(doc, 0)
    assert extracted_pixels(doc, 0, "L") == image.convert("L").tobytes()


def test_pdf_embeds_a_page_made_bw_by_an_edit_as_ccitt(buffer):
    image = add(buffer, encoded(page(300, 200, mode="L"), "PNG"))
    buffer.b.edit(buffer.session, [{"op": "bitdepth", "mode": "bw"}], image=image)
    doc = pdf_of(buffer.b.save(buffer.session))
    assert "CCITTFaxDecode" in image_filter(doc, 0)


def test_pdf_keeps_a_colour_png_page_lossless(buffer):
    original = noise(120, 80)
    add(buffer, encoded(original, "PNG"))
    doc = pdf_of(buffer.b.save(buffer.session))
    assert image_filter(doc, 0) == "/FlateDecode"
    assert extracted_pixels(doc, 0, "RGB") == original.tobytes()


def test_pdf_carries_title_author_subject_and_keywords(buffer):
    add(buffer, jpeg())
    doc = pdf_of(buffer.b.save(buffer.session, title="Invoice 42", author="Ada",
                               subject="Accounts", keywords=["paid", "2024"]))
    meta = doc.metadata
    assert (meta["title"], meta["author"], meta["subject"]) == ("Invoice 42", "Ada",
                                                                "Accounts")
    assert "paid" in meta["keywords"] and "2024" in meta["keywords"]


def test_pdfa_has_xmp_pdfaid_and_an_output_intent(buffer):
    add(buffer, jpeg())
    doc = pdf_of(buffer.b.save(buffer.session, pdfa=True))
    assert "pdfaid:part" in (doc.get_xml_metadata() or "")
    kind, intents = doc.xref_get_key(doc.pdf_catalog(), "OutputIntents")
    assert kind == "array" and "/OutputIntent" in intents


def test_pdfa_xmp_repeats_the_document_info_as_pdfa_requires(buffer):
    # ISO 19005-1 6.7.3: every Info entry must also be in the XMP with the same value.
    add(buffer, jpeg())
    doc = pdf_of(buffer.b.save(buffer.session, pdfa=True, title="Invoice 42"))
    xmp = doc.get_xml_metadata()
    assert doc.metadata["title"] == "Invoice 42"
    assert "Invoice 42" in xmp, "Info /Title is missing from the XMP (dc:title)"
    assert doc.metadata["creator"] in xmp, "Info /Creator is missing from the XMP"


def test_pdf_page_size_follows_the_stored_dpi(buffer):
    add(buffer, encoded(page(600, 300), "JPEG", dpi=(300, 300)))  # JFIF: exactly 300
    doc = pdf_of(buffer.b.save(buffer.session))
    assert page_size(doc, 0) == (144, 72)


def test_a_dpi_edit_changes_the_pdf_page_size(buffer):
    image = add(buffer, encoded(page(600, 300), "JPEG", dpi=(300, 300)))
    buffer.b.edit(buffer.session, [{"op": "dpi", "x": 150, "y": 75}], image=image)
    doc = pdf_of(buffer.b.save(buffer.session))
    assert page_size(doc, 0) == (288, 288)


def test_pdf_pages_follow_the_given_image_order(buffer):
    first = add(buffer, jpeg(400, 300))  # 144 x 108 pt at 200 dpi
    second = add(buffer, jpeg(200, 100))  # 72 x 36 pt
    doc = pdf_of(buffer.b.save(buffer.session, images=[second, first]))
    assert [page_size(doc, n) for n in range(2)] == [(72, 36), (144, 108)]


def test_pdf_order_buffer_uses_the_page_order(buffer):
    first = add(buffer, jpeg(400, 300))
    second = add(buffer, jpeg(200, 100))
    doc = pdf_of(buffer.b.save(buffer.session, images=[second, first], order="buffer"))
    assert [page_size(doc, n) for n in range(2)] == [(144, 108), (72, 36)]


def test_pdf_compression_jpeg_makes_a_png_page_dct(buffer):
    add(buffer, encoded(noise(120, 80), "PNG"))
    doc = pdf_of(buffer.b.save(buffer.session, compression="jpeg"))
    assert image_filter(doc, 0) == "/DCTDecode"


def test_pdf_with_an_unknown_compression_is_invalid_argument(buffer):
    add(buffer, jpeg())
    with pytest.raises(Error) as failure:
        buffer.b.save(buffer.session, compression="zip")
    assert failure.value.code == "invalid_argument"


def test_saving_a_session_without_images_is_a_conflict(buffer):
    with pytest.raises(Error) as failure:
        buffer.b.save(buffer.session, format="pdf")
    assert failure.value.code == "conflict"


# --- save as TIFF


def test_tiff_round_trips_every_page_with_its_size_and_pixels(buffer):
    colour = noise(120, 80)
    raw, bw = bw_raw(200, 100)
    grey = page(90, 60, mode="L", background=180)
    add(buffer, encoded(colour, "PNG"))
    buffer.b.add(buffer.session, [raw], format="raw", width=200, height=100, mode="1")
    add(buffer, encoded(grey, "PNG"))
    frames = tiff_frames(buffer.b.save(buffer.session, format="tiff").blobs[0])
    assert [frame.size for frame in frames] == [(120, 80), (200, 100), (90, 60)]
    assert frames[0].convert("RGB").tobytes() == colour.tobytes()
    assert frames[1].convert("L").tobytes() == bw.convert("L").tobytes()
    assert frames[2].convert("L").tobytes() == grey.tobytes()


def test_tiff_uses_group4_for_bw_pages_and_lzw_for_the_others(buffer):
    raw, _ = bw_raw()
    add(buffer, jpeg())
    buffer.b.add(buffer.session, [raw], format="raw", width=200, height=100, mode="1")
    frames = tiff_frames(buffer.b.save(buffer.session, format="tiff").blobs[0])
    assert [frame.info["compression"] for frame in frames] == ["tiff_lzw", "group4"]


def test_tiff_compression_jpeg_gives_jpeg_pages(buffer):
    add(buffer, encoded(noise(64, 48), "PNG"))
    result = buffer.b.save(buffer.session, format="tiff", tiff_compression="jpeg")
    assert [frame.info["compression"] for frame in tiff_frames(result.blobs[0])] == ["jpeg"]


def test_tiff_with_an_unknown_compression_is_invalid_argument(buffer):
    add(buffer, jpeg())
    with pytest.raises(Error) as failure:
        buffer.b.save(buffer.session, format="tiff", tiff_compression="zstd-ish")
    assert failure.value.code == "invalid_argument"


# --- single images and dest


@pytest.mark.parametrize("fmt, pillow", [("jpeg", "JPEG"), ("png", "PNG"), ("bmp", "BMP"),
                                         ("gif", "GIF")])
def test_single_image_formats_give_one_blob_per_image(buffer, fmt, pillow):
    add(buffer, jpeg(400, 300))
    add(buffer, encoded(page(200, 100), "PNG"))
    result = buffer.b.save(buffer.session, format=fmt)
    assert len(result.blobs) == 2 and result.value["pages"] == 2
    decoded = [Image.open(io.BytesIO(blob)) for blob in result.blobs]
    assert [image.format for image in decoded] == [pillow, pillow]
    assert [image.size for image in decoded] == [(400, 300), (200, 100)]


def test_dest_writes_the_document_under_upload(buffer):
    add(buffer, jpeg())
    result = buffer.b.save(buffer.session, dest="out/x.pdf")
    target = buffer.home / "upload" / "out" / "x.pdf"
    assert result.blobs == [] and Path(result.value["path"]) == target.resolve()
    assert pymupdf.open(target).page_count == 1


def test_dest_outside_upload_is_invalid_argument(buffer):
    add(buffer, jpeg())
    with pytest.raises(Error) as failure:
        buffer.b.save(buffer.session, dest="../x.pdf")
    assert failure.value.code == "invalid_argument"
    assert not (buffer.home / "x.pdf").exists()


def test_file_output_writes_the_document_into_cache_and_old_ones_are_removed(buffer):
    add(buffer, jpeg())
    add(buffer, jpeg(200, 100))
    result = buffer.b.save(buffer.session, format="tiff", output="file")
    path = Path(result.value["path"])
    assert result.blobs == [] and path.parent == buffer.home / "cache" / "buffer" / "out"
    assert result.value["bytes"] == path.stat().st_size
    assert len(tiff_frames(path.read_bytes())) == 2
    old = buffer.b.save(buffer.session, output="file").value["path"]
    os.utime(old, (1, 1))  # as if saved long ago
    buffer.b.on_tick()
    assert path.exists() and not Path(old).exists()


def test_file_output_of_single_images_is_invalid_argument(buffer):
    add(buffer, jpeg())
    with pytest.raises(Error) as failure:
        buffer.b.save(buffer.session, format="png", output="file")
    assert failure.value.code == "invalid_argument"


# --- import


def test_import_keeps_a_jpeg_byte_for_byte(buffer):
    data = jpeg(320, 240)
    [info] = buffer.b.import_file(buffer.session, [data])["images"]
    assert (info["format"], info["width"], info["height"]) == ("jpeg", 320, 240)
    assert buffer.b.get(buffer.session, info["id"], format=None).blobs[0] == data


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("BMP", {}), ("GIF", {}),
                                          ("TIFF", {"compression": "tiff_lzw"})])
def test_import_reads_a_single_image_file(buffer, fmt, options):
    original = page(150, 90, background=(30, 120, 220))
    data = encoded(original, fmt, **options)
    [info] = buffer.b.import_file(buffer.session, [data])["images"]
    assert (info["format"], info["width"], info["height"]) == (fmt.lower(), 150, 90)
    assert buffer.b.get(buffer.session, info["id"], format=None).blobs[0] == data
    assert pixels_of(buffer, info["id"]).tobytes() == original.tobytes()


def test_import_of_a_three_page_tiff_gives_three_images_in_order(buffer):
    frames = [noise(100 + 20 * n, 60 + 10 * n, seed=n) for n in range(3)]
    images = buffer.b.import_file(buffer.session, [multi_tiff(frames)])["images"]
    assert [(i["width"], i["height"]) for i in images] == [(100, 60), (120, 70), (140, 80)]
    assert [i["meta"] for i in images] == [{"page": n, "pages": 3} for n in (1, 2, 3)]
    assert listed(buffer) == [i["id"] for i in images]
    for info, frame in zip(images, frames, strict=True):
        assert pixels_of(buffer, info["id"]).tobytes() == frame.tobytes()


@pytest.mark.parametrize("dpi", [None, 100])
def test_import_of_a_pdf_renders_each_page_at_the_dpi(buffer, dpi):
    render = dpi or 200  # import_dpi's default
    images = buffer.b.import_file(buffer.session, [text_pdf()], dpi=dpi)["images"]
    assert [(i["width"], i["height"]) for i in images] == [
        (w * render // 72, h * render // 72) for w, h in PDF_PAGES]
    assert all(i["dpi"] == [render, render] for i in images)
    inks = [entry["ink"] for entry in buffer.b.blank(buffer.session)]
    assert all(ink > 0 for ink in inks), "a rendered page lost its text"


def test_import_of_an_encrypted_pdf_with_its_password(buffer):
    images = buffer.b.import_file(buffer.session, [encrypted_pdf()],
                                  password="open sesame")["images"]
    assert [(i["width"], i["height"]) for i in images] == [(1700, 2200)]


# --- hostile input: the right code and nothing added


def test_a_png_claiming_huge_dimensions_is_too_large(filled):
    refused(filled, png_bomb(), "too_large")


def test_an_image_over_max_image_megapixels_is_too_large(filled):
    filled.ini("[limits]\nmax_image_megapixels = 1\n")
    refused(filled, encoded(page(2000, 1000), "PNG"), "too_large")


@pytest.mark.parametrize("data", [
    pytest.param(jpeg(800, 600)[:len(jpeg(800, 600)) // 2], id="truncated-jpeg"),
    pytest.param(random.Random(7).randbytes(5000), id="random-bytes"),
    pytest.param(b"Dear scanner,\nthis is not an image.\n" * 20, id="text"),
    pytest.param(b"", id="empty"),
])
def test_a_file_that_is_no_whole_image_is_invalid_image(filled, data):
    refused(filled, data, "invalid_image")


def test_a_pdf_over_max_pdf_pages_is_too_large(filled):
    data = many_page_pdf(10_000)
    assert pymupdf.open(stream=data, filetype="pdf").page_count == 10_000
    error = refused(filled, data, "too_large")
    assert "max_pdf_pages" in error.message


def test_an_encrypted_pdf_without_password_is_password_required(filled):
    refused(filled, encrypted_pdf(), "password_required")


def test_an_encrypted_pdf_with_a_wrong_password_is_wrong_password(filled):
    refused(filled, encrypted_pdf(), "wrong_password", password="guess")


def test_a_file_over_max_import_mb_is_too_large(filled):
    filled.ini("[limits]\nmax_import_mb = 1\n")
    data = encoded(page(700, 700), "BMP")  # 1.4 MB, a valid image
    assert len(data) > 1 << 20
    error = refused(filled, data, "too_large")
    assert "max_import_mb" in error.message


def test_a_tiff_whose_last_page_data_is_cut_adds_nothing(filled):
    data = multi_tiff([page(300, 200, background=(n * 80, 90, 200)) for n in range(3)])
    error = refused(filled, data[:-100], "invalid_image")
    assert "page 3 of 3" in error.message  # pages 1 and 2 were read, then dropped again


def test_a_tiff_whose_last_page_directory_is_cut_adds_nothing(filled):
    data = multi_tiff([page(300, 200, background=(n * 80, 90, 200)) for n in range(3)],
                      compression="tiff_lzw")
    refused(filled, data[:-100], "invalid_image")


def test_a_tiff_over_max_pdf_pages_is_too_large(filled):
    # max_pdf_pages: "most pages accepted in one imported PDF or TIFF"
    filled.ini("[limits]\nmax_pdf_pages = 2\n")
    data = multi_tiff([page(60, 40) for _ in range(3)])
    refused(filled, data, "too_large")


def test_a_pdf_with_garbage_after_its_header_is_invalid_image(filled):
    refused(filled, b"%PDF-1.7\n" + random.Random(3).randbytes(4000), "invalid_image")


def test_a_heavily_truncated_pdf_is_invalid_image(filled):
    data = text_pdf()
    refused(filled, data[:len(data) // 4], "invalid_image")


# --- the disk-cache limit


def stored_versions(lb) -> int:
    return lb.b.store.db().execute("SELECT count(DISTINCT file) FROM versions").fetchone()[0]


def test_adding_past_disk_cache_limit_is_disk_full_and_keeps_every_page(buffer):
    buffer.ini("[buffer]\ndisk_cache_limit = 1\n")
    kept = {}
    with pytest.raises(Error) as failure:
        for number in range(40):  # 120 KB pages: the 1 MB limit is reached after ~8
            data = encoded(page(200, 200, background=(number, 90, 200)), "BMP")
            kept[add(buffer, data)] = data
    assert failure.value.code == "disk_full"
    assert 4 <= len(kept) < 40
    assert listed(buffer) == list(kept)
    for image, data in kept.items():
        assert buffer.b.get(buffer.session, image).blobs[0] == data
    assert len(stored_files(buffer)) == stored_versions(buffer) == len(kept)


def test_an_import_cut_by_the_disk_cache_limit_adds_nothing(buffer):
    buffer.ini("[buffer]\ndisk_cache_limit = 1\n")
    pages = [noise(400, 400, seed=n) for n in range(3)]  # ~480 KB each, stored as PNG
    refused(buffer, multi_tiff(pages), "disk_full")
    assert stored_versions(buffer) == len(stored_files(buffer)) == 0
