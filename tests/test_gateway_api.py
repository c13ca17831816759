"""Every v1 endpoint of the gateway over raw HTTP, against the whole service.

Status; sessions (open, describe, delete with its images); sources and the options of a
URL-encoded source; scan jobs (202 and Location, polling to done, the job list, cancel of
a running batch, invalid options, unknown fields, a batch on the flatbed); images (the
list, the stored file with its caching headers and 304s, conversions, thumbnails, info
and history, edits and undo, delete, order, imports of PNG, JPEG and PDF and their
refusals, the import size limit); documents (PDF, TIFF, JPEG and ZIP, the download name,
an empty session); OCR and barcode requests refused before a job starts (no token, bad
fields, unknown languages, an empty session); the camera stream's refusals before any
camera opens (no session or token, another session's token, an unknown source, a bad fps
or resolution); and the answers to unknown paths, wrong methods and bad bodies. Every
error answer must be JSON ``{error: {code, message}}``.
(The event WebSocket has its own file, test_gateway_events.py.)

One shared service (starting supervisord costs seconds); a second one with
``[limits] max_import_mb = 1`` checks a streamed import over the limit. Only the SANE test
devices (``test:0``, ``test:1``) are used, at 75 dpi so that scans are quick.
"""

from __future__ import annotations

import http.client
import io
import threading
import time
import urllib.parse
import zipfile

import pymupdf
import pytest
from PIL import Image

from broker import __version__
from tests.support.service import Service
from tests.support.stack import poll_for, write_ini
from tests.support.web import Answer, Api, WebSession

pytestmark = pytest.mark.timeout(120)

V1 = "/api/v1"
APP = "https://app.example"  # the origin allowed by the shared service's user_config.ini
FAST = {"resolution": 75}  # a 590 x 590 px page of the test device in ~0.1 s
NON_SQUARE = {"resolution": 75, "area": {"left": 0, "top": 0, "width": 100, "height": 50}}
NON_SQUARE_SIZE = (295, 147)  # 100 x 50 mm at 75 dpi
PAGE_SIZE = (590, 590)  # the test device's 200 x 200 mm at 75 dpi
SLOW_BATCH = {"source": "adf", "mode": "gray", "resolution": 100, "read-delay": True,
              "read-delay-duration": 8000}  # ~0.6 s per page, 10 pages in the feeder
FEEDER_PAGES = 10
ACTORS = {"broker", "monitor", "buffer", "gateway", "scanner"}


# --- helpers


def assert_error(answer: Answer, status: int, code: str | None = None) -> dict:
    """The answer is an error of ``status``: JSON ``{error: {code, message, ...}}``."""
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers.get_content_type() == "application/json", answer.headers
    body = answer.json()
    assert isinstance(body, dict) and list(body) == ["error"], body
    error = body["error"]
    assert isinstance(error.get("code"), str) and error["code"], error
    assert isinstance(error.get("message"), str) and error["message"], error
    if code is not None:
        assert error["code"] == code, error
    return error


def picture(width: int = 40, height: int = 30, color: str = "red", kind: str = "PNG") -> bytes:
    out = io.BytesIO()
    image = Image.new("RGB", (width, height), color)
    image.putpixel((0, 0), (1, 2, 3))  # not uniform: a wrong crop or rotation shows
    image.save(out, kind)
    return out.getvalue()


def pdf(pages: int) -> bytes:
    with pymupdf.open() as doc:
        for number in range(pages):
            page = doc.new_page(width=200, height=100)  # points: 556 x 278 px at 200 dpi
            page.insert_text((20, 50), f"page {number + 1}")
        return doc.tobytes()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def rgb(data: bytes) -> bytes:
    return decoded(data).convert("RGB").tobytes()


def stored_file(service: Service, etag: str):
    """The buffer's file of an image version (named by the hex part of its etag)."""
    name = etag.strip('"').rsplit("-", 1)[0]
    found = list((service.home / "cache" / "buffer" / "files").rglob(f"{name}.*"))
    assert len(found) == 1, (etag, found)
    return found[0]


def started(svc: Service) -> Service:
    """``svc`` started, once its gateway answers: ``scanbridge start`` returns when
    supervisord calls the programs RUNNING (1 s up), which on a loaded machine can be
    before the gateway listens."""
    svc.start()

    def answers():
        try:
            return Api(svc).get(f"{V1}/status", timeout=5).status == 200
        except OSError:
            return False
    try:
        poll_for(answers, 20, "the gateway answering", every=0.1)
    except AssertionError:
        svc.stop()
        raise
    return svc


