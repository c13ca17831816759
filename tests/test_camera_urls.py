"""A camera URL's password goes to the camera's own origin only; only http(s) is followed.

An MJPEG camera's URL with ``user:password@`` logs in with Basic auth (``%40`` in the
password is an ``@``), and a wrong password is refused with ``access_denied``.

The attacks: an MJPEG camera (or whoever answers at its address) redirects to another host,
which got the camera's ``Authorization: Basic``; or to ``ftp://`` (followed, with the
credentials) or ``file://``. Each camera here is a real local MJPEG server
(tests/support/mjpeg.py) that records the headers it was sent; another port is another
origin. A source of another scheme is refused when the service starts.
"""

from __future__ import annotations

import base64
import http.server
import io
import socket
import threading

import pytest
from PIL import Image

from actors.camera.readers import MjpegReader
from broker.protocol import Error
from tests.support.camera import jpeg_of, numbered
from tests.support.mjpeg import MjpegServer
from tests.support.service import Service
from tests.support.stack import free_port
from tests.support.web import Api, WebSession

pytestmark = pytest.mark.timeout(120)

V1 = "/api/v1"
BASIC = "Basic " + base64.b64encode(b"cam:s3cret").decode()


class Listener:
    """A TCP port that counts the connections it is offered (an FTP server's place)."""

    def __init__(self):
        self.port = free_port()
        self.sock = socket.create_server(("127.0.0.1", self.port))
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def cameras():
    frame = io.BytesIO()
    Image.new("RGB", (320, 240), "gray").save(frame, "JPEG")
    frames = [frame.getvalue()]
    ftp = Listener()
    elsewhere = MjpegServer(frames, fps=10).start()
    servers = {
        "elsewhere": elsewhere,
        "moved": MjpegServer(frames, fps=10, redirect=elsewhere.url).start(),
        "to-ftp": MjpegServer(frames, fps=10, redirect=(
            f"ftp://cam:s3cret@127.0.0.1:{ftp.port}/stream.mjpg")).start(),
        "to-file": MjpegServer(frames, fps=10, redirect="file:///etc/passwd").start(),
    }
    yield servers, ftp
    for server in servers.values():
        server.stop()
    ftp.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory, cameras):
    servers, _ = cameras
    named = ", ".join(f"{name}=http://cam:s3cret@127.0.0.1:{servers[name].port}/stream"
                      for name in ("moved", "to-ftp", "to-file"))
    svc = Service(tmp_path_factory.mktemp("home"), extra_ini=(
        f"[camera]\nsources = {named}\nv4l2 = false\n"))
    svc.start()
    opened = WebSession(Api(svc))
    yield opened
    opened.delete()
    svc.stop()


def options(session: WebSession, source: str):
    return session.api.get(f"{V1}/sources/camera:{source}/options", token=session.token)


def test_a_redirect_to_another_origin_does_not_get_the_cameras_password(session, cameras):
    servers, _ = cameras
    answer = options(session, "moved")
    assert answer.status == 200, answer.body  # the frames come from where it redirected
    assert answer.json()["size"] == "320x240"
    assert [r.get("Authorization") for r in servers["moved"].requests] == [BASIC]
    assert servers["elsewhere"].requests, "the redirect was not followed"
    assert all("Authorization" not in r for r in servers["elsewhere"].requests), \
        servers["elsewhere"].requests


@pytest.mark.parametrize("source, scheme", [("to-ftp", "ftp"), ("to-file", "file")])
def test_a_redirect_to_ftp_or_file_is_refused_with_a_camera_error(session, cameras, source,
                                                                  scheme):
    servers, ftp = cameras
    answer = options(session, source)
    assert answer.status == 422, answer.body
    error = answer.json()["error"]
    assert error["code"] == "invalid_option", error
    assert f"redirects to a {scheme}: URL" in error["message"], error
    assert "s3cret" not in error["message"]
    assert servers[source].requests  # the camera was asked, its redirect was not followed
    assert ftp.connections == 0


@pytest.mark.parametrize("target, scheme", [
    ("ftp://cam:s3cret@127.0.0.1/stream.mjpg", "ftp"), ("tcp://127.0.0.1:9000", "tcp"),
    ("concat:a.avi|b.avi", "concat")])
def test_a_camera_source_of_another_scheme_is_refused_at_start_up(tmp_path, target, scheme):
    svc = Service(tmp_path, extra_ini=f"[camera]\nsources = desk={target}\n")
    ini = svc.home / "ini" / "DSConfiguration.ini"
    line = ini.read_text().splitlines().index(f"sources = desk={target}") + 1
    done = svc.cli("start")
    if done.returncode == 0:  # it started with that source: leave nothing running
        svc.stop()
    assert done.returncode == 78, done.stderr + done.stdout
    assert done.stderr == (
        f"scanbridge: configuration error: {ini}:{line}: sources: camera 'desk': {scheme}: is "
        "not a camera source (use http(s):// for an MJPEG camera, rtsp(s):// or rtmp:// for "
        "a stream, or a video file's path)\n")
    assert svc.processes() == {}


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
