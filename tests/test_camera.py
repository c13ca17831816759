"""The camera actor and the gateway's live view and captures, against the real service.

Sources of the module's one service: ``clip``, an MJPG .avi generated here (640x360, 30
frames at 15 fps, each with its number drawn big and as a QR code, so a captured frame is
read back exactly); ``live``, a local MJPEG camera (tests/support/mjpeg.py) serving ten
numbered JPEG frames at 15 fps; ``doc``, an MJPG .avi of a skewed A4 page with corner
markers on a dark desk (built as in tests/test_camera_document.py) for document mode.

Covered: the listing and options; captures into the buffer (JPEG kept byte for byte,
frames in order); the live view as MJPEG read by a plain HTTP client (parts, sizes, rate,
``fps=`` cap); two viewers sharing one camera connection and the camera closing after
``release_after``; the camera vanishing mid-stream (the stream ends, ``camera.error``
on the session socket, captures fail with device_gone, and it works again once the camera
is back); a capture cut by a kill -9 of the camera (failed with actor_died and its
``scan.error`` once the camera is back); refused requests; document mode.
"""

from __future__ import annotations

import asyncio
import base64
import http.server
import io
import json
import os
import re
import signal
import threading
import time
from dataclasses import dataclass, field

import aiohttp
import cv2
import numpy as np
import pymupdf
import pytest
import zxingcpp
from PIL import Image, ImageDraw, ImageFont

from actors.camera.readers import MjpegReader
from broker.protocol import Error
from tests.support.mjpeg import MjpegServer
from tests.support.service import Service
from tests.support.stack import poll_for
from tests.support.web import Answer, WebSession
from tests.test_camera_document import A4, check_markers, photo, quad

pytestmark = pytest.mark.timeout(120)

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


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def camera(media):
    server = MjpegServer(media.live, fps=FPS).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, media, camera):
    svc = Service(tmp_path_factory.mktemp("home"), extra_ini=(
        f"[camera]\nsources = clip={media.clip}, live={camera.url}, doc={media.doc}\n"
        f"v4l2 = false\nrelease_after = {RELEASE_AFTER}\n"))
    svc.start()  # `scanbridge start` returns once the gateway answers
    yield svc
    svc.stop()


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


async def ws_events(svc: Service, session: Session):
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(svc.url(f"{session.path}/events"),
                               params={"token": session.token})
    hello = json.loads((await ws.receive(timeout=WAIT)).data)
    assert hello["topic"] == "hello", hello
    return http, ws


async def until(ws, match, timeout: float = WAIT) -> dict:
    """The first message ``match(message)`` is true for."""
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            message = json.loads(msg.data)
            if match(message):
                return message


# --- listing and options


def test_sources_list_the_named_cameras_with_their_options(api, camera, session):
    answer = api.get(f"{V1}/sources")
    assert answer.status == 200, answer.body
    listed = {s["id"]: s for s in answer.json() if s["type"] == "camera"}
    assert set(listed) == {"camera:clip", "camera:live", "camera:doc"}, listed
    assert listed["camera:clip"]["kind"] == "file"
    assert listed["camera:live"]["kind"] == "mjpeg"
    assert listed["camera:live"]["device"] == camera.url
    assert all("target" not in s for s in listed.values())

    clip = api.get(f"{V1}/sources/camera:clip/options", token=session.token)
    assert clip.status == 200, clip.body
    assert clip.json()["source"] == "camera:clip" and clip.json()["kind"] == "file"
    assert clip.json()["size"] == "640x360" and clip.json()["fps"] == pytest.approx(FPS)
    names = {o["name"]: o for o in clip.json()["options"]}
    assert {"resolution", "interval", "document"} <= set(names), names
    assert names["resolution"]["list"] == ["640x360"]

    live = api.get(f"{V1}/sources/camera:live/options", token=session.token)
    assert live.status == 200, live.body
    assert live.json()["kind"] == "mjpeg" and live.json()["size"] == "640x360"
    assert live.json()["fps"] is None or live.json()["fps"] > 0


# --- captures


