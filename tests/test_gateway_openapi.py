"""The gateway's OpenAPI description (``GET /api/v1/openapi.json``) against the gateway.

Covers: the document is valid OpenAPI 3.1 (the OpenAPI 3.1 meta-schema, then structure:
responses everywhere, every ``$ref`` resolves, path parameters match the templates); the
routes the gateway registers under ``/api/v1`` and the spec's operations are the same set;
real answers of a running service (sessions, sources, options, scan jobs, images, import,
edits, order, delete, documents and their split by barcode, OCR and barcode jobs with
their files, a camera's listing, options, capture and live view, errors) validate against
the spec's schemas with ``jsonschema``; and a property-based run of schemathesis over every
operation but the WebSocket finds no server error and no answer outside the spec.

The service has one camera, ``camera:clip``: a small MJPG video file written here.
"""

from __future__ import annotations

import copy
import http.client
import io
import json
import time
import zipfile

import cv2
import numpy as np

import pymupdf
import pytest
import requests
import zxingcpp
from jsonschema import Draft202012Validator
from PIL import Image, ImageDraw, ImageFont
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from broker import __version__
from tests.support.images import png
from tests.support.service import Service
from tests.support.web import Answer, Api

pytestmark = pytest.mark.timeout(240)

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
SPEC_URI = "urn:scanbridge:openapi"
EVENTS = "/api/v1/sessions/{sid}/events"
TOO_BIG = 2**64  # a JSON integer no 64-bit field holds
EXAMPLES = 25  # schemathesis examples per operation and generation mode
CLIP_SIZE = (64, 48)  # the camera's frames: small, so that the camera costs little
STREAM = "/api/v1/sources/{src}/stream"


# --- helpers


def escape(token: str) -> str:
    """A JSON pointer token."""
    return token.replace("~", "~0").replace("/", "~1")


def walk(node, path=()):
    """Every (path, dict) in a JSON document."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, index))


def resolve(spec: dict, ref: str):
    assert ref.startswith("#/"), f"{ref} is not a local reference"
    node = spec
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and token in node, f"{ref} does not resolve"
        node = node[token]
    return node


def operations(spec: dict):
    """(METHOD, path, operation) of the spec."""
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


class Conformance:
    """Checks answers against the responses the spec documents for an operation."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.registry = Registry().with_resource(SPEC_URI, Resource(spec, DRAFT202012))

    def check(self, answer: Answer, method: str, path: str, status: int | None = None,
              code: str | None = None):
        """The answer's JSON (or bytes), after checking status, media type and schema."""
        if status is not None:
            assert answer.status == status, (method, path, answer.status, answer.body[:300])
        responses = self.spec["paths"][path][method.lower()]["responses"]
        key = str(answer.status)
        if key not in responses:
            # Successes are documented one by one; errors fall to ``default``.
            assert answer.status >= 400, f"{method} {path}: {answer.status} is not documented"
            key = "default"
        documented = responses[key].get("content", {})
        media_type = (answer.headers.get("Content-Type") or "").split(";")[0].strip()
        assert media_type in documented, (method, path, answer.status, media_type,
                                          sorted(documented))
        if media_type != "application/json":
            assert answer.body, (method, path, "an empty body")
            return answer.body
        body = answer.json()
        pointer = "/".join(["", "paths", escape(path), method.lower(), "responses", key,
                            "content", escape(media_type), "schema"])
        validator = Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"},
                                         registry=self.registry)
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(body)]
        assert not errors, f"{method} {path} {answer.status}: {errors} in {body}"
        if code is not None:
            assert body["error"]["code"] == code, body
        return body


def wait_job(api: Api, sid: str, token: str, job: str, timeout: float = 60) -> Answer:
    end = time.monotonic() + timeout
    while True:
        answer = api.get(f"/api/v1/sessions/{sid}/scans/{job}", token=token)
        if answer.status != 200 or answer.json()["state"] != "running":
            return answer
        assert time.monotonic() < end, f"scan job {job} still running after {timeout} s"
        time.sleep(0.05)


