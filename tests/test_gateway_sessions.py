"""The gateway's v1 status, sessions and sources over raw HTTP, and the requests it refuses
before any actor works: OCR and barcode jobs without a token, with bad fields or on an
empty session; the camera stream without a session or token, of an unknown source, with a
bad fps or resolution; unknown paths, wrong methods and bad bodies.

Every error answer must be JSON ``{error: {code, message}}``. One service shared with the
other test_gateway_* modules of tests/support/gateway_api.py.
"""

from __future__ import annotations

import time

import pytest

from broker import __version__
from tests.support.gateway_api import ACTORS, APP, Session, V1, assert_error, picture, stored_file
from tests.support.gateway_api import service, session  # fixtures
from tests.support.stack import poll_for
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


# --- status


def test_status_reports_version_actors_with_the_on_demand_scanner_and_origins(api):
    answer = api.get(f"{V1}/status")
    assert answer.status == 200
    assert answer.headers.get_content_type() == "application/json"
    status = answer.json()
    assert status["name"] == "scanbridge"
    assert status["display_name"]
    assert status["version"] == __version__
    assert abs(status["time"] - time.time()) < 60
    assert ACTORS <= set(status["actors"])
    for name, actor in status["actors"].items():
        assert set(actor) == {"state", "pid", "uptime", "ondemand"}, (name, actor)
    assert status["actors"]["scanner"]["ondemand"] is True
    for name in ("broker", "monitor", "buffer", "gateway"):
        assert status["actors"][name]["ondemand"] is False
        assert status["actors"][name]["state"] == "RUNNING"
        assert isinstance(status["actors"][name]["pid"], int)
    assert status["services"]["buffer"]["workers"] >= 1
    assert status["origins"] == [APP]


# --- sessions


def test_a_session_opens_with_an_id_and_a_token_and_get_describes_it(service):
    api = Api(service, origin=APP)
    before = time.time()
    answer = api.post(f"{V1}/sessions", json={"meta": {"app": "tests"}})
    assert answer.status == 201, answer.body
    opened = answer.json()
    assert {"id", "token", "created", "expires_after", "close_delay"} <= set(opened)
    assert opened["id"] and len(opened["token"]) >= 32
    assert before - 1 <= opened["created"] <= time.time() + 1
    assert answer.headers["Location"] == f"{V1}/sessions/{opened['id']}"
    assert answer.headers["Cache-Control"] == "no-store"
    try:
        other = api.post(f"{V1}/sessions", json={}).json()
        assert other["id"] != opened["id"] and other["token"] != opened["token"]
        api.request("DELETE", f"{V1}/sessions/{other['id']}", token=other["token"])

        described = api.get(f"{V1}/sessions/{opened['id']}", token=opened["token"])
        assert described.status == 200, described.body
        info = described.json()
        assert info["id"] == opened["id"]
        assert info["created"] == opened["created"]
        assert info["used"] >= info["created"]
        assert info["images"] == 0
        assert info["origin"] == APP
    finally:
        api.request("DELETE", f"{V1}/sessions/{opened['id']}", token=opened["token"])


def test_an_empty_post_body_opens_a_session_too(api):
    answer = api.post(f"{V1}/sessions")
    assert answer.status == 201, answer.body
    opened = answer.json()
    gone = api.request("DELETE", f"{V1}/sessions/{opened['id']}", token=opened["token"])
    assert gone.status == 200


def test_deleting_a_session_removes_its_images_and_then_it_is_not_found(api, service):
    session = Session(api, *api.open_session())
    session.scan(pages=2)
    session.imported(picture())
    files = [stored_file(service, info["etag"]) for info in session.images()]
    assert len(files) == 3 and all(path.exists() for path in files)
    assert session.get().json()["images"] == 3

    answer = session.delete()
    assert answer.status == 200, answer.body
    assert answer.json() == {"id": session.id, "removed": 3}
    poll_for(lambda: not any(path.exists() for path in files), 10, "the image files removed")
    assert_error(session.get(), 404, "not_found")
    assert_error(session.get("/images"), 404, "not_found")
    assert_error(session.delete(), 404, "not_found")


def test_session_endpoints_need_the_sessions_own_token(api, session):
    assert_error(session.get("/images", token=None), 401, "unauthorized")
    assert_error(session.get("/images", token="not-the-token"), 403, "forbidden")
    other = Session(api, *api.open_session())
    try:
        assert_error(session.get("/images", token=other.token), 403, "forbidden")
    finally:
        other.delete()
    assert_error(api.get(f"{V1}/sessions/nosuchsession/images", token="x"), 404, "not_found")
    assert session.get(f"/images?token={session.token}", token=None).status == 200


