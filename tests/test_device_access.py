"""What opens, probes or rescans a device needs a session token; the kept listing does not.

The attack: any web page can put ``/api/v1/sources/camera:live/options`` in an ``<img>``
(no Origin is sent, so the origin check does not stop it); that opened the camera (its
light goes on) or had SANE look for scanners again. The camera here is a real local MJPEG
server (tests/support/mjpeg.py): it counts the connections it takes, so "the camera was
not opened" is what it saw, and the broker counts the requests each actor was sent.
"""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.support.mjpeg import MjpegServer
from tests.support.service import started
from tests.support.web import Answer, WebSession

pytestmark = pytest.mark.timeout(120)

V1 = "/api/v1"


@pytest.fixture(scope="module")
def camera():
    frame = io.BytesIO()
    Image.new("RGB", (320, 240), "gray").save(frame, "JPEG")
    server = MjpegServer([frame.getvalue()], fps=10).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory, camera):
    yield from started(tmp_path_factory.mktemp("home"), (
        f"[camera]\nsources = live={camera.url}\nv4l2 = false\n"))


def requests_to(client, service: str) -> int:
    return client.call("broker", "services")["services"][service]["requests"]


def refused(answer: Answer, status: int = 401, code: str = "unauthorized") -> None:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.json()["error"]["code"] == code, answer.body


def test_without_a_session_token_no_device_is_opened_or_searched_for(api, client, camera):
    listed = api.get(f"{V1}/sources")  # public: the welcome page shows it
    assert listed.status == 200, listed.body
    assert {s["id"] for s in listed.json()} >= {"test:0", "camera:live"}
    session = WebSession(api)
    other = WebSession(api)
    before = {actor: requests_to(client, actor) for actor in ("scanner", "camera")}

    for source in ("camera:live", "test:0"):
        options = f"{V1}/sources/{source}/options"
        refused(api.get(options))  # as an <img src> of any page sends it
        refused(api.get(f"{options}?session={session.id}"))
        refused(api.get(options, token="not-a-token"))
        refused(api.get(f"{options}?session={session.id}&token={other.token}"), 403,
                "forbidden")
    refused(api.get(f"{V1}/sources?refresh=true"))
    refused(api.get(f"{V1}/sources?refresh=true&session={session.id}&token=wrong"), 403,
            "forbidden")

    assert camera.connections == 0  # the camera was never opened
    assert {actor: requests_to(client, actor) for actor in before} == before
    live = {s["id"]: s for s in api.get(f"{V1}/sources").json()}["camera:live"]
    assert live["open"] is False

    # The session's own page may: a bearer token alone, or ?session=&token= in a URL.
    described = api.get(f"{V1}/sources/camera:live/options", token=session.token)
    assert described.status == 200, described.body
    assert described.json()["source"] == "camera:live" and camera.connections >= 1
    scanner = api.get(f"{V1}/sources/test%3A0/options?session={session.id}"
                      f"&token={session.token}")
    assert scanner.status == 200, scanner.body
    assert scanner.json()["source"] == "test:0"
    assert api.get(f"{V1}/sources?refresh=true", token=other.token).status == 200
    assert requests_to(client, "scanner") >= before["scanner"] + 2
    session.delete()
    other.delete()