def test_capture_from_a_video_file_keeps_its_frames_in_order(session, media):
    view = session.capture("camera:clip", pages=3, options={"interval": 0.2})
    assert view["request"]["options"] == {"interval": 0.2}
    numbers = []
    for iid in view["images"]:
        data = session.image(iid)
        assert data in media.clip_packets  # the file's JPEG packet, byte for byte
        assert Image.open(io.BytesIO(data)).size == (W, H)
        numbers.append(qr_number(data, "clip"))
    # 0.2 s apart at 15 fps: ~3 frames on, the clip looping every 30 frames
    steps = [(b - a) % CLIP_FRAMES for a, b in zip(numbers, numbers[1:], strict=False)]
    assert all(1 <= step <= 10 for step in steps), numbers
    listed = session.request("GET", "/images").json()
    ids = [image["id"] for image in (listed["images"] if isinstance(listed, dict) else listed)]
    assert ids == view["images"], listed


def test_capture_from_an_mjpeg_camera_stores_its_jpeg_byte_for_byte(session, media):
    view = session.capture("camera:live", pages=2, options={"interval": 0.1})
    numbers = []
    for iid in view["images"]:
        data = session.image(iid)
        assert data in media.live
        numbers.append(qr_number(data, "live"))
    assert numbers[0] != numbers[1], numbers


def test_a_capture_cut_by_a_kill_of_the_camera_ends_failed_with_its_scan_error(service,
                                                                              session):
    async def run() -> dict:
        http, ws = await ws_events(service, session)
        try:
            job = session.start("camera:clip", pages=50, options={"interval": 0.3})
            await until(ws, lambda m: m["topic"] == "scan.page" and m["data"]["job"] == job)
            pid = service.pid("camera")
            os.kill(pid, signal.SIGKILL)
            # the restarted actor ends the job the dead one left running
            failed = await until(ws, lambda m: m["topic"] == "scan.error"
                                 and m["data"]["job"] == job, timeout=60)
            service.wait_running("camera", other_than=pid, timeout=30)
            return failed["data"]
        finally:
            await ws.close()
            await http.close()
    event = asyncio.run(run())
    assert (event["state"], event["code"]) == ("failed", "actor_died"), event
    assert event["error"] == {"code": "actor_died", "message": event["message"]}, event
    assert 1 <= event["pages"] == len(event["images"]) < 50, event
    view = session.wait(event["job"])
    assert (view["state"], view["error"], view["images"]) == (
        "failed", event["error"], event["images"]), view
    listed = session.request("GET", "/images").json()
    ids = [image["id"] for image in (listed["images"] if isinstance(listed, dict) else listed)]
    assert ids[:len(event["images"])] == event["images"], listed  # the frames stored stay


# --- live view


def test_live_view_streams_jpeg_parts_at_the_source_rate(service, session):
    async def run():
        async with aiohttp.ClientSession() as http:
            viewer = await open_view(http, session.stream_url("camera:clip"))
            try:
                assert viewer.response.headers["Cache-Control"] == "no-store"
                parts = await viewer.read_for(1.5)
            finally:
                viewer.close()
            check_parts(parts)
            assert len(parts) >= 0.5 * FPS * 1.5, len(parts)
            numbers = [qr_number(p.body, "clip") for p in parts[:4]]
            assert len(set(numbers)) == len(numbers), numbers

            viewer = await open_view(http, session.stream_url("camera:clip", fps=5))
            try:
                parts = await viewer.read_for(1.5)
            finally:
                viewer.close()
            check_parts(parts)
            assert 3 <= len(parts) <= 1 + 6 * 1.5, len(parts)
    asyncio.run(run())


