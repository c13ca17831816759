"""Logs and the home against other local users and hostile web pages (issue 18).

Log injection: a page makes the browser request a path full of terminal escapes and a
newline; the refusal record keeps what was sent, escaped, in ``logs/gateway.log`` and in
``scanbridge logs``, and no line of either is the attacker's. Secrets: a camera URL with
``user:password@`` and a query, an upload to a URL with a signature in its query; no
password or query value reaches a log, a dump, the source listings (HTTP and CLI) or the
upload job, and nothing the service writes in its home (nor ``scanbridge allow``) can be
read by another user.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import stat
from pathlib import Path

import pytest
from PIL import Image

from broker import logs
from tests.support.mjpeg import MjpegServer
from tests.support.receiver import Receiver
from tests.support.service import Service, running
from tests.support.stack import poll_for, write_ini
from tests.support.web import Api, WebSession

pytestmark = pytest.mark.timeout(180)

V1 = "/api/v1"
# What a page can make a browser send: clear the screen, retitle the terminal, ring the
# bell, start a forged line; DEL and the C1 CSI (U+009B) too.
ATTACK = b"/%1b%5b2J%1b%5d0;pwned%07%0aFAKE-LINE%7f%c2%9b"
# Distinctive stand-ins for secrets, so that a random id in a log cannot match them.
PASSWORD, KEY, SIGNATURE = "s3cretPW", "k3yVALUE", "S1GSECRET"
SECRETS = (PASSWORD, KEY, SIGNATURE)


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture(scope="module")
def camera():
    server = MjpegServer([jpeg()], fps=10).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def rx():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def service(tmp_path_factory, camera, rx):
    home = tmp_path_factory.mktemp("home")
    url = f"http://user:{PASSWORD}@127.0.0.1:{camera.port}/stream?key={KEY}"
    svc = Service(home, extra_ini=f"[camera]\nsources = cam={url}\nv4l2 = false\n")
    write_ini(home, "user_config.ini", f"[access]\nupload_targets = {rx.url('/')}\n")
    svc.before = {p for p in home.rglob("*") if p.is_file()}  # what the test wrote
    yield from running(svc)


def raw_request(service: Service, path: bytes, headers: bytes = b"") -> bytes:
    """One request sent byte for byte (http.client would quote the path)."""
    with socket.create_connection(("127.0.0.1", service.ports[1]), timeout=10) as sock:
        sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers
                     + b"Connection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_a_hostile_path_is_logged_escaped_and_shown_escaped(service):
    answer = raw_request(service, ATTACK, b"Origin: https://evil.example\r\n")
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert raw_request(service, ATTACK).startswith(b"HTTP/1.1 404 ")
    poll_for(lambda: [r for r in service.log_records("gateway")
                      if r["msg"] == "refused origin" and "FAKE-LINE" in r.get("path", "")],
             10, "the refusal record")

    data = (service.home / "logs" / "gateway.log").read_bytes()
    assert not [b for b in set(data) if (b < 0x20 and b != 0x0A) or b == 0x7F]
    assert "\u009b".encode() not in data
    assert not [line for line in data.split(b"\n") if line.startswith(b"FAKE-LINE")]
    assert b"/\\u001b[2J\\u001b]0;pwned\\u0007\\nFAKE-LINE\\u007f\\u009b" in data

    shown = {args: service.cli("logs", "gateway", "-n", "200", *args, check=True).stdout
             for args in ((), ("--raw",))}
    for args, text in shown.items():
        assert not {"\x1b", "\x07", "\x7f", "\x9b"} & set(text), args
        assert not [line for line in text.splitlines() if line.startswith("FAKE-LINE")]
    # The operator still sees what was sent.
    assert "path=/\\x1b[2J\\x1b]0;pwned\\x07\\nFAKE-LINE\\x7f\\x9b" in shown[()]


@pytest.mark.parametrize("url, masked", [
    ("http://user:pw@127.0.0.1:8080/x?key=abc", "http://user:***@127.0.0.1:8080/x?key=***"),
    ("https://h.example/in?sig=S&a=1&flag", "https://h.example/in?sig=***&a=***&***"),
    ("rtsp://u:p@[::1]:554/live", "rtsp://u:***@[::1]:554/live"),
    ("http://h.example/plain", "http://h.example/plain"),
    ("/dev/video0", "/dev/video0"),
    ("clip=with spaces.mjpg", "clip=with spaces.mjpg"),
])
def test_mask_url(url, masked):
    assert logs.mask_url(url) == masked


def test_urls_inside_messages_are_masked():
    assert logs.mask_urls("cannot open http://u:pw@h/s?k=v: refused (http://h/?t=1).") == \
        "cannot open http://u:***@h/s?k=***: refused (http://h/?t=***)."


def test_the_home_is_private_and_no_listing_or_log_shows_a_secret(service, camera, rx):
    listed = {s["id"]: s for s in Api(service).get(f"{V1}/sources").json()}
    assert listed["camera:cam"]["device"] == \
        f"http://user:***@127.0.0.1:{camera.port}/stream?key=***"
    cli_sources = service.cli("sources", check=True).stdout
    assert "camera:cam" in cli_sources and "user:***@" in cli_sources

    session = WebSession(Api(service))
    answer = session.post("/scans", json={"source": "camera:cam", "pages": 1, "options": {}})
    assert answer.status == 202, answer.body
    job = answer.json()["job"]
    done = poll_for(lambda: (view := session.get(f"/scans/{job}").json())["state"]
                    != "running" and view, 30, "the capture")
    assert done["state"] == "done", done

    upload = session.post("/uploads", json={"url": rx.url(f"/in?sig={SIGNATURE}"),
                                            "images": done["images"], "format": "pdf"})
    assert upload.status == 202, upload.body
    assert upload.json()["url"] == rx.url("/in?sig=***")
    finished = poll_for(lambda: (view := session.get(f"/uploads/{upload.json()['job']}")
                                 .json())["state"] in ("done", "failed") and view,
                        30, "the upload")
    assert finished["state"] == "done", finished
    assert [r.query for r in rx.requests_to("/in")] == [f"sig={SIGNATURE}"]  # still sent
    refused = session.post("/uploads", json={"url": f"http://elsewhere.example/?sig="
                                             f"{SIGNATURE}", "images": done["images"]})
    assert refused.status == 403 and refused.error["code"] == "upload_target_not_allowed"

    allowed = service.cli("allow", "https://app.example", check=True)
    assert "allowed" in allowed.stdout
    barcode = service.pid("barcode")
    os.kill(barcode, signal.SIGKILL)  # a crash dump
    poll_for(lambda: [d for d in service.dumps() if d.name.startswith("barcode-")], 30,
             "the barcode crash dump")
    service.wait_running("barcode", other_than=barcode)
    poll_for(lambda: [r for r in service.log_records("uploader")
                      if r["msg"] == "refused upload target"], 10, "the refusal record")

    home = service.home
    private = []
    for path in [home, *home.rglob("*")]:
        if path == home or home / "user" in (path, *path.parents):
            continue  # the test's own folders: the fake $HOME of the service user
        if path in service.before:  # written by this test, not by the service
            continue
        try:
            info = path.lstat()
        except FileNotFoundError:  # a temp file renamed meanwhile
            continue
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077 and not stat.S_ISLNK(info.st_mode):
            private.append(f"{path.relative_to(home)} {mode:o}")
    assert private == []
    assert stat.S_IMODE((home / "ini" / "user_config.ini").stat().st_mode) == 0o600

    leaked = []
    for path in [*(home / "logs").glob("*.log*"), *(home / "dumps").glob("*.dump")]:
        text = path.read_text(errors="replace")
        leaked += [f"{path.name}: {s}" for s in SECRETS if s in text]
    assert leaked == []
    shown = service.cli("logs", "uploader", "-n", "500", check=True).stdout
    assert f"{rx.url('/in?sig=***')}" in shown and not [s for s in SECRETS if s in shown]
    assert not [s for s in SECRETS if s in cli_sources]
    assert not [s for s in SECRETS if s in str(listed)]