class Session(WebSession):
    """A web session with the scans and image lists these tests use."""

    def scan(self, pages: int = 1, options: dict | None = None, source: str = "test:0") -> dict:
        job = self.api.scan(self.id, self.token, pages=pages, source=source,
                            options=options or FAST)
        assert job["state"] == "done", job
        assert len(job["images"]) == pages, job
        return job

    def images(self) -> list[dict]:
        answer = self.get("/images")
        assert answer.status == 200, answer.body
        return answer.json()

    def ids(self) -> list[str]:
        return [info["id"] for info in self.images()]

    def info(self, iid: str) -> dict:
        return next(info for info in self.images() if info["id"] == iid)

    def upload(self, data: bytes, content_type: str, query: str = "") -> Answer:
        return self.post(f"/images{query}", data=data, headers={"Content-Type": content_type})

    def imported(self, data: bytes, content_type: str = "image/png") -> list[dict]:
        answer = self.upload(data, content_type)
        assert answer.status == 201, answer.body
        return answer.json()["images"]

    def document(self, **body) -> Answer:
        return self.post("/documents", json=body)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    write_ini(home, "user_config.ini", f"[access]\nallowed_origins = {APP}\n")
    svc = started(Service(home))
    yield svc
    svc.stop()


@pytest.fixture
def session(api):
    opened = Session(api, *api.open_session())
    yield opened
    opened.delete()  # 404 when the test closed it already


@pytest.fixture
def landscape(session) -> tuple[Session, str]:
    """A session with one scanned 295 x 147 px page (PNG)."""
    (iid,) = session.scan(options=NON_SQUARE)["images"]
    return session, iid


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


# --- scans


def test_a_scan_is_accepted_with_a_location_and_polled_to_done_with_its_pages_stored(session):
    answer = session.post("/scans", json={"source": "test:0", "pages": 2, "options": FAST})
    assert answer.status == 202, answer.body
    job = answer.json()
    assert job["state"] == "running"
    assert job["pages"] == 0 and job["images"] == []
    assert "progress" in job and job["settings"]["resolution"] == 75
    location = answer.headers["Location"]
    assert location == f"{session.path}/scans/{job['job']}"

    def finished():
        polled = session.api.get(location, token=session.token)
        assert polled.status == 200, polled.body
        return polled.json()["state"] != "running" and polled.json()
    done = poll_for(finished, 30, "the scan job done", every=0.1)
    assert done["job"] == job["job"]
    assert done["state"] == "done", done
    assert done["pages"] == 2 and len(done["images"]) == 2

    images = session.images()
    assert [info["id"] for info in images] == done["images"]
    for info in images:
        assert (info["width"], info["height"]) == PAGE_SIZE
        assert info["source"] == "test:0"
        assert info["dpi"] == [75, 75]
    assert session.get().json()["images"] == 2

    jobs = session.get("/scans")
    assert jobs.status == 200
    assert [listed["job"] for listed in jobs.json()] == [job["job"]]
    assert jobs.json()[0]["state"] == "done"


def test_another_sessions_job_is_not_found(api, session):
    job = session.scan()
    other = Session(api, *api.open_session())
    try:
        assert other.get("/scans").json() == []
        assert_error(other.get(f"/scans/{job['job']}"), 404, "not_found")
        assert_error(other.delete(f"/scans/{job['job']}"), 404, "not_found")
        assert_error(other.get(f"/images/{job['images'][0]}"), 404, "not_found")
    finally:
        other.delete()
    assert_error(session.get("/scans/nosuchjob"), 404, "not_found")


