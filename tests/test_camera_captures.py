"""Camera captures into the buffer and the requests the camera refuses, against the real
service (one service with test_camera_live_view; its sources: tests/support/camera.py).

Covered: the listing of the cameras and their options; captures from a video file (its
JPEG packets kept byte for byte, frames in order) and from an MJPEG camera; a capture cut
by a kill -9 of the camera (failed with actor_died and its ``scan.error`` once the camera
is back); refused streams and captures; document mode; the CLI's sources, options and scan
of a camera.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal

import cv2
import numpy as np
import pymupdf
import pytest
from PIL import Image

from tests.support.camera import (CLIP_FRAMES, FPS, H, V1, W, WAIT, assert_error, qr_number,
                                  until, wait_closed)
from tests.support.camera import camera, media, service, session  # fixtures
from tests.support.events import ws_events
from tests.test_camera_document import A4, check_markers

pytestmark = pytest.mark.timeout(120)


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
        http, ws = await ws_events(service, session, WAIT)
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

