"""Caps on what clients hold open, and imports that do not sit in the gateway's memory.

One service with small caps (``max_sessions``, ``max_sessions_per_origin``,
``max_viewers``) and a local MJPEG camera. Replayed: a client that opens sessions as fast
as it can (only the cap opens, the rest get 429 ``too_many`` saying what to close, and
closing one frees its place); per-origin caps (the service's two own origins and local
programs without ``Origin`` each count apart); more live views than ``max_viewers``;
three 100 MB imports at once, after which the gateway's peak memory grew by far less than
one of them, and a real 100 MB TIFF among them is imported whole.
"""

from __future__ import annotations

import asyncio
import http.client
import io
from concurrent.futures import ThreadPoolExecutor

import aiohttp
import pytest
from PIL import Image, ImageDraw

from broker.protocol import Error
from tests.support.mjpeg import MjpegServer
from tests.support.service import Service, started
from tests.support.stack import poll_for
from tests.support.web import Answer, Api, WebSession

pytestmark = pytest.mark.timeout(300)

SESSIONS, PER_ORIGIN, VIEWERS = 7, 3, 2
WAIT = 30.0
MB = 1024 * 1024
BIG = 100 * MB  # each of the concurrent imports


def jpeg(number: int) -> bytes:
    image = Image.new("RGB", (160, 120), (250, 250, 245))
    ImageDraw.Draw(image).text((60, 50), f"{number:02d}", fill=(0, 0, 0))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


@pytest.fixture(scope="module")
def camera():
    server = MjpegServer([jpeg(n) for n in range(5)], fps=10).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, camera):
    yield from started(tmp_path_factory.mktemp("home"), (
        f"[gateway]\nmax_sessions = {SESSIONS}\nmax_sessions_per_origin = {PER_ORIGIN}\n"
        f"max_viewers = {VIEWERS}\n[camera]\nsources = live={camera.url}\nv4l2 = false\n"
        "release_after = 0.5\n"))


def own(svc: Service, name: str) -> str:
    return f"http://{name}:{svc.ports[1]}"


def too_many(answer: Answer, count: int, limit: int) -> str:
    assert answer.status == 429, (answer.status, answer.body[:300])
    error = answer.error
    assert error["code"] == "too_many", error
    assert error["open"] == count and error["limit"] == limit, error
    assert "close" in error["message"], error
    assert f"({count} open, limit {limit})" in error["message"], error
    return error["message"]


def buffer_sessions(svc: Service) -> int:
    with svc.client() as client:
        return len(client.call("buffer", "sessions", timeout=15))


def close_all(sessions: list[WebSession]) -> None:
    for session in sessions:
        session.delete()


def test_sessions_past_the_caps_get_429_and_a_closed_one_frees_its_place(service):
    local, page, other_page = (Api(service), Api(service, own(service, "127.0.0.1")),
                               Api(service, own(service, "localhost")))
    before = buffer_sessions(service)
    opened: list[WebSession] = []
    try:
        # A local program opening sessions as fast as it can gets its cap, then 429s.
        answers = [local.post("/api/v1/sessions", json={}) for _ in range(40)]
        assert [a.status for a in answers].count(201) == PER_ORIGIN
        opened += [WebSession(local, a.json()["id"], a.json()["token"])
                   for a in answers if a.status == 201]
        message = too_many(answers[-1], PER_ORIGIN, PER_ORIGIN)
        assert "local programs" in message
        assert buffer_sessions(service) == before + PER_ORIGIN
        # Other origins have their own caps, up to the total.
        opened += [WebSession(page) for _ in range(PER_ORIGIN)]
        too_many(page.post("/api/v1/sessions", json={}), PER_ORIGIN, PER_ORIGIN)
        assert "http://127.0.0.1" in page.post("/api/v1/sessions", json={}).error["message"]
        opened.append(WebSession(other_page))
        too_many(other_page.post("/api/v1/sessions", json={}), SESSIONS, SESSIONS)
        # Closing one frees its place: over HTTP, and over the broker (the event).
        opened.pop(-2).delete()
        opened.append(WebSession(page))
        too_many(page.post("/api/v1/sessions", json={}), SESSIONS, SESSIONS)
        gone = opened.pop(0)
        with service.client() as client:
            client.call("buffer", "close_session", {"session": gone.id}, timeout=15)
        opened.append(poll_for(lambda: opened_if_free(local), WAIT,
                               "the place of a session closed over the broker", every=0.2))
    finally:
        close_all(opened)
    assert buffer_sessions(service) == before
    assert WebSession(local).delete().status == 200  # all places free again


