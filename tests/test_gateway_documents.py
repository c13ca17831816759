"""The gateway's v1 imports and documents over raw HTTP: imports of PNG, JPEG and PDF and
their refusals, the import size limit (a second service with ``[limits] max_import_mb =
1``); documents as PDF, TIFF, JPEG and ZIP, the download name, an empty session.

One service shared with the other test_gateway_* modules of tests/support/gateway_api.py.
"""

from __future__ import annotations

import http.client
import io
import urllib.parse
import zipfile

import pymupdf
import pytest
from PIL import Image

from tests.support.gateway_api import (PAGE_SIZE, Session, assert_error, decoded, pdf, picture,
                                       rgb, started)
from tests.support.gateway_api import service, session  # fixtures
from tests.support.service import Service
from tests.support.web import Answer, Api

pytestmark = pytest.mark.timeout(120)


# --- imports


def test_importing_a_png_adds_one_image_with_its_pixels(session):
    data = picture(64, 48, "green")
    answer = session.upload(data, "image/png")
    assert answer.status == 201, answer.body
    (info,) = answer.json()["images"]
    assert (info["width"], info["height"]) == (64, 48)
    assert info["format"] == "png" and info["source"] == "import"
    assert session.ids() == [info["id"]]
    assert rgb(session.get(f"/images/{info['id']}").body) == rgb(data)


def test_an_imported_jpeg_is_kept_byte_for_byte(session):
    data = picture(80, 60, "blue", "JPEG")
    (info,) = session.imported(data, "image/jpeg")
    assert info["format"] == "jpeg" and info["bytes"] == len(data)
    answer = session.get(f"/images/{info['id']}")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.body == data


def test_importing_a_three_page_pdf_adds_three_images_in_page_order(session):
    first = session.imported(picture())[0]["id"]
    answer = session.upload(pdf(3), "application/pdf")
    assert answer.status == 201, answer.body
    images = answer.json()["images"]
    assert len(images) == 3
    assert [info["meta"]["page"] for info in images] == [1, 2, 3]
    for info in images:
        assert info["width"] > info["height"]  # 200 x 100 pt pages
        assert abs(info["width"] / info["height"] - 2) < 0.05
    assert session.ids() == [first, *[info["id"] for info in images]]


def test_an_import_with_an_index_and_a_render_dpi_goes_to_that_place(session):
    ids = [session.imported(picture(20 + n, 20))[0]["id"] for n in range(2)]
    answer = session.upload(pdf(1), "application/pdf", "?index=1&dpi=100")  # render dpi
    assert answer.status == 201, answer.body
    (info,) = answer.json()["images"]
    assert info["dpi"] == [100, 100]
    assert (info["width"], info["height"]) == (278, 139)  # 200 x 100 pt at 100 dpi
    assert session.ids() == [ids[0], info["id"], ids[1]]
    assert_error(session.upload(picture(), "image/png", "?dpi=5"), 400, "invalid_argument")


def test_imports_of_other_media_or_garbage_are_refused_and_add_nothing(session):
    assert_error(session.upload(b"<html></html>", "text/html"), 415, "unsupported_media")
    assert_error(session.upload(b"this is no picture" * 20, "image/png"), 422,
                 "invalid_image")
    assert_error(session.upload(b"this is no picture" * 20, "application/pdf"), 422,
                 "invalid_image")
    assert_error(session.upload(b"", "image/png"), 422, "invalid_image")
    assert session.images() == []


def test_an_import_declared_larger_than_the_limit_is_413_before_its_body(session):
    connection = http.client.HTTPConnection("127.0.0.1", session.api.port, timeout=10)
    try:
        connection.putrequest("POST", f"{session.path}/images", skip_host=True)
        connection.putheader("Host", f"127.0.0.1:{session.api.port}")
        connection.putheader("Authorization", f"Bearer {session.token}")
        connection.putheader("Content-Type", "application/pdf")
        connection.putheader("Content-Length", str(600 * 1024 * 1024))  # limit: 512 MB
        connection.endheaders()  # and no body at all: the answer must not wait for it
        response = connection.getresponse()
        answer = Answer(response.status, response.headers, response.read())
    finally:
        connection.close()
    error = assert_error(answer, 413, "too_large")
    assert error["limit"] == 512 * 1024 * 1024
    assert session.images() == []