def test_two_viewers_share_one_camera_connection(service, client, camera, session):
    wait_closed(client, camera, "camera:live")
    before = camera.connections

    async def run():
        async with aiohttp.ClientSession() as http:
            viewers = await asyncio.gather(
                open_view(http, session.stream_url("camera:live")),
                open_view(http, session.stream_url("camera:live")))
            try:
                for got in await asyncio.gather(*(v.take(4) for v in viewers)):
                    check_parts(got)
                    assert all(p.body in camera.frames for p in got)
                assert camera.connections - before == 1
                assert camera.open_clients == 1
                feed = feeds(client)["camera:live"]
                assert feed["viewers"] == 2 and feed["size"] == [W, H], feed
                assert feed["ended"] is False and feed["error"] is None, feed
                listed = {s["id"]: s for s in session.api.get(f"{V1}/sources").json()}
                assert listed["camera:live"]["open"] is True
            finally:
                for viewer in viewers:
                    viewer.close()
    asyncio.run(run())
    left = time.monotonic()
    wait_closed(client, camera, "camera:live", timeout=RELEASE_AFTER + TICK + 5)
    assert time.monotonic() - left <= RELEASE_AFTER + TICK + 1.5
    assert camera.connections - before == 1
    closed = [r for r in service.log_records("camera")
              if r.get("msg") == "camera closed" and r.get("source") == "camera:live"]
    assert closed, "no 'camera closed' in logs/camera.log"


def test_a_camera_that_vanishes_ends_the_stream_and_fails_captures(service, client, camera,
                                                                   session):
    async def run():
        http, ws = await ws_events(service, session)
        try:
            viewer = await open_view(http, session.stream_url("camera:live"))
            try:
                check_parts(await viewer.take(2))
                camera.stop()
                started = time.monotonic()
                await viewer.until_end(timeout=8)
                assert viewer.eof and viewer.closed, "no closing boundary"
                assert time.monotonic() - started < 8
            finally:
                viewer.close()
            event = await until(ws, lambda m: m["topic"] == "camera.error")
            assert event["data"]["code"] == "device_gone", event
            assert event["data"]["source"] == "camera:live", event
            assert event["data"]["message"], event

            # a capture from the vanished camera fails
            job = session.start("camera:live", pages=1)
            failed = await until(ws, lambda m: m["topic"] == "scan.error"
                                 and m["data"]["job"] == job)
            assert failed["data"]["code"] == "device_gone", failed
            view = session.wait(job)
            assert view["state"] == "failed" and view["error"]["code"] == "device_gone", view
            # and so does a new live view, before its first frame: a JSON error
            async with http.get(session.stream_url("camera:live")) as response:
                assert response.status == 404, await response.text()
                assert (await response.json())["error"]["code"] == "device_gone"
        finally:
            await ws.close()
            await http.close()
    try:
        asyncio.run(run())
    finally:
        camera.start()
    ended = [r for r in service.log_records("camera")
             if r.get("msg") == "camera ended" and r.get("code") == "device_gone"]
    assert ended, "no 'camera ended' with device_gone in logs/camera.log"

    async def again():
        async with aiohttp.ClientSession() as http:
            viewer = await open_view(http, session.stream_url("camera:live"))
            try:
                parts = await viewer.take(3)
            finally:
                viewer.close()
            check_parts(parts)
            assert all(p.body in camera.frames for p in parts)
    asyncio.run(again())


# --- refused requests


