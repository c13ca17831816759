"""What the tests of the gateway's OpenAPI description share (test_gateway_openapi,
_answers, _errors and _schemathesis): walking the spec and resolving its ``$ref``s,
``Conformance`` (an answer checked against the schema of its operation and status), jobs
waited for, pages to read, a live view's first part, and one service for the four modules,
with one camera, ``camera:clip``: a small MJPG video file written here.
"""

from __future__ import annotations

import http.client
import io
import time

import cv2
import numpy as np

import pytest
import zxingcpp
from jsonschema import Draft202012Validator
from PIL import Image, ImageDraw, ImageFont
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .service import Service, started
from .shared import shared_by_modules
from .web import Answer, Api

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


@shared_by_modules
def service(tmp_path_factory):
    """The whole service, with the camera ``camera:clip`` (a video file)."""
    clip = tmp_path_factory.mktemp("camera") / "clip.avi"
    write_clip(clip)
    yield from started(tmp_path_factory.mktemp("home"), (
        f"[camera]\nsources = clip={clip}\nv4l2 = false\nrelease_after = 0.5\n"))


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
