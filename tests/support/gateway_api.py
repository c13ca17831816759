"""What the tests of the gateway's v1 endpoints over raw HTTP share (test_gateway_sessions,
_scans, _images and _documents): one service for all of them (starting supervisord costs
seconds) with ``https://app.example`` allowed, a web session with the scans and image lists
they use, test pictures and PDFs, and the check that an error answer is JSON
``{error: {code, message}}``.

Only the SANE test devices (``test:0``, ``test:1``) are used, at 75 dpi so that scans are
quick. (The event WebSocket has its own file, test_gateway_events.py.)
"""

from __future__ import annotations

import io

import pymupdf
import pytest
from PIL import Image

from .service import Service
from .shared import shared_by_modules
from .stack import poll_for, write_ini
from .web import Answer, Api, WebSession

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


@shared_by_modules
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