def test_deleting_a_running_batch_cancels_it(session):
    answer = session.post("/scans", json={"source": "test:1", "options": SLOW_BATCH,
                                          "batch": True})
    assert answer.status == 202, answer.body
    job = answer.json()["job"]
    poll_for(lambda: session.get(f"/scans/{job}").json()["pages"] >= 1, 20,
             "the batch's first page", every=0.05)
    cancelled = session.delete(f"/scans/{job}")
    assert cancelled.status == 200, cancelled.body
    assert cancelled.json()["job"] == job
    assert cancelled.json()["state"] == "cancelled"

    final = session.get(f"/scans/{job}").json()
    assert final["state"] == "cancelled"
    assert 1 <= final["pages"] < FEEDER_PAGES
    time.sleep(1.0)  # a page after the cancel would show up by now
    final = session.get(f"/scans/{job}").json()
    assert final["state"] == "cancelled"
    assert session.ids() == final["images"]
    assert len(final["images"]) == final["pages"]
    again = session.delete(f"/scans/{job}")  # cancelling an ended job changes nothing
    assert again.status == 200 and again.json()["state"] == "cancelled"


def test_a_scan_with_an_invalid_option_is_422_and_adds_no_image(session):
    for options in ({"resolution": 99999}, {"mode": "sepia"}, {"no-such-option": 1}):
        answer = session.post("/scans", json={"source": "test:0", "options": options})
        error = assert_error(answer, 422, "invalid_option")
        assert error["option"] in ("resolution", "mode", "no-such-option"), error
    assert session.images() == []
    assert session.get("/scans").json() == []


def test_a_scan_body_with_an_unknown_or_missing_field_is_400(session):
    error = assert_error(session.post("/scans", json={"source": "test:0", "colour": "red"}),
                         400, "invalid_argument")
    assert "colour" in error["message"]
    assert_error(session.post("/scans", json={"options": FAST}), 400, "invalid_argument")
    assert_error(session.post("/scans", json={"source": "test:0", "options": "fast"}), 400,
                 "invalid_argument")
    assert_error(session.post("/scans", json={"source": "test:0", "pages": 0}), 400,
                 "invalid_argument")
    assert_error(session.post("/scans", json={"source": "test:9"}), 404, "not_found")
    assert session.images() == []


def test_a_batch_scan_on_the_flatbed_is_422(session):
    answer = session.post("/scans", json={"source": "test:0", "batch": True,
                                          "options": {"source": "flatbed", **FAST}})
    error = assert_error(answer, 422, "invalid_option")
    assert error["option"] == "source"
    assert session.images() == []


# --- reading images


def test_images_are_listed_in_page_order_with_etags(session):
    first = session.scan(pages=2)["images"]
    imported = session.imported(picture(50, 20))[0]["id"]
    images = session.images()
    assert [info["id"] for info in images] == [*first, imported]
    assert [info["index"] for info in images] == [0, 1, 2]
    etags = [info["etag"] for info in images]
    assert all(etag.startswith('"') and etag.endswith('"') for etag in etags)
    assert len(set(etags)) == 3
    for info in images:
        assert info["format"] in ("png", "jpeg", "tiff")
        assert info["mode"] in ("bw", "gray", "color")
        assert info["bytes"] > 0 and info["edits"] == 0
    assert (images[2]["width"], images[2]["height"]) == (50, 20)


