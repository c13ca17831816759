"""Cameras from a real browser (Debian's Chromium through Playwright): the demo's Camera
panel, and ``session.liveView()`` / ``session.capture()`` of scanbridge.js, against the real
service (its camera actor, started on demand).

Two camera sources, both made by this module: ``camera:clip``, a generated MJPG video file
(640x360, 20 frames at 15 fps, a white block moving over a changing background, so every
frame differs), and ``camera:live``, a small MJPEG-over-HTTP server of the same frames that
can be made to vanish (it drops its viewers and refuses new ones).

The demo's Camera panel (element ids, in the style of the demo's others):

==========================  =========================================================
``#camera-form``            the panel (a form; submit captures)
``#camera``                 the cameras of ``listSources()`` (``type: "camera"``); the
                            scanner list (``#source``) no longer shows them
``#camera-live``            the live view's frame; ``data-state`` off, starting, live, error
``#camera-view``            the live view's <img> (no ``src`` while off)
``#camera-fps``             frames a second of the live view (5, 10, 15, 30)
``#camera-start``, ``#camera-stop``
``#camera-frames``          frames to capture; ``#camera-interval`` seconds between them
``#camera-document``        document mode
``#camera-capture``, ``#camera-cancel``, ``#camera-progress-text``
``body[data-live]``         "1" while the live view runs; ``body[data-capturing]`` likewise
==========================  =========================================================
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from tests.support.browser import CAUGHT, Watched
from tests.support.service import started
from tests.support.stack import poll_for

pytestmark = pytest.mark.timeout(120)

WAIT_MS = 20_000  # the longest a page may take for one expected change (2 loaded cores)
WIDTH, HEIGHT, FRAMES, FPS = 640, 360, 20, 15


def frames() -> list[np.ndarray]:
    """The clip's frames (BGR): the background's colour and a white block's place change."""
    out = []
    for number in range(FRAMES):
        frame = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        frame[:] = (number * 12, 80, 255 - number * 12)
        cv2.rectangle(frame, (number * 28, 120), (number * 28 + 80, 240), (255, 255, 255), -1)
        out.append(frame)
    return out


class MjpegServer:
    """MJPEG over HTTP (multipart/x-mixed-replace) on 127.0.0.1, in threads of its own.
    ``vanish()``: the streams end and new requests get 503, as a camera unplugged."""

    def __init__(self, jpegs: list[bytes]):
        self.jpegs = jpegs
        self.gone = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                if outer.gone.is_set():
                    self.send_error(503)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=f")
                self.end_headers()
                number = 0
                try:
                    while not outer.gone.is_set():
                        jpeg = outer.jpegs[number % len(outer.jpegs)]
                        self.wfile.write(b"--f\r\nContent-Type: image/jpeg\r\nContent-Length: "
                                         + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg
                                         + b"\r\n")
                        self.wfile.flush()
                        number += 1
                        time.sleep(1 / FPS)
                except (ConnectionError, OSError):
                    pass
                self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def vanish(self) -> None:
        self.gone.set()

    def close(self) -> None:
        self.gone.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mjpeg():
    jpegs = [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
             for frame in frames()]
    server = MjpegServer(jpegs)
    yield server
    server.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, mjpeg):
    home = tmp_path_factory.mktemp("home")
    clip = home / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for frame in frames():
        writer.write(frame)
    writer.release()
    yield from started(home / "service", (
        f"[camera]\nsources = clip={clip}, live=http://127.0.0.1:{mjpeg.port}/stream\n"
        "v4l2 = false\nrelease_after = 1\n"))


def viewers(service, source: str) -> int:
    """The live views of a source the camera actor counts now."""
    status = service.client().call("camera", "status", {}, timeout=10)
    return sum(feed["viewers"] for feed in status["feeds"] if feed["source"] == source)


def released(service, source: str) -> None:
    poll_for(lambda: viewers(service, source) == 0, timeout=5,
             what=f"no viewers of {source}")


# Draws the live view's <img> onto a small canvas: its pixels now (same origin: the canvas
# is not tainted, so they can be read).
SAMPLE = """(img) => {
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = 36;
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(img, 0, 0, 64, 36);
  return Array.from(context.getImageData(0, 0, 64, 36).data);
}"""