def write_clip(path) -> None:
    """An MJPG .avi of 10 frames at 10 frames/s, each a different grey."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, CLIP_SIZE)
    for number in range(10):
        writer.write(np.full((CLIP_SIZE[1], CLIP_SIZE[0], 3), number * 25, np.uint8))
    writer.release()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The whole service, with the camera ``camera:clip`` (a video file)."""
    clip = tmp_path_factory.mktemp("camera") / "clip.avi"
    write_clip(clip)
    svc = Service(tmp_path_factory.mktemp("home"), extra_ini=(
        f"[camera]\nsources = clip={clip}\nv4l2 = false\nrelease_after = 0.5\n"))
    svc.start()
    yield svc
    svc.stop()


def first_part(service: Service, url: str) -> tuple[int, str, bytes]:
    """(status, content type, the first part's JPEG, or the body of an error) of a live
    view; the stream is closed after its first part."""
    connection = http.client.HTTPConnection("127.0.0.1", service.ports[1], timeout=30)
    try:
        connection.request("GET", url, headers={"Host": f"127.0.0.1:{service.ports[1]}"})
        response = connection.getresponse()
        kind = response.getheader("Content-Type") or ""
        if response.status != 200:
            return response.status, kind, response.read()
        boundary = response.readline()
        assert boundary == b"--scanbridge-frame\r\n", boundary
        headers = {}
        while (line := response.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        assert headers["content-type"] == "image/jpeg", headers
        assert int(headers["x-frame"]) >= 1, headers
        return 200, kind, response.read(int(headers["content-length"]))
    finally:
        connection.close()


@pytest.fixture(scope="module")
def spec(service) -> dict:
    answer = Api(service).get("/api/v1/openapi.json")
    assert answer.status == 200, answer.body
    return answer.json()


@pytest.fixture(scope="module")
def conformance(spec) -> Conformance:
    return Conformance(spec)


# --- the document


def test_the_spec_is_served_as_openapi_3_1_json(service, spec):
    answer = Api(service).get("/api/v1/openapi.json")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert spec["openapi"] == "3.1.0"
    assert spec["info"]["title"] == "Scanbridge"
    assert spec["info"]["version"] == __version__
    assert spec["servers"] == [{"url": "/"}]
    assert len(spec["paths"]) >= 20
    # Served as written in actors/gateway/openapi.py.
    from actors.gateway.openapi import SPEC
    assert spec == json.loads(json.dumps(SPEC))


def test_the_spec_validates_against_the_openapi_3_1_schema(spec):
    try:
        from openapi_spec_validator import validate
    except ImportError:
        validate = None
    if validate is not None:
        validate(spec)
    # The OpenAPI 3.1 meta-schema (2022-10-07) as schemathesis ships it.
    from schemathesis.specs.openapi.definitions import OPENAPI_31
    assert OPENAPI_31["$id"].startswith("https://spec.openapis.org/oas/3.1/schema/")
    meta = Draft202012Validator(OPENAPI_31)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in meta.iter_errors(spec)]
    assert not errors, errors
    broken = copy.deepcopy(spec)
    broken["paths"]["/api/v1/status"]["get"]["responses"] = ["200"]
    assert not meta.is_valid(broken)  # the meta-schema does look at operations
    # Every schema is a valid JSON Schema 2020-12 (the dialect of OpenAPI 3.1).
    for schema in spec["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for _, node in walk(spec["paths"]):
        if "schema" in node and isinstance(node["schema"], dict):
            Draft202012Validator.check_schema(node["schema"])


def test_every_operation_has_responses_and_every_ref_resolves(spec):
    refs = [(path, node["$ref"]) for path, node in walk(spec) if "$ref" in node]
    assert len(refs) > 20
    for path, ref in refs:
        assert isinstance(resolve(spec, ref), dict), (path, ref)
    schemes = spec["components"]["securitySchemes"]
    labels = set()
    for method, path, operation in operations(spec):
        label = f"{method} {path}"
        labels.add(label)
        assert path.startswith("/api/v1/"), label
        assert operation.get("summary"), label
        responses = operation.get("responses")
        assert responses, f"{label} has no responses"
        assert any(key.startswith("2") or key == "101" for key in responses), label
        for key, response in responses.items():
            assert key == "default" or (key.isdigit() and 100 <= int(key) <= 599), (label, key)
            assert response.get("description"), (label, key)
            for media_type, content in response.get("content", {}).items():
                assert "/" in media_type and "schema" in content, (label, key, media_type)
        # Path parameters: exactly the template's names, all required.
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        template = {part[1:-1] for part in path.split("/") if part.startswith("{")}
        assert declared == template, (label, declared, template)
        seen = set()
        for parameter in operation.get("parameters", []):
            assert parameter["in"] in ("path", "query", "header", "cookie"), label
            assert (parameter["name"], parameter["in"]) not in seen, (label, parameter)
            seen.add((parameter["name"], parameter["in"]))
            assert "schema" in parameter, (label, parameter)
            if parameter["in"] == "path":
                assert parameter.get("required") is True, (label, parameter)
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), (label, requirement)
        if "{sid}" in path:
            assert operation.get("security"), f"{label} should need the session token"
        body = operation.get("requestBody")
        if body is not None:
            assert body.get("content"), label
    assert len(labels) == sum(1 for _ in operations(spec))