def test_an_image_as_stored_is_the_buffers_file_with_revalidation_headers(service, landscape):
    session, iid = landscape
    info = session.info(iid)
    answer = session.get(f"/images/{iid}")
    assert answer.status == 200, answer.body
    assert answer.body == stored_file(service, info["etag"]).read_bytes()
    assert len(answer.body) == info["bytes"]
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.headers["Cache-Control"] == "private, no-cache"
    image = decoded(answer.body)
    assert image.format == "PNG"
    assert image.size == (info["width"], info["height"]) == NON_SQUARE_SIZE
    etag = answer.headers["ETag"]
    assert etag

    again = session.get(f"/images/{iid}", headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.body == b""
    assert again.headers["ETag"] == etag

    for v in (info["etag"].strip('"'), urllib.parse.quote(info["etag"])):
        cached = session.get(f"/images/{iid}?v={v}")
        assert cached.status == 200
        assert cached.body == answer.body
        assert cached.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    stale = session.get(f"/images/{iid}?v=0123456789abcdef-7")
    assert stale.headers["Cache-Control"] == "private, no-cache"
    same = session.get(f"/images/{iid}?format=png")  # the stored format: the same file
    assert same.status == 200 and same.body == answer.body


def test_an_image_converted_to_jpeg_and_scaled_fits_the_width(landscape):
    session, iid = landscape
    answer = session.get(f"/images/{iid}?format=jpeg&width=200")
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "image/jpeg"
    image = decoded(answer.body)
    assert image.format == "JPEG"
    assert image.width <= 200
    assert abs(image.width / image.height - NON_SQUARE_SIZE[0] / NON_SQUARE_SIZE[1]) < 0.05
    etag = answer.headers["ETag"]
    assert etag and answer.headers["Cache-Control"] == "private, no-cache"
    again = session.get(f"/images/{iid}?format=jpeg&width=200", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""
    other = session.get(f"/images/{iid}?format=jpg&width=100")
    assert other.status == 200 and other.headers["ETag"] != etag
    assert decoded(other.body).width <= 100


def test_an_unknown_image_format_or_size_is_400(landscape):
    session, iid = landscape
    error = assert_error(session.get(f"/images/{iid}?format=xcf"), 400, "invalid_argument")
    assert "xcf" in error["message"]
    assert_error(session.get(f"/images/{iid}?width=0"), 400, "invalid_argument")
    assert_error(session.get(f"/images/{iid}?width=wide"), 400, "invalid_argument")
    assert_error(session.get(f"/images/{iid}/thumbnail?size=5"), 400, "invalid_argument")


def test_a_thumbnail_fits_its_size_revalidates_and_changes_after_an_edit(landscape):
    session, iid = landscape
    answer = session.get(f"/images/{iid}/thumbnail?size=100")
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "image/jpeg"
    image = decoded(answer.body)
    assert image.format == "JPEG"
    assert image.width <= 100 and image.height <= 100
    assert max(image.size) >= 90  # fits the box, not a speck in it
    assert image.width > image.height  # keeps the page's shape
    etag = answer.headers["ETag"]
    assert answer.headers["Cache-Control"] == "private, no-cache"

    again = session.get(f"/images/{iid}/thumbnail?size=100", headers={"If-None-Match": etag})
    assert again.status == 304 and again.body == b""

    edited = session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    assert edited.status == 200, edited.body
    after = session.get(f"/images/{iid}/thumbnail?size=100", headers={"If-None-Match": etag})
    assert after.status == 200
    assert after.headers["ETag"] != etag
    rotated = decoded(after.body)
    assert rotated.height > rotated.width and rotated.height <= 100


@pytest.mark.parametrize("sub", ["/thumbnail?size=100", "?format=jpeg&width=200"])
def test_a_thumbnail_or_conversion_pinned_to_the_images_etag_is_cached_for_good(landscape,
                                                                                sub):
    # scanbridge.js thumbnailUrl() and imageUrl() put the image's etag (from the list,
    # without quotes) in v=; that URL changes with every edit, so it may be cached for good.
    session, iid = landscape
    version = session.info(iid)["etag"].strip('"')
    pinned = session.get(f"/images/{iid}{sub}&v={version}")
    assert pinned.status == 200, pinned.body
    assert pinned.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    session.post(f"/images/{iid}/ops", json=[{"op": "invert"}])
    stale = session.get(f"/images/{iid}{sub}&v={version}")
    assert stale.status == 200
    assert stale.headers["Cache-Control"] == "private, no-cache"
    assert stale.body != pinned.body


def test_image_info_has_the_edit_history(landscape):
    session, iid = landscape
    answer = session.get(f"/images/{iid}/info")
    assert answer.status == 200, answer.body
    info = answer.json()
    assert info["id"] == iid and info["edits"] == 0
    assert len(info["history"]) == 1
    assert (info["history"][0]["width"], info["history"][0]["height"]) == NON_SQUARE_SIZE
    session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    session.post(f"/images/{iid}/ops", json=[{"op": "invert"}])
    info = session.get(f"/images/{iid}/info").json()
    assert info["edits"] == 2
    assert len(info["history"]) == 3
    assert [step["seq"] for step in info["history"]] == [0, 1, 2]
    assert (info["history"][1]["width"], info["history"][1]["height"]) == (147, 295)


def test_image_endpoints_of_an_unknown_image_are_404(session):
    for method, sub, body in (("GET", "", None), ("GET", "?format=jpeg", None),
                              ("GET", "/info", None), ("GET", "/thumbnail", None),
                              ("POST", "/ops", [{"op": "invert"}]), ("POST", "/undo", None),
                              ("DELETE", "", None)):
        answer = session.request(method, f"/images/nosuchimage{sub}", json=body)
        assert_error(answer, 404, "not_found")


# --- edits


def test_rotating_a_non_square_page_swaps_width_and_height(service, landscape):
    session, iid = landscape
    before_info = session.info(iid)
    before = session.get(f"/images/{iid}")
    old_etag = before.headers["ETag"]
    answer = session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    assert answer.status == 200, answer.body
    info = answer.json()
    assert info["id"] == iid
    assert (info["width"], info["height"]) == (147, 295)
    assert info["edits"] == 1
    assert session.info(iid) == info

    after = session.get(f"/images/{iid}", headers={"If-None-Match": old_etag})
    assert after.status == 200  # the old ETag no longer matches
    assert after.headers["ETag"] != old_etag
    assert after.body == stored_file(service, info["etag"]).read_bytes()
    old_version = urllib.parse.quote(before_info["etag"])
    stale = session.get(f"/images/{iid}?v={old_version}")  # a page's URL from before
    assert stale.body == after.body
    assert stale.headers["Cache-Control"] == "private, no-cache"
    pinned = session.get(f"/images/{iid}?v={urllib.parse.quote(info['etag'])}")
    assert pinned.body == after.body
    assert pinned.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    clockwise = decoded(before.body).convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert decoded(after.body).convert("RGB").tobytes() == clockwise.tobytes()


def test_crop_cuts_the_given_pixel_box(landscape):
    session, iid = landscape
    before = decoded(session.get(f"/images/{iid}").body).convert("RGB")
    box = {"left": 10, "top": 20, "right": 110, "bottom": 70}
    answer = session.post(f"/images/{iid}/ops", json={"op": "crop", **box})
    assert answer.status == 200, answer.body
    assert (answer.json()["width"], answer.json()["height"]) == (100, 50)
    after = decoded(session.get(f"/images/{iid}").body).convert("RGB")
    assert after.tobytes() == before.crop((10, 20, 110, 70)).tobytes()


def test_an_unknown_or_bad_edit_is_400_and_changes_nothing(landscape):
    session, iid = landscape
    info = session.info(iid)
    for ops in ([{"op": "explode"}], [], [{"op": "crop", "left": 0, "top": 0, "right": 999,
                                           "bottom": 999}], "rotate", {"ops": "rotate"}):
        assert_error(session.post(f"/images/{iid}/ops", json=ops), 400, "invalid_argument")
    assert_error(session.post(f"/images/{iid}/ops", data=b"[{", headers={
        "Content-Type": "application/json"}), 400, "bad_request")
    assert session.info(iid) == info


def test_undo_restores_the_image_before_the_last_edit(landscape):
    session, iid = landscape
    original = session.get(f"/images/{iid}").body
    session.post(f"/images/{iid}/ops", json=[{"op": "rotate", "angle": 90}])
    edited = session.post(f"/images/{iid}/ops", json=[{"op": "invert"}]).json()

    answer = session.post(f"/images/{iid}/undo")
    assert answer.status == 200, answer.body
    undone = answer.json()
    assert undone["edits"] == 1 and undone["etag"] != edited["etag"]
    assert (undone["width"], undone["height"]) == (147, 295)
    answer = session.post(f"/images/{iid}/undo")
    restored = answer.json()
    assert restored["edits"] == 0
    assert (restored["width"], restored["height"]) == NON_SQUARE_SIZE
    assert restored["etag"] not in (edited["etag"], undone["etag"])
    assert session.info(iid) == restored
    assert rgb(session.get(f"/images/{iid}").body) == rgb(original)


def test_an_edit_made_outside_the_gateway_shows_in_the_next_get(service, landscape):
    session, iid = landscape
    assert decoded(session.get(f"/images/{iid}").body).size == NON_SQUARE_SIZE
    with service.client() as client:  # as the CLI or another actor would
        client.call("buffer", "edit", {"session": session.id, "image": iid,
                                       "ops": [{"op": "rotate", "angle": 90}]}, timeout=10)
        current = session.info(iid)
        poll_for(lambda: session.get(f"/images/{iid}").body
                 == stored_file(service, current["etag"]).read_bytes(), 5,
                 "the GET answering the edited file")
        client.call("buffer", "undo", {"session": session.id, "image": iid}, timeout=10)
        current = session.info(iid)
        poll_for(lambda: session.get(f"/images/{iid}").body
                 == stored_file(service, current["etag"]).read_bytes(), 5,
                 "the GET answering the file after the undo")
        client.call("buffer", "delete", {"session": session.id, "images": [iid]}, timeout=10)
    poll_for(lambda: session.get(f"/images/{iid}").status == 404, 5, "the GET answering 404")
    assert_error(session.get(f"/images/{iid}"), 404, "not_found")


def test_gets_during_edits_never_leave_a_stale_image_behind(service, landscape):
    session, iid = landscape
    stop = threading.Event()
    failures: list[str] = []

    def reader():
        while not stop.is_set():
            answer = session.get(f"/images/{iid}")
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body[:200]!r}")
    for _ in range(3):
        readers = [threading.Thread(target=reader) for _ in range(3)]
        for thread in readers:
            thread.start()
        try:
            for _ in range(5):  # odd: the page ends up turned
                edited = session.post(f"/images/{iid}/ops", json=[{"op": "rotate",
                                                                   "angle": 90}])
                assert edited.status == 200, edited.body
        finally:
            stop.set()
            for thread in readers:
                thread.join(10)
            stop.clear()
        assert failures == []
        current = session.info(iid)
        assert session.get(f"/images/{iid}").body == \
            stored_file(service, current["etag"]).read_bytes()


# --- deleting and ordering


def test_deleting_one_image_removes_it_from_the_list_and_its_url(session):
    first, second = session.scan(pages=2)["images"]
    answer = session.delete(f"/images/{first}")
    assert answer.status == 200, answer.body
    assert answer.json() == {"deleted": [first]}
    assert session.ids() == [second]
    assert session.images()[0]["index"] == 0
    assert_error(session.get(f"/images/{first}"), 404, "not_found")
    assert_error(session.get(f"/images/{first}/thumbnail"), 404, "not_found")
    assert_error(session.delete(f"/images/{first}"), 404, "not_found")


def test_deleting_images_by_ids_and_then_all_without_a_body(session):
    ids = [session.imported(picture(20 + n, 20))[0]["id"] for n in range(4)]
    answer = session.delete("/images", json={"images": [ids[1], ids[3]]})
    assert answer.status == 200, answer.body
    assert sorted(answer.json()["deleted"]) == sorted([ids[1], ids[3]])
    assert session.ids() == [ids[0], ids[2]]

    assert_error(session.delete("/images", json={"images": ["nosuchimage"]}), 404,
                 "not_found")
    assert_error(session.delete("/images", json={"images": "all"}), 400, "invalid_argument")
    assert_error(session.delete("/images", json={"ids": [ids[0]]}), 400, "invalid_argument")
    assert session.ids() == [ids[0], ids[2]]

    answer = session.delete("/images")
    assert answer.status == 200, answer.body
    assert sorted(answer.json()["deleted"]) == sorted([ids[0], ids[2]])
    assert session.images() == []
    assert session.delete("/images").json() == {"deleted": []}


def test_put_order_reorders_the_pages(session):
    ids = session.scan(pages=3)["images"]
    wanted = [ids[2], ids[0], ids[1]]
    answer = session.put("/order", json={"order": wanted})
    assert answer.status == 200, answer.body
    assert answer.json() == {"order": wanted}
    images = session.images()
    assert [info["id"] for info in images] == wanted
    assert [info["index"] for info in images] == [0, 1, 2]
    answer = session.put("/order", json=list(reversed(wanted)))  # a bare list works too
    assert answer.status == 200, answer.body
    assert session.ids() == list(reversed(wanted))


@pytest.mark.parametrize("shape", ["missing", "duplicate", "unknown", "not ids", "no body",
                                   "unknown field"])
def test_a_wrong_order_is_refused_and_changes_nothing(session, shape):
    ids = [session.imported(picture(20 + n, 20))[0]["id"] for n in range(3)]
    body = {"missing": {"order": ids[:2]},
            "duplicate": {"order": [ids[0], ids[0], ids[1], ids[2]]},
            "unknown": {"order": [ids[0], ids[1], "nosuchimage"]},
            "not ids": {"order": [1, 2, 3]},
            "no body": None,
            "unknown field": {"order": ids, "by": "size"}}[shape]
    answer = session.put("/order", json=body)
    assert answer.status in (400, 404), (answer.status, answer.body)
    assert_error(answer, answer.status)
    assert session.ids() == ids


# --- imports


def test_importing_a_png_adds_one_image_with_its_pixels(session):
    data = picture(64, 48, "green")
    answer = session.upload(data, "image/png")
    assert answer.status == 201, answer.body
    (info,) = answer.json()["images"]
    assert (info["width"], info["height"]) == (64, 48)
    assert info["format"] == "png" and info["source"] == "import"
    assert session.ids() == [info["id"]]
    assert rgb(session.get(f"/images/{info['id']}").body) == rgb(data)


def test_an_imported_jpeg_is_kept_byte_for_byte(session):
    data = picture(80, 60, "blue", "JPEG")
    (info,) = session.imported(data, "image/jpeg")
    assert info["format"] == "jpeg" and info["bytes"] == len(data)
    answer = session.get(f"/images/{info['id']}")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/jpeg"
    assert answer.body == data


def test_importing_a_three_page_pdf_adds_three_images_in_page_order(session):
    first = session.imported(picture())[0]["id"]
    answer = session.upload(pdf(3), "application/pdf")
    assert answer.status == 201, answer.body
    images = answer.json()["images"]
    assert len(images) == 3
    assert [info["meta"]["page"] for info in images] == [1, 2, 3]
    for info in images:
        assert info["width"] > info["height"]  # 200 x 100 pt pages
        assert abs(info["width"] / info["height"] - 2) < 0.05
    assert session.ids() == [first, *[info["id"] for info in images]]


def test_an_import_with_an_index_and_a_render_dpi_goes_to_that_place(session):
    ids = [session.imported(picture(20 + n, 20))[0]["id"] for n in range(2)]
    answer = session.upload(pdf(1), "application/pdf", "?index=1&dpi=100")  # render dpi
    assert answer.status == 201, answer.body
    (info,) = answer.json()["images"]
    assert info["dpi"] == [100, 100]
    assert (info["width"], info["height"]) == (278, 139)  # 200 x 100 pt at 100 dpi
    assert session.ids() == [ids[0], info["id"], ids[1]]
    assert_error(session.upload(picture(), "image/png", "?dpi=5"), 400, "invalid_argument")


def test_imports_of_other_media_or_garbage_are_refused_and_add_nothing(session):
    assert_error(session.upload(b"<html></html>", "text/html"), 415, "unsupported_media")
    assert_error(session.upload(b"this is no picture" * 20, "image/png"), 422,
                 "invalid_image")
    assert_error(session.upload(b"this is no picture" * 20, "application/pdf"), 422,
                 "invalid_image")
    assert_error(session.upload(b"", "image/png"), 422, "invalid_image")
    assert session.images() == []


def test_an_import_declared_larger_than_the_limit_is_413_before_its_body(session):
    connection = http.client.HTTPConnection("127.0.0.1", session.api.port, timeout=10)
    try:
        connection.putrequest("POST", f"{session.path}/images", skip_host=True)
        connection.putheader("Host", f"127.0.0.1:{session.api.port}")
        connection.putheader("Authorization", f"Bearer {session.token}")
        connection.putheader("Content-Type", "application/pdf")
        connection.putheader("Content-Length", str(600 * 1024 * 1024))  # limit: 512 MB
        connection.endheaders()  # and no body at all: the answer must not wait for it
        response = connection.getresponse()
        answer = Answer(response.status, response.headers, response.read())
    finally:
        connection.close()
    error = assert_error(answer, 413, "too_large")
    assert error["limit"] == 512 * 1024 * 1024
    assert session.images() == []


def test_a_streamed_import_over_max_import_mb_is_413(tmp_path_factory):
    svc = started(Service(tmp_path_factory.mktemp("home"),
                          extra_ini="[limits]\nmax_import_mb = 1\n"))
    try:
        api = Api(svc)
        session = Session(api, *api.open_session())
        assert session.upload(picture(), "image/png").status == 201  # under the limit

        def chunks():  # no Content-Length: the gateway must count what arrives
            for _ in range(40):
                yield b"\0" * 64 * 1024  # 2.5 MB in all
        connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=20)
        try:
            try:
                connection.request("POST", f"{session.path}/images", body=chunks(),
                                   encode_chunked=True, headers={
                                       "Host": f"127.0.0.1:{api.port}",
                                       "Authorization": f"Bearer {session.token}",
                                       "Content-Type": "image/png"})
            except (BrokenPipeError, ConnectionResetError):
                pass  # the gateway answered and closed before all of it was sent
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        finally:
            connection.close()
        error = assert_error(answer, 413, "too_large")
        assert error["limit"] == 1024 * 1024
        assert len(session.images()) == 1
    finally:
        svc.stop()


