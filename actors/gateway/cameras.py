"""v1 live view: ``GET /api/v1/sources/{src}/stream`` as MJPEG (multipart/x-mixed-replace).

The stream pulls frames from the camera actor one at a time (``camera.frame`` with the
last frame number), at most ``fps`` a second, so each viewer gets the newest frame and a
slow one skips frames instead of queueing them. The camera is opened once however many
viewers there are (the actor shares one reader) and released when the last one leaves.
A stream needs a session (``?session=SID&token=TOKEN``): a page that may not use the
service cannot show the user's camera either. When the camera goes away the stream ends
cleanly and the session gets a ``camera.error`` event.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from aiohttp import web

from broker.protocol import Error

from .caps import too_many
from .sessions import Holder
from .shared import state

BOUNDARY = "scanbridge-frame"
FRAME_TIMEOUT = 30.0  # seconds for the first frame: the actor may have to start


def _fps(request: web.Request, cap: float) -> float:
    raw = request.query.get("fps")
    if raw is None or raw == "":
        return cap
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 120:  # slower viewers would outlast the camera's lease
        raise Error("invalid_argument", "fps must be 1..120 frames a second")
    return min(value, cap)


async def stream(request: web.Request) -> web.StreamResponse:
    """Each viewer costs a frame request to the camera actor per frame: their number is
    capped (``[gateway] max_viewers``). The session is checked first: a page without
    one learns nothing, not even how many views are open."""
    st = state(request)
    holder = await st.sessions.of_request(request)
    limit = st.cfg.gateway.max_viewers
    if st.viewers >= limit:
        raise too_many("camera live views", st.viewers, limit, "close a live view (a page "
                       "or <img> showing a /stream URL) first")
    st.viewers += 1
    try:
        return await _view(request, holder)
    finally:
        st.viewers -= 1


async def _view(request: web.Request, holder: Holder) -> web.StreamResponse:
    st = state(request)
    source = request.match_info["src"]
    fps = _fps(request, st.cfg.camera.max_fps)
    viewer = secrets.token_hex(8)
    args = {"source": source, "viewer": viewer}
    if request.query.get("resolution"):
        args["resolution"] = request.query["resolution"]
    # The first frame before the answer starts: a bad source is a JSON error, not a
    # broken image.
    reply = await st.broker.request("camera", "frame", {**args, "after": 0},
                                    timeout=FRAME_TIMEOUT)
    response = web.StreamResponse(headers={
        "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
    await response.prepare(request)
    period = 1.0 / fps
    due = time.monotonic()
    try:
        while True:
            frame = reply.result
            jpeg = reply.blobs[0].bytes
            await response.write(
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n"
                f"X-Frame: {frame['seq']}\r\n\r\n".encode() + jpeg + b"\r\n")
            # A fixed schedule: waiting a whole period after each write would lose about a
            # frame in fifteen to the time the write and the next request take.
            due = max(due + period, time.monotonic() - period)
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            reply = await st.broker.request("camera", "frame", {
                **args, "after": frame["seq"]}, timeout=FRAME_TIMEOUT)
    except Error as exc:
        st.log.info("live view ended", source=source, code=exc.code)
        st.hub.dispatch("camera.error", {"session": holder.id, "source": source,
                                         "code": exc.code, "message": exc.message})
        try:
            await response.write(f"--{BOUNDARY}--\r\n".encode())
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass
    except (ConnectionError, asyncio.CancelledError):
        pass  # the viewer left
    finally:
        asyncio.ensure_future(_release(st, source, viewer))
    return response


async def _release(st, source: str, viewer: str) -> None:
    try:
        await st.broker.call("camera", "release", {"source": source, "viewer": viewer},
                             timeout=5.0)
    except Error:
        pass  # its lease runs out by itself