def test_every_api_route_of_the_gateway_is_in_the_spec_and_every_operation_a_route(
        spec, tmp_path):
    from actors.gateway.app import make_app
    from broker.config import Home, load

    class Quiet:
        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    app = make_app(load(Home(tmp_path)), Quiet())
    routes = {(route.method, route.resource.canonical) for route in app.router.routes()
              if route.resource is not None
              and route.resource.canonical.startswith("/api/v1/")
              and route.method not in ("HEAD", "OPTIONS")}
    # The spec describes the API, not the document itself.
    assert ("GET", "/api/v1/openapi.json") in routes
    routes.discard(("GET", "/api/v1/openapi.json"))
    described = {(method, path) for method, path, _ in operations(spec)}
    assert routes - described == set(), "routes missing from the spec"
    assert described - routes == set(), "operations the gateway does not serve"
    assert len(routes) >= 25


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


def text_page(text: str = "Scanbridge reads this") -> bytes:
    """A small PNG of one line of black text, big enough for Tesseract."""
    image = Image.new("L", (700, 120), 255)
    font = ImageFont.truetype("DejaVuSans.ttf", 48)
    ImageDraw.Draw(image).text((20, 30), text, fill=0, font=font)
    out = io.BytesIO()
    image.save(out, "PNG", dpi=(300, 300))
    return out.getvalue()


def qr_page(text: str) -> bytes:
    """A PNG of a QR code with its quiet zone."""
    code = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode)
    out = io.BytesIO()
    Image.fromarray(zxingcpp.write_barcode_to_image(code, scale=4)).save(out, "PNG")
    return out.getvalue()


def finished(api: Api, url: str, token: str, timeout: float = 60) -> Answer:
    """GET an OCR or barcode job until it is no longer queued or running."""
    end = time.monotonic() + timeout
    while True:
        answer = api.get(url, token=token)
        if answer.status != 200 or answer.json()["state"] not in ("queued", "running"):
            return answer
        assert time.monotonic() < end, f"{url} still running after {timeout} s"
        time.sleep(0.05)


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