# --- documents


@pytest.fixture
def two_pages(session) -> Session:
    session.scan(pages=2)
    return session


def test_a_pdf_document_is_an_attachment_with_its_page_count(two_pages):
    answer = two_pages.document(format="pdf", title="Two pages")
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/pdf"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="scan.pdf"'
    assert answer.headers["X-Scanbridge-Pages"] == "2"
    assert answer.headers["Cache-Control"] == "no-store"
    with pymupdf.open(stream=answer.body, filetype="pdf") as document:
        assert document.page_count == 2
        assert document.metadata["title"] == "Two pages"
    first = two_pages.ids()[0]
    one = two_pages.document(format="pdf", images=[first])
    assert one.headers["X-Scanbridge-Pages"] == "1"
    with pymupdf.open(stream=one.body, filetype="pdf") as document:
        assert document.page_count == 1


def test_a_tiff_document_has_a_frame_per_page(two_pages):
    answer = two_pages.document(format="tiff")
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "image/tiff"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="scan.tif"'
    assert answer.headers["X-Scanbridge-Pages"] == "2"
    image = Image.open(io.BytesIO(answer.body))
    assert image.format == "TIFF"
    assert image.n_frames == 2
    assert image.size == PAGE_SIZE


def test_jpeg_documents_of_two_pages_are_a_zip_and_of_one_page_a_jpeg(two_pages):
    answer = two_pages.document(format="jpeg", filename="pages")
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Type"] == "application/zip"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="pages.zip"'
    assert answer.headers["X-Scanbridge-Pages"] == "2"
    with zipfile.ZipFile(io.BytesIO(answer.body)) as archive:
        names = archive.namelist()
        assert names == ["pages-001.jpg", "pages-002.jpg"]
        for name in names:
            image = decoded(archive.read(name))
            assert image.format == "JPEG" and image.size == PAGE_SIZE

    first = two_pages.ids()[0]
    single = two_pages.document(format="jpeg", images=[first])
    assert single.status == 200, single.body
    assert single.headers["Content-Type"] == "image/jpeg"
    assert single.headers["Content-Disposition"] == 'attachment; filename="scan.jpg"'
    assert single.headers["X-Scanbridge-Pages"] == "1"
    assert decoded(single.body).format == "JPEG"


