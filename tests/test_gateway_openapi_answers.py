"""Real answers of a running service validate against the OpenAPI spec's schemas with
``jsonschema``: status, sessions, sources, options, a camera's listing, options, capture
and live view, scan jobs, images (import, edits, order, delete), OCR and barcode jobs with
their files, documents split by barcode.
"""

from __future__ import annotations

import io
import zipfile

import pymupdf
import pytest
from PIL import Image

from broker import __version__
from tests.support.images import png
from tests.support.openapi import (CLIP_SIZE, STREAM, finished, first_part, qr_page, text_page,
                                   wait_job)
from tests.support.openapi import conformance, service, spec  # fixtures
from tests.support.web import Api

pytestmark = pytest.mark.timeout(240)


# --- real answers against the schemas


def test_status_session_and_source_answers_match_their_schemas(api, conformance):
    status = conformance.check(api.get("/api/v1/status"), "GET", "/api/v1/status", 200)
    assert status["version"] == __version__ and "gateway" in status["actors"]
    refused = conformance.check(Api(api.service, origin="https://evil.example").get(
        "/api/v1/origin"), "GET", "/api/v1/origin", 200)
    assert refused["allowed"] is False and refused["command"].startswith("scanbridge allow")
    assert conformance.check(api.get("/api/v1/origin"), "GET", "/api/v1/origin",
                             200)["allowed"] is True

    opened = conformance.check(api.post("/api/v1/sessions", json={"meta": {"app": "t"}}),
                               "POST", "/api/v1/sessions", 201)
    sid, token = opened["id"], opened["token"]
    no_body = conformance.check(api.post("/api/v1/sessions"), "POST", "/api/v1/sessions", 201)
    assert no_body["id"] != sid

    info = conformance.check(api.get(f"/api/v1/sessions/{sid}", token=token), "GET",
                             "/api/v1/sessions/{sid}", 200)
    assert info["id"] == sid and info["images"] == 0 and info["origin"] is None

    sources = conformance.check(api.get("/api/v1/sources"), "GET", "/api/v1/sources", 200)
    assert [s["id"] for s in sources] == ["test:0", "test:1", "camera:clip"]
    assert [s["type"] for s in sources] == ["scanner", "scanner", "camera"]
    refreshed = conformance.check(api.get("/api/v1/sources?refresh=true", token=token),
                                  "GET", "/api/v1/sources", 200)
    assert [s["id"] for s in refreshed] == ["test:0", "test:1", "camera:clip"]

    described = conformance.check(api.get("/api/v1/sources/test%3A0/options", token=token),
                                  "GET", "/api/v1/sources/{src}/options", 200)
    assert described["source"] == "test:0"
    assert "resolution" in {o["name"] for o in described["options"]}

    closed = conformance.check(api.request("DELETE", f"/api/v1/sessions/{sid}", token=token),
                               "DELETE", "/api/v1/sessions/{sid}", 200)
    assert closed == {"id": sid, "removed": 0}