# --- sources and options


def test_sources_list_the_two_test_scanners_and_refresh_lists_them_again(api, session):
    for path, token in ((f"{V1}/sources", None), (f"{V1}/sources?refresh=true", session.token)):
        answer = api.get(path, token=token)
        assert answer.status == 200, answer.body
        listing = answer.json()
        assert [source["id"] for source in listing] == ["test:0", "test:1"], path
        for source in listing:
            assert source["type"] == "scanner"
            assert source["device"] == source["id"]
            assert source["backend"] == "test"
            assert {"vendor", "model", "kind", "busy"} <= set(source)
            assert source["busy"] is False
    assert_error(api.get(f"{V1}/sources?refresh=maybe"), 400, "invalid_argument")


def test_options_of_a_url_encoded_source_list_descriptors_and_aliases(api, session):
    answer = api.get(f"{V1}/sources/test%3A0/options", token=session.token)
    assert answer.status == 200, answer.body
    described = answer.json()
    assert described["source"] == "test:0"
    assert described["busy"] is False
    options = {entry["name"]: entry for entry in described["options"]}
    for entry in described["options"]:
        assert {"name", "type", "value"} <= set(entry), entry
    assert options["resolution"]["constraint"]["range"]["max"] == 1200
    assert options["mode"]["type"] == "string"
    assert options["mode"]["value"] in options["mode"]["constraint"]["values"]
    aliases = described["aliases"]
    assert sorted(aliases["mode"]["values"]) == ["color", "gray", "lineart"]
    assert sorted(aliases["source"]["values"]) == ["adf", "flatbed"]
    assert aliases["area"] == {"unit": "mm", "width": 200.0, "height": 200.0}
    assert "max" in aliases["page_size"]["values"]
    assert aliases["resolution"]["option"] == "resolution"


def test_options_of_an_unknown_source_are_a_json_404(api, session):
    error = assert_error(api.get(f"{V1}/sources/nope%3A9/options", token=session.token), 404,
                         "not_found")
    assert "nope:9" in error["message"]


# --- OCR and barcode requests that are refused (the jobs themselves: test_ocr.py,
# test_barcode.py)


def test_ocr_languages_need_no_session(api):
    answer = api.get(f"{V1}/ocr/languages")
    assert answer.status == 200, answer.body
    languages = answer.json()
    assert "eng" in languages["installed"] and languages["default"] == "eng"
    assert languages["tesseract"]


@pytest.mark.parametrize("kind", ["ocr", "barcodes"])
def test_ocr_and_barcode_jobs_need_the_session_token(api, session, kind):
    session.imported(picture())
    assert_error(api.post(f"{session.path}/{kind}", json={}), 401, "unauthorized")
    assert_error(session.post(f"/{kind}", json={}, token="x" * 22), 403, "forbidden")
    assert_error(api.get(f"{session.path}/{kind}"), 401, "unauthorized")
    assert_error(session.get(f"/{kind}/nosuchjob"), 404, "not_found")
    assert_error(session.delete(f"/{kind}/nosuchjob"), 404, "not_found")
    assert session.get(f"/{kind}").json() == []  # nothing was started


@pytest.mark.parametrize("kind, body, status, code", [
    ("ocr", {"bogus": 1}, 400, "invalid_argument"),
    ("ocr", {"lang": "klingon"}, 422, "invalid_option"),
    ("ocr", {"lang": ["eng", 5]}, 400, "invalid_argument"),
    ("ocr", {"output": "docx"}, 400, "invalid_argument"),
    ("ocr", {"output": []}, 400, "invalid_argument"),
    ("ocr", {"rotate": "yes"}, 400, "invalid_argument"),
    ("ocr", {"timeout": 0}, 400, "invalid_argument"),
    ("ocr", {"images": ["nosuchimage"]}, 404, "not_found"),
    ("ocr", {"images": "all"}, 400, "invalid_argument"),
    ("barcodes", {"bogus": 1}, 400, "invalid_argument"),
    ("barcodes", {"formats": ["nosuchformat"]}, 400, "invalid_argument"),
    ("barcodes", {"engine": "nosuchengine"}, 400, "invalid_argument"),
    ("barcodes", {"engine": "zbar", "formats": ["datamatrix"]}, 400, "invalid_argument"),
    ("barcodes", {"region": {"left": -1, "top": 0, "width": 10, "height": 10}}, 400,
     "invalid_argument"),
    ("barcodes", {"timeout": "soon"}, 400, "invalid_argument"),
    ("barcodes", {"images": ["nosuchimage"]}, 404, "not_found"),
])
def test_a_bad_ocr_or_barcode_request_is_refused_before_a_job_starts(session, kind, body,
                                                                     status, code):
    session.imported(picture())
    error = assert_error(session.post(f"/{kind}", json=body), status, code)
    if code == "invalid_option":
        assert "eng" in error["installed"], error
    assert session.get(f"/{kind}").json() == []