def opened_if_free(api: Api) -> WebSession | None:
    answer = api.post("/api/v1/sessions", json={})
    if answer.status != 201:
        assert answer.status == 429, answer.body
        return None
    return WebSession(api, answer.json()["id"], answer.json()["token"])


def test_live_views_past_max_viewers_get_429(service, camera):
    session = WebSession(Api(service))
    url = service.url(f"/api/v1/sources/camera:live/stream?session={session.id}"
                      f"&token={session.token}")

    async def main():
        async with aiohttp.ClientSession() as http:
            views = []
            for _ in range(VIEWERS):
                views.append(await http.get(url))
                assert views[-1].status == 200
                await views[-1].content.readline()  # the first part is coming
            refused = await http.get(url)
            assert refused.status == 429
            error = (await refused.json())["error"]
            assert error["code"] == "too_many" and error["limit"] == VIEWERS, error
            assert "close a live view" in error["message"]
            # Without a token it is 401 even now: the count is for sessions to know.
            anonymous = await http.get(service.url("/api/v1/sources/camera:live/stream"))
            assert anonymous.status == 401
            anonymous.close()
            views.pop().close()

            async def one_more() -> bool:
                again = await http.get(url)
                if again.status == 200:
                    views.append(again)
                    return True
                assert again.status == 429
                again.close()
                return False
            end = asyncio.get_running_loop().time() + WAIT
            while not await one_more():
                assert asyncio.get_running_loop().time() < end, "no place freed"
                await asyncio.sleep(0.2)
            for view in views:
                view.close()
    try:
        asyncio.run(main())
    finally:
        session.delete()


def status_of(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(value.split()[0]) * 1024
    return values


def tiff_of_about(size: int) -> bytes:
    """An uncompressed RGB TIFF of about ``size`` bytes, with a drawing to check."""
    side = int((size / 3) ** 0.5)
    image = Image.new("RGB", (side, side), (240, 240, 240))
    ImageDraw.Draw(image).rectangle((10, 10, side // 2, side // 2), fill=(200, 0, 0))
    out = io.BytesIO()
    image.save(out, "TIFF", dpi=(300, 300))
    return out.getvalue()


def post_file(svc: Service, session: WebSession, body: bytes, kind: str) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", svc.ports[1], timeout=240)
    try:
        connection.request("POST", f"{session.path}/images", body=body, headers={
            "Host": f"127.0.0.1:{svc.ports[1]}", "Content-Type": kind,
            "Authorization": f"Bearer {session.token}"})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def test_concurrent_large_imports_do_not_sit_in_the_gateway_memory(service):
    session = WebSession(Api(service))
    pid = service.pid("gateway")
    tiff = tiff_of_about(BIG)
    junk = bytes(BIG)  # not an image: read whole, then refused by the buffer
    assert len(tiff) >= BIG * 0.99
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")  # VmHWM starts again from the current RSS
    before = status_of(pid)["VmRSS"]
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(lambda body: post_file(service, session, *body), [
                (tiff, "image/tiff"), (junk, "image/png"), (junk, "image/tiff")]))
        assert answers[0].status == 201, answers[0].body[:300]
        assert [a.status for a in answers[1:]] == [422, 422], [a.body for a in answers]
        growth = status_of(pid)["VmHWM"] - before
        print(f"gateway peak RSS growth for 3 x {BIG // MB} MB at once: {growth / MB:.1f} MB")
        assert growth < 100 * MB, f"the gateway's peak RSS grew by {growth / MB:.0f} MB"
        (image,) = answers[0].json()["images"]
        stored = session.get(f"/images/{image['id']}").body
        assert stored == tiff  # kept byte for byte
        assert not list((service.home / "cache" / "incoming").iterdir())
        assert (service.home / "cache" / "incoming").stat().st_mode & 0o777 == 0o700
    finally:
        session.delete()


def test_the_buffer_imports_only_files_the_gateway_spooled(service):
    session = WebSession(Api(service))
    incoming = service.home / "cache" / "incoming"
    link = incoming / "import-link"
    link.symlink_to(service.home / "ini" / "DSConfiguration.ini")
    try:
        with service.client() as client:
            for name, code in (("../../ini/DSConfiguration.ini", "invalid_argument"),
                               ("/etc/hostname", "invalid_argument"),
                               ("import-link", "invalid_argument"),
                               ("import-gone", "not_found")):
                with pytest.raises(Error) as refused:
                    client.call("buffer", "import", {"session": session.id, "incoming": name},
                                timeout=15)
                assert refused.value.code == code, (name, refused.value)
        assert session.get("/images").json() == []
    finally:
        link.unlink()
        session.delete()