def test_a_streamed_import_over_max_import_mb_is_413(tmp_path_factory):
    svc = started(Service(tmp_path_factory.mktemp("home"),
                          extra_ini="[limits]\nmax_import_mb = 1\n"))
    try:
        api = Api(svc)
        session = Session(api, *api.open_session())
        assert session.upload(picture(), "image/png").status == 201  # under the limit

        def chunks():  # no Content-Length: the gateway must count what arrives
            for _ in range(40):
                yield b"\0" * 64 * 1024  # 2.5 MB in all
        connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
        try:
            try:
                connection.request("POST", f"{session.path}/images", body=chunks(),
                                   encode_chunked=True, headers={
                                       "Host": f"127.0.0.1:{api.port}",
                                       "Authorization": f"Bearer {session.token}",
                                       "Content-Type": "image/png"})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway answered and closed before all of it was sent
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        error = assert_error(answer, 413, "too_large")
        assert error["limit"] == 1024 * 1024
        assert len(session.images()) == 1
    finally:
        svc.stop()


# --- documents


@pytest.fixture
def two_pages(session) -> Session:
    session.scan(pages=2)
    return session


def assert_attachment(answer: Answer, content_type: str, filename: str, pages: int) -> None:
    """``answer`` is a 200 with a document of ``pages`` pages, as the attachment
    ``filename``."""
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == content_type
    assert answer.headers["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert answer.headers["X-Scanbridge-Pages"] == str(pages)


def test_a_pdf_document_is_an_attachment_with_its_page_count(two_pages):
    answer = two_pages.document(format="pdf", title="Two pages")
    assert_attachment(answer, "application/pdf", "scan.pdf", 2)
    assert answer.headers["Cache-Control"] == "no-store"
    with pymupdf.open(stream=answer.body, filetype="pdf") as document:
        assert document.page_count == 2
        assert document.metadata["title"] == "Two pages"
    first = two_pages.ids()[0]
    one = two_pages.document(format="pdf", images=[first])
    assert one.headers["X-Scanbridge-Pages"] == "1"
    with pymupdf.open(stream=one.body, filetype="pdf") as document:
        assert document.page_count == 1


def test_a_tiff_document_has_a_frame_per_page(two_pages):
    answer = two_pages.document(format="tiff")
    assert_attachment(answer, "image/tiff", "scan.tif", 2)
    image = Image.open(io.BytesIO(answer.body))
    assert image.format == "TIFF"
    assert image.n_frames == 2
    assert image.size == PAGE_SIZE


def test_jpeg_documents_of_two_pages_are_a_zip_and_of_one_page_a_jpeg(two_pages):
    answer = two_pages.document(format="jpeg", filename="pages")
    assert_attachment(answer, "application/zip", "pages.zip", 2)
    with zipfile.ZipFile(io.BytesIO(answer.body)) as archive:
        names = archive.namelist()
        assert names == ["pages-001.jpg", "pages-002.jpg"]
        for name in names:
            image = decoded(archive.read(name))
            assert image.format == "JPEG" and image.size == PAGE_SIZE

    first = two_pages.ids()[0]
    single = two_pages.document(format="jpeg", images=[first])
    assert_attachment(single, "image/jpeg", "scan.jpg", 1)
    assert decoded(single.body).format == "JPEG"


@pytest.mark.parametrize("given, expected", [
    ("../../etc/x", "etcx.pdf"),
    ("/etc/passwd", "etcpasswd.pdf"),
    ('a"b\r\nSet-Cookie: x=1', "abSet-Cookie x1.pdf"),
    ("report.exe", "report.pdf"),
    ("...", "scan.pdf"),
    ("", "scan.pdf"),
])
def test_a_document_filename_is_made_safe(two_pages, given, expected):
    answer = two_pages.document(format="pdf", filename=given)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Disposition"] == f'attachment; filename="{expected}"'
    assert "Set-Cookie" not in answer.headers


def test_a_non_ascii_document_filename_is_sent_as_filename_star(two_pages):
    answer = two_pages.document(format="pdf", filename="résumé 文档")
    assert answer.status == 200, answer.body
    disposition = answer.headers["Content-Disposition"]  # latin-1 as sent on the wire
    assert disposition.isascii(), f"raw non-ASCII bytes in the header: {disposition!r}"
    plain, star = disposition.split("; filename*=")
    assert plain == 'attachment; filename="r_sum_ __.pdf"'
    assert star.startswith("UTF-8''")
    assert urllib.parse.unquote(star[len("UTF-8''"):]) == "résumé 文档.pdf"


def test_bad_document_requests_are_json_errors(two_pages):
    assert_error(two_pages.document(format="xcf"), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", bogus=1), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", filename=5), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", images="all"), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", images=["nosuchimage"]), 404, "not_found")


def test_a_document_of_an_empty_session_is_409(session):
    for fmt in ("pdf", "tiff", "jpeg"):
        assert_error(session.document(format=fmt), 409, "conflict")