@pytest.mark.parametrize("kind", ["ocr", "barcodes"])
def test_ocr_or_barcodes_of_an_empty_session_is_409(session, kind):
    assert_error(session.post(f"/{kind}", json={}), 409, "conflict")


# --- the camera stream (no camera here: tests/test_camera_live_view.py has the real ones)


def test_the_camera_stream_needs_a_session_and_its_token(api, session):
    stream = f"{V1}/sources/camera%3Aany/stream"
    assert "session=SID&token=TOKEN" in assert_error(api.get(stream), 401,
                                                     "unauthorized")["message"]
    assert_error(api.get(f"{stream}?session={session.id}"), 401, "unauthorized")
    other_sid, other_token = api.open_session()
    assert_error(api.get(f"{stream}?session={session.id}&token={other_token}"), 403,
                 "forbidden")
    assert_error(api.get(f"{stream}?session=nosuchsession&token={session.token}"), 404,
                 "not_found")
    api.request("DELETE", f"{V1}/sessions/{other_sid}", token=other_token)


@pytest.mark.parametrize("source", ["camera%3Anope", "test%3A0", "nope"])
def test_the_stream_of_an_unknown_camera_or_of_a_scanner_is_404(session, source):
    error = assert_error(session.api.get(
        f"{V1}/sources/{source}/stream?session={session.id}&token={session.token}"), 404,
        "not_found")
    assert "no camera" in error["message"]


@pytest.mark.parametrize("query", ["fps=0", "fps=-1", "fps=121", "fps=fast",
                                   "resolution=big"])
def test_a_stream_with_a_bad_fps_or_resolution_is_400(session, query):
    assert_error(session.api.get(f"{V1}/sources/camera%3Anope/stream?session={session.id}"
                                 f"&token={session.token}&{query}"), 400, "invalid_argument")


# --- unknown paths, methods and bodies


@pytest.mark.parametrize("path", [f"{V1}/nothing", f"{V1}", "/api/v2/status", "/nothing",
                                  f"{V1}/sessions/x/y/z/w"])
def test_an_unknown_path_is_a_json_404(api, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize("method, path", [("PATCH", f"{V1}/status"), ("POST", f"{V1}/status"),
                                          ("DELETE", f"{V1}/sources"),
                                          ("PUT", f"{V1}/sessions")])
def test_a_wrong_method_is_a_json_405(api, method, path):
    answer = api.request(method, path)
    assert_error(answer, 405, "method_not_allowed")
    assert answer.headers["Allow"]


def test_a_malformed_json_body_is_400(api, session):
    bad = {"data": b"{not json", "headers": {"Content-Type": "application/json"}}
    assert_error(api.post(f"{V1}/sessions", **bad), 400, "bad_request")
    assert_error(session.post("/scans", **bad), 400, "bad_request")
    assert_error(session.post("/documents", **bad), 400, "bad_request")
    assert_error(session.put("/order", **bad), 400, "bad_request")
    assert_error(session.post("/scans", data=b"\xff\xfe", headers={
        "Content-Type": "application/json"}), 400, "bad_request")


def test_a_body_that_is_not_a_json_object_is_400(api, session):
    for body in ([1, 2], "text", 3, True):
        assert_error(api.post(f"{V1}/sessions", json=body), 400, "invalid_argument")
        assert_error(session.post("/scans", json=body), 400, "invalid_argument")
        assert_error(session.post("/documents", json=body), 400, "invalid_argument")
    assert_error(api.post(f"{V1}/sessions", json={"meta": "x"}), 400, "invalid_argument")
    assert_error(session.post("/scans", data=b"source=test:0", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media")
