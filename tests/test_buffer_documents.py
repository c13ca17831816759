"""The buffer's documents: saving PDF (and PDF/A), TIFF and single images, dest and file
outputs.

Every test runs the real ``Buffer`` object (SQLite and files on disk in a temp home) and
checks the bytes that come out: PDFs are read back with pymupdf, images with Pillow.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from broker.protocol import Error
from tests.support.buffer import encoded, page
from tests.support.buffer_documents import (add, bw_raw, extracted_pixels, image_filter,
                                            image_xref, jpeg, noise, page_size, pdf_of,
                                            tiff_frames)


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