def test_error_answers_match_the_error_schema(api, conformance):
    sid, token = api.open_session()
    other_sid, other_token = api.open_session()
    here = f"/api/v1/sessions/{sid}"
    base = "/api/v1/sessions/{sid}"
    cases = [
        (api.get(here), "GET", base, 401, "unauthorized"),
        (api.get(here, token=other_token), "GET", base, 403, "forbidden"),
        (api.get("/api/v1/sessions/" + "0" * 32, token=token), "GET", base, 404, "not_found"),
        (api.get(f"{here}/images/nope/info", token=token), "GET",
         base + "/images/{iid}/info", 404, "not_found"),
        (api.get(f"{here}/images/nope", token=token), "GET", base + "/images/{iid}", 404,
         "not_found"),
        (api.get(f"{here}/images/nope/thumbnail", token=token), "GET",
         base + "/images/{iid}/thumbnail", 404, "not_found"),
        (api.get(f"{here}/images/nope?format=webp", token=token), "GET",
         base + "/images/{iid}", 400, "invalid_argument"),
        (api.post(f"{here}/scans", token=token, data=b"{not json",
                  headers={"Content-Type": "application/json"}), "POST", base + "/scans", 400,
         "bad_request"),
        (api.post(f"{here}/scans", token=token, json={"source": "test:0", "color": 1}),
         "POST", base + "/scans", 400, "invalid_argument"),
        (api.post(f"{here}/images", token=token, data=b"text",
                  headers={"Content-Type": "text/plain"}), "POST", base + "/images", 415,
         "unsupported_media"),
        (api.post(f"{here}/images", token=token, data=b"not an image at all",
                  headers={"Content-Type": "image/png"}), "POST", base + "/images", 422,
         "invalid_image"),
        (api.request("PUT", f"{here}/order", token=token, json={"order": ["nope"]}), "PUT",
         base + "/order", None, None),
        (api.request("DELETE", f"{here}/images/nope", token=token), "DELETE",
         base + "/images/{iid}", 404, "not_found"),
        (api.post(f"{here}/uploads", token=token, json={}), "POST", base + "/uploads", 400,
         "invalid_argument"),
        (api.post(f"{here}/uploads", token=token, json={"url": "https://elsewhere.example/"}),
         "POST", base + "/uploads", 403, "upload_target_not_allowed"),
        (api.get(f"{here}/uploads/nope", token=token), "GET", base + "/uploads/{job}", 404,
         "not_found"),
        (api.post(f"{here}/ocr", token=token, json={"lang": "xx"}), "POST", base + "/ocr",
         422, "invalid_option"),
        (api.post(f"{here}/ocr", token=token, json={}), "POST", base + "/ocr", 409,
         "conflict"),
        (api.post(f"{here}/ocr", token=token, json={"output": "docx"}), "POST",
         base + "/ocr", 400, "invalid_argument"),
        (api.get(f"{here}/ocr/nope", token=token), "GET", base + "/ocr/{job}", 404,
         "not_found"),
        (api.get(f"{here}/ocr/nope/pdf", token=token), "GET", base + "/ocr/{job}/{output}",
         404, "not_found"),
        (api.post(f"{here}/barcodes", token=token, json={}), "POST", base + "/barcodes",
         409, "conflict"),
        (api.request("DELETE", f"{here}/barcodes/nope", token=token), "DELETE",
         base + "/barcodes/{job}", 404, "not_found"),
        (api.get("/api/v1/sources/camera%3Aclip/stream"), "GET", STREAM, 401,
         "unauthorized"),
        (api.get(f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={other_token}"),
         "GET", STREAM, 403, "forbidden"),
        (api.get(f"/api/v1/sources/camera%3Anope/stream?session={sid}&token={token}"),
         "GET", STREAM, 404, "not_found"),
        (api.get(f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={token}&fps=0"),
         "GET", STREAM, 400, "invalid_argument"),
        (api.get(f"/api/v1/sources/camera%3Aclip/stream?session={sid}&token={token}"
                 "&resolution=1280x720"), "GET", STREAM, 422, "invalid_option"),
        (api.get("/api/v1/sources/nope%3A9/options", token=token), "GET",
         "/api/v1/sources/{src}/options", 404, "not_found"),
        (api.get("/api/v1/sources/test%3A0/options"), "GET", "/api/v1/sources/{src}/options",
         401, "unauthorized"),
        (api.get("/api/v1/sources?refresh=true"), "GET", "/api/v1/sources", 401,
         "unauthorized"),
        (api.get("/api/v1/sources?refresh=maybe"), "GET", "/api/v1/sources", 400,
         "invalid_argument"),
    ]
    for answer, method, path, status, code in cases:
        assert answer.status >= 400, (method, path, answer.status)
        body = conformance.check(answer, method, path, status, code)
        assert body["error"]["message"], body
    # A method the path does not have: still a JSON error.
    answer = api.request("PATCH", here, token=token)
    assert answer.status == 405
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.error["code"] == "method_not_allowed"
    assert {"GET", "DELETE"} <= {m.strip() for m in answer.headers["Allow"].split(",")}
    assert api.get(f"/api/v1/sessions/{other_sid}", token=other_token).status == 200


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/api/v1/sessions", {"meta": {"n": TOO_BIG}}),
    ("POST", "{here}/scans", {"source": "test:0", "pages": TOO_BIG}),
    ("POST", "{here}/scans", {"source": "test:0", "options": {"resolution": -TOO_BIG}}),
    ("POST", "{here}/images/{iid}/ops", [{"op": "rotate", "angle": TOO_BIG}]),
    ("POST", "{here}/documents", {"quality": TOO_BIG}),
])
def test_a_json_integer_beyond_64_bits_is_refused_with_a_400_not_a_500(
        api, conformance, service, method, path, body):
    # Found by schemathesis: such a number cannot be packed for the broker (msgpack).
    sid, token = api.open_session()
    iid = api.post(f"/api/v1/sessions/{sid}/images", token=token, data=png(),
                   headers={"Content-Type": "image/png"}).json()["images"][0]["id"]
    url = path.format(here=f"/api/v1/sessions/{sid}", iid=iid)
    answer = api.request(method, url, token=token, json=body)
    template = path.format(here="/api/v1/sessions/{sid}", iid="{iid}")
    conformance.check(answer, method, template)
    assert answer.status in (400, 422), (answer.status, answer.body)
    assert answer.error["code"] in ("invalid_argument", "bad_request", "invalid_option")