def test_camera_answers_match_their_schemas(api, conformance, service):
    sid, token = api.open_session()
    described = conformance.check(api.get(
        f"/api/v1/sources/camera%3Aclip/options?session={sid}&token={token}"), "GET",
        "/api/v1/sources/{src}/options", 200)
    assert (described["source"], described["kind"]) == ("camera:clip", "file")
    assert described["size"] == "%dx%d" % CLIP_SIZE
    assert {"resolution", "interval", "document"} <= {o["name"] for o in described["options"]}

    base = "/api/v1/sessions/{sid}/scans"
    started = conformance.check(
        api.post(f"/api/v1/sessions/{sid}/scans", token=token,
                 json={"source": "camera:clip", "pages": 2, "options": {"interval": 0}}),
        "POST", base, 202)
    done = conformance.check(wait_job(api, sid, token, started["job"]), "GET",
                             base + "/{job}", 200)
    assert done["state"] == "done" and len(done["images"]) == 2, done
    listed = conformance.check(api.get(f"/api/v1/sessions/{sid}/scans", token=token),
                               "GET", base, 200)
    assert started["job"] in [job["job"] for job in listed]

    status, kind, jpeg = first_part(
        service, f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={token}&fps=5")
    assert status == 200, jpeg[:300]
    documented = conformance.spec["paths"][STREAM]["get"]["responses"]["200"]["content"]
    assert kind.split(";")[0] in documented, kind
    assert "boundary=scanbridge-frame" in kind
    with Image.open(io.BytesIO(jpeg)) as frame:
        assert (frame.format, frame.size) == ("JPEG", CLIP_SIZE)
    api.request("DELETE", f"/api/v1/sessions/{sid}", token=token)


def test_scan_job_answers_match_their_schemas(api, conformance):
    sid, token = api.open_session()
    base = "/api/v1/sessions/{sid}/scans"
    started = conformance.check(
        api.post(f"/api/v1/sessions/{sid}/scans", token=token,
                 json={"source": "test:0", "pages": 2, "options": {"resolution": 75}}),
        "POST", base, 202)
    job = started["job"]
    assert started["state"] in ("queued", "running", "done")
    done = conformance.check(wait_job(api, sid, token, job), "GET", base + "/{job}", 200)
    assert done["state"] == "done" and done["pages"] == 2 and len(done["images"]) == 2
    listed = conformance.check(api.get(f"/api/v1/sessions/{sid}/scans", token=token),
                               "GET", base, 200)
    assert job in [j["job"] for j in listed]
    cancelled = conformance.check(
        api.request("DELETE", f"/api/v1/sessions/{sid}/scans/{job}", token=token),
        "DELETE", base + "/{job}", 200)
    assert cancelled["job"] == job
    conformance.check(api.get(f"/api/v1/sessions/{sid}/scans/nope", token=token), "GET",
                      base + "/{job}", 404, "not_found")
    conformance.check(api.post(f"/api/v1/sessions/{sid}/scans", token=token,
                               json={"source": "nope:0"}), "POST", base)
    failed = api.post(f"/api/v1/sessions/{sid}/scans", token=token,
                      json={"source": "test:0", "options": {"resolution": 100000}})
    conformance.check(failed, "POST", base, 422, "invalid_option")


def test_image_answers_match_their_schemas(api, conformance):
    sid, token = api.open_session()
    base = "/api/v1/sessions/{sid}"
    here = f"/api/v1/sessions/{sid}"
    imported = conformance.check(
        api.post(f"{here}/images", token=token, data=png(),
                 headers={"Content-Type": "image/png"}), "POST", base + "/images", 201)
    first = imported["images"][0]
    assert (first["width"], first["height"], first["format"]) == (40, 30, "png")
    second = conformance.check(
        api.post(f"{here}/images", token=token, data=png(color="blue"),
                 headers={"Content-Type": "image/png"}), "POST", base + "/images",
        201)["images"][0]
    a, b = first["id"], second["id"]

    listed = conformance.check(api.get(f"{here}/images", token=token), "GET",
                               base + "/images", 200)
    assert [i["id"] for i in listed] == [a, b]
    info = conformance.check(api.get(f"{here}/images/{a}/info", token=token), "GET",
                             base + "/images/{iid}/info", 200)
    assert info["id"] == a

    stored = conformance.check(api.get(f"{here}/images/{a}", token=token), "GET",
                               base + "/images/{iid}", 200)
    assert Image.open(io.BytesIO(stored)).size == (40, 30)
    converted = conformance.check(api.get(f"{here}/images/{a}?format=jpeg&width=20",
                                          token=token), "GET", base + "/images/{iid}", 200)
    assert Image.open(io.BytesIO(converted)).format == "JPEG"
    thumb = conformance.check(api.get(f"{here}/images/{a}/thumbnail?size=16", token=token),
                              "GET", base + "/images/{iid}/thumbnail", 200)
    assert max(Image.open(io.BytesIO(thumb)).size) == 16

    for ops in ([{"op": "rotate", "angle": 90}], {"op": "mirror"},
                {"ops": [{"op": "crop", "left": 0, "top": 0, "right": 10, "bottom": 10}]}):
        edited = conformance.check(api.post(f"{here}/images/{a}/ops", token=token, json=ops),
                                   "POST", base + "/images/{iid}/ops", 200)
        assert edited["id"] == a
    undone = conformance.check(api.post(f"{here}/images/{a}/undo", token=token), "POST",
                               base + "/images/{iid}/undo", 200)
    assert (undone["width"], undone["height"]) == (30, 40)

    for order in ([b, a], {"order": [a, b]}):
        reordered = conformance.check(api.request("PUT", f"{here}/order", token=token,
                                                  json=order), "PUT", base + "/order", 200)
        assert reordered["order"] == (order if isinstance(order, list) else order["order"])

    pdf = conformance.check(api.post(f"{here}/documents", token=token, json={"format": "pdf"}),
                            "POST", base + "/documents", 200)
    assert pdf.startswith(b"%PDF")
    archive = conformance.check(api.post(f"{here}/documents", token=token,
                                         json={"format": "png"}), "POST",
                                base + "/documents", 200)
    assert len(zipfile.ZipFile(io.BytesIO(archive)).namelist()) == 2
    one = conformance.check(api.post(f"{here}/documents", token=token,
                                     json={"format": "jpeg", "images": [a]}), "POST",
                            base + "/documents", 200)
    assert Image.open(io.BytesIO(one)).format == "JPEG"

    deleted = conformance.check(api.request("DELETE", f"{here}/images/{a}", token=token),
                                "DELETE", base + "/images/{iid}", 200)
    assert deleted == {"deleted": [a]}
    cleared = conformance.check(api.request("DELETE", f"{here}/images", token=token),
                                "DELETE", base + "/images", 200)
    assert cleared == {"deleted": [b]}


# --- recognition jobs


def test_ocr_and_barcode_job_answers_match_their_schemas(api, conformance):
    sid, token = api.open_session()
    here, base = f"/api/v1/sessions/{sid}", "/api/v1/sessions/{sid}"
    ids = []
    for data in (text_page(), qr_page("SB-0042"), png(200, 100, "white")):
        added = api.post(f"{here}/images", token=token, data=data,
                         headers={"Content-Type": "image/png"})
        ids.append(added.json()["images"][0]["id"])

    languages = conformance.check(api.get("/api/v1/ocr/languages"), "GET",
                                  "/api/v1/ocr/languages", 200)
    assert "eng" in languages["installed"] and languages["default"] == "eng"

    answer = api.post(f"{here}/ocr", token=token, json={
        "images": [ids[0], ids[2]], "lang": ["eng"],
        "output": ["text", "words", "hocr", "pdf"]})
    started = conformance.check(answer, "POST", base + "/ocr", 202)
    job = started["job"]
    assert answer.headers["Location"] == f"{here}/ocr/{job}"
    assert started["kind"] == "ocr" and started["progress"]["total"] == 2
    done = conformance.check(finished(api, f"{here}/ocr/{job}", token), "GET",
                             base + "/ocr/{job}", 200)
    assert done["state"] == "done", done.get("error")
    result = done["result"]
    assert "Scanbridge" in result["text"] and result["lang"] == "eng"
    page, blank = result["pages"]
    assert page["image"] == ids[0] and page["rotation"] == 0
    assert "reads" in [word["text"] for word in page["words"]]
    # A blank page: no words, no mean confidence (null in the schema), empty text.
    assert (blank["image"], blank["words"], blank["confidence"]) == (ids[2], [], None)
    assert result["text"].split("\f")[1].strip() == ""
    assert set(result["files"]) == {"text", "hocr", "pdf"}
    for output, starts in (("text", b"Scanbridge"), ("hocr", b"<?xml"), ("pdf", b"%PDF")):
        body = conformance.check(api.get(f"{here}/ocr/{job}/{output}?download=1",
                                         token=token), "GET", base + "/ocr/{job}/{output}",
                                 200)
        assert body.startswith(starts), (output, body[:40])
    listed = conformance.check(api.get(f"{here}/ocr", token=token), "GET", base + "/ocr", 200)
    assert [j["job"] for j in listed] == [job]
    again = conformance.check(api.request("DELETE", f"{here}/ocr/{job}", token=token),
                              "DELETE", base + "/ocr/{job}", 200)
    assert again["state"] == "done"  # cancelling a finished job changes nothing
    conformance.check(api.get(f"{here}/ocr/{job}/nope", token=token), "GET",
                      base + "/ocr/{job}/{output}", 404, "not_found")

    answer = api.post(f"{here}/barcodes", token=token, json={"formats": ["qr"]})
    started = conformance.check(answer, "POST", base + "/barcodes", 202)
    job = started["job"]
    assert started["kind"] == "barcodes" and started["progress"]["total"] == 3
    done = conformance.check(finished(api, f"{here}/barcodes/{job}", token), "GET",
                             base + "/barcodes/{job}", 200)
    assert done["state"] == "done", done
    assert done["result"]["count"] == 1
    assert [[b["text"] for b in p["barcodes"]] for p in done["result"]["pages"]] == \
        [[], ["SB-0042"], []]
    listed = conformance.check(api.get(f"{here}/barcodes", token=token), "GET",
                               base + "/barcodes", 200)
    assert [j["job"] for j in listed] == [job]
    conformance.check(api.request("DELETE", f"{here}/barcodes/{job}", token=token),
                      "DELETE", base + "/barcodes/{job}", 200)
    conformance.check(api.post(f"{here}/barcodes", token=token, json={"formats": ["nope"]}),
                      "POST", base + "/barcodes", 400, "invalid_argument")


def test_a_document_split_by_barcode_matches_its_schema(api, conformance):
    sid, token = api.open_session()
    here = f"/api/v1/sessions/{sid}"
    for data in (png(), qr_page("SPLIT"), png(color="blue"), png(color="green")):
        api.post(f"{here}/images", token=token, data=data,
                 headers={"Content-Type": "image/png"})
    answer = api.post(f"{here}/documents", token=token, json={
        "format": "pdf", "split_by": "barcode", "separator": {"pattern": "^SPLIT$"}})
    body = conformance.check(answer, "POST", "/api/v1/sessions/{sid}/documents", 200)
    assert answer.headers["Content-Type"] == "application/zip"
    assert answer.headers["X-Scanbridge-Parts"] == "2"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        pages = []
        for name in archive.namelist():
            with pymupdf.open(stream=archive.read(name), filetype="pdf") as document:
                pages.append(document.page_count)
    assert pages == [1, 2]  # the separator page is dropped