@pytest.mark.parametrize("given, expected", [
    ("../../etc/x", "etcx.pdf"),
    ("/etc/passwd", "etcpasswd.pdf"),
    ('a"b\r\nSet-Cookie: x=1', "abSet-Cookie x1.pdf"),
    ("report.exe", "report.pdf"),
    ("...", "scan.pdf"),
    ("", "scan.pdf"),
])
def test_a_document_filename_is_made_safe(two_pages, given, expected):
    answer = two_pages.document(format="pdf", filename=given)
    assert answer.status == 200, answer.body
    assert answer.headers["Content-Disposition"] == f'attachment; filename="{expected}"'
    assert "Set-Cookie" not in answer.headers


def test_a_non_ascii_document_filename_is_sent_as_filename_star(two_pages):
    answer = two_pages.document(format="pdf", filename="résumé 文档")
    assert answer.status == 200, answer.body
    disposition = answer.headers["Content-Disposition"]  # latin-1 as sent on the wire
    assert disposition.isascii(), f"raw non-ASCII bytes in the header: {disposition!r}"
    plain, star = disposition.split("; filename*=")
    assert plain == 'attachment; filename="r_sum_ __.pdf"'
    assert star.startswith("UTF-8''")
    assert urllib.parse.unquote(star[len("UTF-8''"):]) == "résumé 文档.pdf"


def test_bad_document_requests_are_json_errors(two_pages):
    assert_error(two_pages.document(format="xcf"), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", bogus=1), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", filename=5), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", images="all"), 400, "invalid_argument")
    assert_error(two_pages.document(format="pdf", images=["nosuchimage"]), 404, "not_found")


def test_a_document_of_an_empty_session_is_409(session):
    for fmt in ("pdf", "tiff", "jpeg"):
        assert_error(session.document(format=fmt), 409, "conflict")


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


# --- the camera stream (no camera here: tests/test_camera.py has the real ones)


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
