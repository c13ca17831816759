"""The gateway's live view of a camera, read as MJPEG by a plain HTTP client, against the
real service (one service with test_camera_captures; its sources: tests/support/camera.py).

Covered: the parts, their sizes and rate, and the ``fps=`` cap; two viewers sharing one
camera connection and the camera closing after ``release_after``; the camera vanishing
mid-stream (the stream ends, ``camera.error`` on the session socket, captures fail with
device_gone, and it works again once the camera is back).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.support.camera import (FPS, H, RELEASE_AFTER, TICK, V1, W, WAIT, check_parts, feeds,
                                  open_view, qr_number, until, wait_closed)
from tests.support.camera import camera, media, service, session  # fixtures
from tests.support.events import ws_events

pytestmark = pytest.mark.timeout(120)


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
        http, ws = await ws_events(service, session, WAIT)
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
