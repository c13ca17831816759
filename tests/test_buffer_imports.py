"""The buffer's imports: files read as pages, hostile input refused with the right code and
nothing added, the disk-cache limit.

Every test runs the real ``Buffer`` object (SQLite and files on disk in a temp home).
"""

from __future__ import annotations

import random

import pymupdf
import pytest

from broker.protocol import Error
from tests.support.buffer import encoded, page
from tests.support.buffer_documents import (PDF_PAGES, add, encrypted_pdf, jpeg, listed,
                                            many_page_pdf, multi_tiff, noise, pixels_of, png_bomb,
                                            refused, stored_files, text_pdf)
from tests.support.buffer_documents import filled  # fixtures


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