@pytest.mark.parametrize("method, path, body", [
    ("POST", "{here}/images/{iid}/ops", [{"op": {}}]),
    ("POST", "{here}/images/{iid}/ops", {"op": ["rotate"]}),
    ("POST", "{here}/images/{iid}/ops",
     [{"op": "resize", "width": 10, "height": 10, "resample": {}}]),
    ("POST", "{here}/scans", {"source": "test:0", "options": {"area": {"left": {}}}}),
    ("POST", "{here}/documents", {"format": "tiff", "tiff_compression": {}}),
])
def test_a_field_of_the_wrong_json_type_is_refused_with_a_4xx_not_a_500(
        api, conformance, method, path, body):
    # Found by schemathesis: an object or a list where the handler expects a name or a
    # number fails in the actor (TypeError) and the gateway answers 500 internal.
    sid, token = api.open_session()
    iid = api.post(f"/api/v1/sessions/{sid}/images", token=token, data=png(),
                   headers={"Content-Type": "image/png"}).json()["images"][0]["id"]
    url = path.format(here=f"/api/v1/sessions/{sid}", iid=iid)
    answer = api.request(method, url, token=token, json=body)
    template = path.format(here="/api/v1/sessions/{sid}", iid="{iid}")
    conformance.check(answer, method, template)
    assert answer.status in (400, 422), (answer.status, answer.body)
    assert answer.error["code"] in ("invalid_argument", "invalid_option")


# --- property-based: schemathesis over every operation


class Target:
    """A real session with images and finished scan, OCR and barcode jobs, for the
    generated requests."""

    def __init__(self, service: Service):
        self.api = Api(service)
        self.renew()
        job = self.api.scan(self.sid, self.token, pages=1)
        self.jobs = [job["job"]]
        here = f"/api/v1/sessions/{self.sid}"
        added = self.api.post(f"{here}/images", token=self.token, data=text_page(),
                              headers={"Content-Type": "image/png"})
        page = added.json()["images"][0]["id"]
        for kind, body in (("ocr", {"output": ["text", "hocr", "pdf"]}), ("barcodes", {})):
            body["images"] = [page]
            started = self.api.post(f"{here}/{kind}", token=self.token, json=body)
            assert started.status == 202, started.body
            url = f"{here}/{kind}/{started.json()['job']}"
            done = finished(self.api, url, self.token).json()
            assert done["state"] == "done", (kind, done.get("error"))
            self.jobs.append(started.json()["job"])
        # Generated OCR jobs read every page: without the text page they are quick.
        assert self.api.request("DELETE", f"{here}/images/{page}", token=self.token).status \
            == 200

    def renew(self) -> None:
        self.sid, self.token = self.api.open_session()

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    def images(self) -> list[str]:
        answer = self.api.get(f"/api/v1/sessions/{self.sid}/images", token=self.token)
        if answer.status == 404:  # a generated request closed it
            self.renew()
            return self.images()
        ids = [info["id"] for info in answer.json()]
        if not ids:
            added = self.api.post(f"/api/v1/sessions/{self.sid}/images", token=self.token,
                                  data=png(), headers={"Content-Type": "image/png"})
            ids = [info["id"] for info in added.json()["images"]]
        return ids