def test_refused_streams_and_captures(api, client, camera, session):
    base = f"{V1}/sources"
    assert_error(api.get(f"{base}/camera:nope/stream?session={session.id}"
                         f"&token={session.token}"), 404, "not_found")
    assert_error(api.get(f"{base}/camera:nope/options", token=session.token), 404,
                 "not_found")
    assert_error(api.get(f"{base}/camera:clip/stream"), 401, "unauthorized")
    assert_error(api.get(f"{base}/camera:clip/stream?session={session.id}"), 401,
                 "unauthorized")
    assert api.get(f"{base}/camera:clip/stream?session={session.id}&token=wrong").status \
        in (401, 403)
    assert_error(api.get(f"{base}/camera:clip/stream?session={session.id}"
                         f"&token={session.token}&fps=0"), 400, "invalid_argument")

    # a frame size the clip does not give (asked while the clip is closed)
    wait_closed(client, source="camera:clip")
    assert_error(api.get(f"{base}/camera:clip/stream?session={session.id}"
                         f"&token={session.token}&resolution=1920x1080"), 422, "invalid_option")
    answer = session.request("POST", "/scans", json={
        "source": "camera:clip", "pages": 1, "options": {"resolution": "1920x1080"}})
    if answer.status == 202:  # refused once the camera opens: the job fails with the code
        view = session.wait(answer.json()["job"])
        assert view["state"] == "failed" and view["error"]["code"] == "invalid_option", view
    else:
        assert_error(answer, 422, "invalid_option")

    for options, code in (({"interval": -1}, "invalid_option"),
                          ({"interval": "soon"}, "invalid_option"),
                          ({"document": "yes"}, "invalid_option"),
                          ({"zoom": 2}, "invalid_option"),
                          ({"resolution": "big"}, "invalid_argument")):
        answer = session.request("POST", "/scans", json={
            "source": "camera:clip", "pages": 1, "options": options})
        assert 400 <= answer.status < 500, (options, answer.status, answer.body)
        assert answer.json()["error"]["code"] == code, (options, answer.body)
    for pages in (0, -1, "3", 1001):
        answer = session.request("POST", "/scans", json={"source": "camera:clip",
                                                         "pages": pages})
        assert_error(answer, 400, "invalid_argument")
    assert_error(session.request("POST", "/scans", json={"source": "camera:nope"}), 404,
                 "not_found")
    assert_error(session.request("POST", "/scans", token=None, json={
        "source": "camera:clip"}), 401, "unauthorized")


# --- document mode


def test_document_mode_straightens_the_page_in_the_frame(session):
    view = session.capture("camera:doc", pages=1, options={"document": True})
    page = cv2.imdecode(np.frombuffer(session.image(view["images"][0]), np.uint8),
                        cv2.IMREAD_GRAYSCALE)
    height, width = page.shape
    assert (width, height) != (W, H)
    assert height / width == pytest.approx(A4, rel=0.05), page.shape
    check_markers(page)  # upright, not mirrored: each corner holds its own marker


def test_the_cli_lists_cameras_and_captures_frames_into_a_pdf(service, media, tmp_path):
    listed = service.cli("sources", check=True).stdout
    assert re.search(r"^camera:clip\s+clip: .*clip\.avi \(file camera\)$", listed, re.M), listed
    assert re.search(r"^test:0\s", listed, re.M), listed  # scanners are still there
    options = service.cli("options", "camera:clip", check=True).stdout
    assert options.splitlines()[0].split()[:2] == [f"{W}x{H}", "MJPG"], options
    out = tmp_path / "frames.pdf"
    done = service.cli("scan", "--source", "camera:clip", "--pages", "2",
                       "--option", "interval=0.1", "-o", str(out), check=True)
    assert done.stdout.strip() == str(out)
    with pymupdf.open(out) as pdf:
        frames = [pdf.extract_image(page.get_images()[0][0])["image"] for page in pdf]
    assert len(frames) == 2 and all(frame in media.clip_packets for frame in frames)
    refused = service.cli("scan", "--source", "camera:clip", "--option", "zoom=2", "-o",
                          str(tmp_path / "x.pdf"))
    assert refused.returncode != 0 and "invalid_option" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_mjpeg_camera_url_with_a_password_logs_in_with_basic_auth():
    """urllib would take ``user:password@`` for part of the host name."""
    wanted = "Basic " + base64.b64encode(b"user:p@ss").decode()
    frame = jpeg_of(numbered("auth", 1))

    class Camera(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.headers.get("Authorization") != wanted:
                self.send_response(401)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
            self.end_headers()
            self.wfile.write(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                             % len(frame) + frame + b"\r\n")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Camera)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    try:
        reader = MjpegReader(f"http://user:p%40ss@127.0.0.1:{port}/stream")
        assert next(reader.frames()) == frame
        reader.close()
        with pytest.raises(Error) as refused:
            MjpegReader(f"http://user:wrong@127.0.0.1:{port}/stream")
        assert refused.value.code == "access_denied"
    finally:
        server.shutdown()
        server.server_close()
