"""What the camera tests share (test_camera_captures and test_camera_live_view): the media,
the local MJPEG camera and one service for both modules, a web session with the camera's
live view and captures, and a reader of a live view as a plain HTTP client.

Sources of the service: ``clip``, an MJPG .avi generated here (640x360, 30 frames at 15
fps, each with its number drawn big and as a QR code, so a captured frame is read back
exactly); ``live``, a local MJPEG camera (tests/support/mjpeg.py) serving ten numbered JPEG
frames at 15 fps; ``doc``, an MJPG .avi of a skewed A4 page with corner markers on a dark
desk (built as in tests/test_camera_document.py) for document mode.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from dataclasses import dataclass, field

import aiohttp
import cv2
import numpy as np
import pytest
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from tests.test_camera_document import photo, quad

from .mjpeg import MjpegServer
from .service import started
from .shared import shared_by_modules
from .stack import poll_for
from .web import Answer, WebSession

V1 = "/api/v1"
W, H = 640, 360
CLIP_FRAMES = 30
FPS = 15
LIVE_FRAMES = 10
RELEASE_AFTER = 1.0  # [camera] release_after of the service
TICK = 0.5  # the camera actor's tick_interval
WAIT = 30.0
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"


# --- media


def numbered(text: str, number: int) -> Image.Image:
    """A 640x360 frame: the number drawn big on the left, ``text NN`` as a QR code right."""
    image = Image.new("RGB", (W, H), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.text((30, 60), f"{number:02d}", font=ImageFont.truetype(BOLD, 200), fill=(0, 0, 0))
    code = zxingcpp.create_barcode(f"{text} {number:02d}", zxingcpp.BarcodeFormat.QRCode)
    qr = Image.fromarray(np.asarray(zxingcpp.write_barcode_to_image(code, scale=8)))
    image.paste(qr.convert("RGB"), (W - qr.width - 20, (H - qr.height) // 2))
    return image


def jpeg_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def write_mjpg(path, frames: list[np.ndarray], fps: float = FPS) -> None:
    """An MJPG .avi of BGR frames."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame)
    writer.release()


def packets(path) -> list[bytes]:
    """The JPEG packets of an MJPG video file, as stored (OpenCV's raw mode)."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.set(cv2.CAP_PROP_FORMAT, -1)
    found = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        found.append(frame.tobytes())
    cap.release()
    return found


def qr_number(jpeg: bytes, text: str) -> int:
    """The frame number a frame's QR code says (``text NN``)."""
    found = [r.text for r in zxingcpp.read_barcodes(Image.open(io.BytesIO(jpeg)))
             if r.text.startswith(text + " ")]
    assert len(found) == 1, found
    return int(found[0].split()[1])


@dataclass
class Media:
    clip: object
    clip_packets: list[bytes]
    live: list[bytes]
    doc: object


@shared_by_modules
def media(tmp_path_factory) -> Media:
    folder = tmp_path_factory.mktemp("media")
    clip = folder / "clip.avi"
    write_mjpg(clip, [cv2.cvtColor(np.asarray(numbered("clip", n)), cv2.COLOR_RGB2BGR)
                      for n in range(CLIP_FRAMES)])
    doc = folder / "doc.avi"
    corners = quad((320, 185), 220, 310, angle=4, skew=0.12)
    page = cv2.imdecode(np.frombuffer(photo(corners, size=(W, H)), np.uint8), cv2.IMREAD_COLOR)
    write_mjpg(doc, [page] * 10)
    found = packets(clip)
    assert len(found) == CLIP_FRAMES and len(set(found)) == CLIP_FRAMES
    return Media(clip, found, [jpeg_of(numbered("live", n)) for n in range(LIVE_FRAMES)], doc)


# --- the service


@shared_by_modules
def camera(media):
    server = MjpegServer(media.live, fps=FPS).start()
    yield server
    server.stop()


@shared_by_modules
def service(tmp_path_factory, media, camera):
    # `scanbridge start` returns once the gateway answers
    yield from started(tmp_path_factory.mktemp("home"), (
        f"[camera]\nsources = clip={media.clip}, live={camera.url}, doc={media.doc}\n"
        f"v4l2 = false\nrelease_after = {RELEASE_AFTER}\n"))