def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_spec(service, spec):
    import hypothesis.strategies as st
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import Failure, FailureGroup
    from schemathesis.openapi import from_url
    from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                   response_schema_conformance,
                                                   status_code_conformance)

    schema = from_url(service.url("/api/v1/openapi.json"))
    conformance = [response_schema_conformance, status_code_conformance,
                   content_type_conformance]
    target = Target(service)
    http = requests.Session()
    found: dict[tuple, str] = {}
    ran: dict[str, int] = {}
    log = service.home / "logs" / "gateway.log"
    log_size = len(log.read_text(errors="replace"))
    started = time.monotonic()

    def record(label: str, title: str, case, response) -> None:
        media_type = (response.headers.get("content-type") or ["-"])[0]
        try:
            error = response.json()["error"]
            what = (response.status_code, error.get("code"), str(error.get("message"))[:30])
        except (ValueError, KeyError, TypeError, AttributeError):
            what = (response.status_code, media_type)
        key = (label, title, what)
        if key not in found:
            found[key] = (f"{label}: {title}: {response.status_code} {media_type} "
                          f"{response.text[:300]}\n"
                          f"{case.as_curl_command()[:1500]}")

    def exercise(op, mode, checks: list):
        @settings(max_examples=EXAMPLES, phases=[Phase.explicit, Phase.generate],
                  deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=mode), data=st.data())
        def one(case, data):
            ran[op.label] = ran.get(op.label, 0) + 1
            params = case.path_parameters if case.path_parameters is not None else {}
            # Most requests reach a real session (its token, its images, its job); the
            # rest keep what was generated (unknown ids, wrong tokens).
            if "sid" in params and data.draw(st.integers(0, 9)) > 0:
                if "iid" in params and data.draw(st.integers(0, 4)) > 0:
                    params["iid"] = data.draw(st.sampled_from(target.images()))
                auth = target.auth
                params["sid"] = target.sid
                if op.method == "delete" and op.path == "/api/v1/sessions/{sid}":
                    sid, token = target.api.open_session()  # closing is its job
                    params["sid"], auth = sid, {"Authorization": f"Bearer {token}"}
                if "job" in params and data.draw(st.booleans()):
                    params["job"] = data.draw(st.sampled_from(target.jobs))
                case.headers = {**(case.headers or {}), **auth}
                if case.query:
                    case.query.pop("token", None)
            response = case.call(session=http, timeout=60)
            failures: list = []
            try:
                case.validate_response(response, checks=checks)
            except FailureGroup as group:
                failures = [failure.title for failure in group.exceptions]
            except Failure as failure:
                failures = [failure.title]
            for title in failures:
                record(op.label, title, case, response)
        try:
            one()
        except Unsatisfiable:
            pass  # nothing to generate in this mode (no parameters, no body)

    for result in schema.get_all_operations():
        op = result.ok()
        if op.path == EVENTS:
            continue  # a WebSocket: nothing an HTTP request generator can check
        # A live view with the real session would never end: generated requests have no
        # session of their own (the session is a query parameter here), so they get errors.
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(op, mode, [not_a_server_error, *conformance])
    took = time.monotonic() - started
    labels = {f"{m} {p}" for m, p, _ in operations(spec)} - {f"GET {EVENTS}"}
    assert set(ran) == labels, "operations schemathesis did not exercise"
    assert not found, f"{len(found)} violation(s) in {took:.0f} s:\n\n" + \
        "\n\n".join(found.values())
    logged = log.read_text(errors="replace")[log_size:]
    assert '"request failed"' not in logged, "the gateway logged a failed request"