def test_the_demo_shows_the_live_view_and_captures_frames(context, service):
    watched = Watched.demo(context, service)
    page = watched.page
    cameras = page.eval_on_selector_all("#camera option", "os => os.map(o => o.value)")
    assert cameras == ["camera:clip", "camera:live"], cameras
    scanners = page.eval_on_selector_all("#source option", "os => os.map(o => o.value)")
    assert not any(s.startswith("camera:") for s in scanners), scanners
    assert page.get_attribute("#camera-view", "src") is None
    assert page.is_disabled("#camera-stop")

    # Live view: the <img> shows the camera's frames, and they change.
    page.select_option("#camera-fps", "15")
    page.click("#camera-start")
    page.wait_for_selector('#camera-live[data-state="live"]', timeout=WAIT_MS)
    view = page.query_selector("#camera-view")
    assert view.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [WIDTH, HEIGHT]
    assert page.get_attribute("body", "data-live") == "1"
    assert page.is_disabled("#camera-start") and not page.is_disabled("#camera-stop")
    first = view.evaluate(SAMPLE)
    assert max(first) > 0, "the canvas got no pixels"
    page.wait_for_function(f"([img, first]) => ({SAMPLE})(img).some((v, i) => "
                           "Math.abs(v - first[i]) > 40)", arg=[view, first], timeout=WAIT_MS)
    assert viewers(service, "camera:clip") == 1

    # Stop: the src goes, the stream ends, the camera actor counts no viewer.
    page.click("#camera-stop")
    assert page.get_attribute("#camera-view", "src") is None
    assert page.get_attribute("#camera-live", "data-state") == "off"
    assert page.get_attribute("body", "data-live") == "0"
    released(service, "camera:clip")

    # Capture two frames: two new pages, of the frames' size.
    before = page.eval_on_selector_all("#thumbnails .thumb", "ts => ts.length")
    page.fill("#camera-frames", "2")
    page.fill("#camera-interval", "0.1")
    page.click("#camera-capture")
    page.wait_for_function(f"() => document.querySelectorAll('#thumbnails .thumb').length "
                           f"=== {before + 2}", timeout=WAIT_MS)
    page.wait_for_selector('body[data-capturing="0"]', timeout=WAIT_MS)
    captions = page.eval_on_selector_all("#thumbnails .thumb figcaption",
                                         "cs => cs.map(c => c.textContent)")
    assert all(c.endswith(f"{WIDTH}×{HEIGHT}") for c in captions[-2:]), captions
    assert page.inner_text("#camera-progress-text") == "Captured 2 frame(s)."
    page.wait_for_function("() => [...document.querySelectorAll('#thumbnails .thumb img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=WAIT_MS)
    assert watched.errors == []


SCRIPT = """
async () => {
  const {connect, LiveView, ScanJob, ScanbridgeError} = await import("/scanbridge.js");
""" + CAUGHT + """
  const out = {};
  const session = await connect({url: location.origin, reuse: false});
  const sources = await session.listSources();
  out.cameras = sources.filter((s) => s.type === "camera").map((s) => [s.id, s.kind]);

  // A live view, then stop(): the src is cleared, ended resolves.
  const img = document.createElement("img");
  document.body.append(img);
  const view = session.liveView(img, {source: "camera:clip", fps: 10});
  out.atOnce = {instance: view instanceof LiveView, state: view.state,
                src: img.getAttribute("src") === view.url, url: view.url};
  out.started = await view.started;
  out.live = {state: view.state, width: img.naturalWidth, height: img.naturalHeight};
  window.__stop = () => {
    view.stop();
    view.stop();  // twice is fine
    return view.ended.then(() => ({state: view.state, src: img.getAttribute("src")}));
  };

  // Capture two frames: a ScanJob whose pages are the frames.
  const seen = [];
  const job = session.capture({source: "camera:clip", frames: 2, interval: 0.1,
                               onPage: (info) => seen.push(info.id)});
  out.instance = job instanceof ScanJob;
  const record = await job.done;
  out.capture = {state: record.state, images: record.images, seen,
                 pages: job.pages.map((p) => [p.id, p.width, p.height, p.format, p.source])};
  out.buffer = (await session.images()).map((p) => p.id);

  // An unknown camera: ended rejects with the service's code; onError hears it too.
  const errors = [];
  const bad = session.liveView(document.createElement("img"),
                               {source: "camera:nope", onError: (e) => errors.push(e.code)});
  out.unknown = {ended: await caught(bad.ended), started: await caught(bad.started),
                 state: bad.state, errors};
  out.badArgument = await caught((async () => session.liveView(img, {}))());
  // A frame size the camera does not give (camera:live is not open yet).
  const wrongSize = session.liveView(document.createElement("img"),
                                     {source: "camera:live", resolution: "320x200"});
  out.wrongSize = await caught(wrongSize.ended);
  window.__session = session;
  return out;
}
"""

VANISH_START = """
async () => {
  const img = document.createElement("img");
  document.body.append(img);
  const errors = [];
  const view = window.__session.liveView(img, {source: "camera:live",
                                               onError: (e) => errors.push(e.code)});
  const size = await view.started;
  window.__vanished = view.ended.then(() => ({resolved: true}), (e) => ({
    code: e.code, message: e.message, source: e.details.source, state: view.state,
    errors, src: img.getAttribute("src")}));
  return size;
}
"""


def test_live_view_and_capture_from_a_page_script(context, service, mjpeg):
    watched = Watched(context)
    page = watched.page
    page.goto(service.url("/"))
    out = page.evaluate(SCRIPT)
    assert out["cameras"] == [["camera:clip", "file"], ["camera:live", "mjpeg"]], out["cameras"]

    at_once = out["atOnce"]
    assert at_once["instance"] and at_once["state"] == "starting" and at_once["src"], at_once
    assert "/api/v1/sources/camera%3Aclip/stream?" in at_once["url"], at_once["url"]
    assert "token=" in at_once["url"] and "fps=10" in at_once["url"], at_once["url"]
    assert out["started"] == {"width": WIDTH, "height": HEIGHT}
    assert out["live"] == {"state": "live", "width": WIDTH, "height": HEIGHT}

    assert out["instance"] is True
    capture = out["capture"]
    assert capture["state"] == "done" and len(capture["images"]) == 2, capture
    assert [p[0] for p in capture["pages"]] == capture["images"] == capture["seen"]
    assert all(p[1:] == [WIDTH, HEIGHT, "jpeg", "camera:clip"] for p in capture["pages"]), \
        capture["pages"]
    assert out["buffer"] == capture["images"]

    unknown = out["unknown"]
    assert (unknown["ended"]["code"], unknown["ended"]["status"]) == ("not_found", 404), unknown
    assert unknown["started"]["code"] == "not_found" and unknown["state"] == "failed"
    assert unknown["errors"] == ["not_found"]
    assert out["badArgument"]["code"] == "invalid_argument"
    assert (out["wrongSize"]["code"], out["wrongSize"]["status"]) == ("invalid_option", 422), \
        out["wrongSize"]

    # The view still runs (the capture shared its camera); stopping it releases the camera.
    assert viewers(service, "camera:clip") == 1
    assert page.evaluate("() => window.__stop()") == {"state": "stopped", "src": None}
    released(service, "camera:clip")

    # A camera that goes away mid-view: ended rejects with device_gone (the service's
    # camera.error event), onError hears it, the element lets the stream go.
    assert page.evaluate(VANISH_START) == {"width": WIDTH, "height": HEIGHT}
    mjpeg.vanish()
    vanished = page.evaluate("() => window.__vanished")
    assert vanished == {"code": "device_gone", "message": vanished["message"],
                        "source": "camera:live", "state": "failed", "errors": ["device_gone"],
                        "src": None}, vanished
    released(service, "camera:live")
    # The browser logs the failed streams' answers (404, 422) itself; nothing else went wrong.
    assert [e for e in watched.errors
            if "status of 404" not in e and "status of 422" not in e] == [], watched.errors