class Session(WebSession):
    """A web session with the camera's live view and captures."""

    def stream_url(self, source: str, **query) -> str:
        params = "".join(f"&{k}={v}" for k, v in query.items())
        return self.api.service.url(f"{V1}/sources/{source}/stream?session={self.id}"
                                    f"&token={self.token}{params}")

    def start(self, source: str, pages: int = 1, options: dict | None = None) -> str:
        answer = self.request("POST", "/scans", json={"source": source, "pages": pages,
                                                      "options": options or {}})
        assert answer.status == 202, answer.body
        job = answer.json()
        assert job["job"].startswith("cam-") and job["source"] == source, job
        return job["job"]

    def wait(self, job: str, timeout: float = WAIT) -> dict:
        def ended():
            view = self.request("GET", f"/scans/{job}").json()
            return view["state"] != "running" and view
        return poll_for(ended, timeout, f"capture {job} to end", every=0.1)

    def capture(self, source: str, pages: int = 1, options: dict | None = None) -> dict:
        view = self.wait(self.start(source, pages, options))
        assert view["state"] == "done", view
        assert view["pages"] == pages and len(view["images"]) == pages, view
        return view

    def image(self, iid: str) -> bytes:
        answer = self.request("GET", f"/images/{iid}")
        assert answer.status == 200, answer.body[:300]
        assert answer.headers.get_content_type() == "image/jpeg", answer.headers
        return answer.body


@pytest.fixture
def session(api):
    opened = Session(api)
    yield opened
    opened.request("DELETE")


def assert_error(answer: Answer, status: int, code: str) -> dict:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get_content_type() == "application/json", answer.headers
    error = answer.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


def feeds(client) -> dict[str, dict]:
    return {f["source"]: f for f in client.call("camera", "status", timeout=10)["feeds"]}


def wait_closed(client, camera: MjpegServer | None = None, source: str | None = None,
                timeout: float = 10) -> None:
    """No feed open (of ``source``, or none at all) and the MJPEG camera has no client."""
    poll_for(lambda: (source not in feeds(client) if source else not feeds(client))
             and (camera is None or camera.open_clients == 0), timeout, "the camera closed",
             every=0.1)


# --- reading a live view


@dataclass
class Part:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Viewer:
    """A live view read by a plain HTTP client: its multipart parts, one by one."""

    response: aiohttp.ClientResponse
    boundary: bytes = b""
    parts: list[Part] = field(default_factory=list)
    closed: bool = False  # the closing boundary came
    eof: bool = False

    def __post_init__(self):
        ctype = self.response.headers["Content-Type"]
        assert ctype.startswith("multipart/x-mixed-replace"), ctype
        self.boundary = b"--" + ctype.partition("boundary=")[2].strip('"').encode()

    async def next(self) -> Part | None:
        """The next part, or None once the stream ended."""
        content = self.response.content
        while True:
            line = await content.readline()
            if not line:
                self.eof = True
                return None
            line = line.rstrip(b"\r\n")
            if line == self.boundary + b"--":
                self.closed = True
                continue
            if line != self.boundary:
                assert not line.strip() or self.parts, f"junk before the first part: {line!r}"
                continue
            headers = {}
            while True:
                header = await content.readline()
                if header in (b"\r\n", b"\n"):
                    break
                if not header:
                    self.eof = True
                    return None
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await content.readexactly(int(headers["content-length"]))
            part = Part(time.monotonic(), headers, body)
            self.parts.append(part)
            return part

    async def take(self, count: int, timeout: float = WAIT) -> list[Part]:
        got = []
        async with asyncio.timeout(timeout):
            while len(got) < count:
                part = await self.next()
                assert part is not None, "the stream ended early"
                got.append(part)
        return got

    async def read_for(self, seconds: float) -> list[Part]:
        """Parts for ``seconds`` after the first one."""
        first = (await self.take(1))[0]
        got = [first]
        end = first.at + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                part = await asyncio.wait_for(self.next(), left)
            except TimeoutError:
                break
            assert part is not None, "the stream ended early"
            got.append(part)
        return got

    async def until_end(self, timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while await self.next() is not None:
                pass

    def close(self) -> None:
        self.response.close()


async def open_view(http: aiohttp.ClientSession, url: str) -> Viewer:
    response = await http.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_read=15))
    assert response.status == 200, (response.status, await response.text())
    return Viewer(response)


def check_parts(parts: list[Part]) -> None:
    """Each part a 640x360 JPEG with its frame number; numbers increase."""
    seqs = []
    for part in parts:
        assert part.headers["content-type"] == "image/jpeg", part.headers
        assert int(part.headers["content-length"]) == len(part.body)
        image = Image.open(io.BytesIO(part.body))
        image.load()
        assert image.format == "JPEG" and image.size == (W, H)
        seqs.append(int(part.headers["x-frame"]))
    assert seqs == sorted(set(seqs)), seqs


async def until(ws, match, timeout: float = WAIT) -> dict:
    """The first message ``match(message)`` is true for."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            message = json.loads(msg.data)
            if match(message):
                return message
