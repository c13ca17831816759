"""The demo, the welcome page and scanbridge.js in a real browser (Debian's Chromium through
Playwright) against the real service.

Covers the demo's scan with thumbnails arriving while the scan runs, its edits (rotate,
delete), drag-to-reorder, import through the file input, saving a PDF, and a reload that
keeps the session; a web app on another local origin that imports ``/scanbridge.js`` from
the service (allowed with ``scanbridge allow``: it scans and saves; not allowed: the
import works and ``connect()`` fails with ``origin_not_allowed`` naming the command, the
refusal is logged and no session opened, and after that command the same page works); a
split document's ``X-Scanbridge-Parts`` read by a page on an allowed origin; and the
welcome page filling its device table without console errors or CSP violations.

One service and one browser for the module, a fresh browser context (so a fresh
``sessionStorage``, so a fresh session) per test. Scans use ``test:0`` at 75 dpi on an A6
area (105 x 148 mm, not square, so a rotation shows in the image's size).

``SCANBRIDGE_SCREENSHOT=1`` also writes a screenshot of the demo after its 3-page scan to
``docs/demo.png``.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import threading
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from tests.support.browser import Watched as WatchedPage
from tests.support.images import png
from tests.support.service import Service
from tests.support.stack import ROOT, free_port, poll_for
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)

WAIT_MS = 30_000  # the longest a page may take for one expected change (2 loaded cores)
SCAN_OPTIONS = {"resolution": "75", "page_size": "A6"}
SCREENSHOT = ROOT / "docs" / "demo.png"

# Recorded from the first script of every page: CSP violations, and each change of the
# demo's thumbnails (their ids, in order) or of body[data-scanning], with a timestamp.
WATCH = """
window.__csp = [];
window.__thumbs = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
document.addEventListener("DOMContentLoaded", () => {
  let last = "";
  const look = () => {
    const grid = document.getElementById("thumbnails");
    if (!grid) return;
    const ids = [...grid.querySelectorAll(".thumb")].map((t) => t.dataset.id);
    const scanning = document.body.dataset.scanning ?? "";
    const key = JSON.stringify([ids, scanning]);
    if (key === last) return;
    last = key;
    window.__thumbs.push({t: performance.now(), count: ids.length, ids, scanning});
  };
  new MutationObserver(look).observe(document.body, {subtree: true, childList: true,
    attributes: true, attributeFilter: ["data-scanning"]});
  look();
});
"""


# --- fixtures


class Watched(WatchedPage):
    """A page with its console errors, uncaught exceptions and CSP violations collected."""

    def csp(self) -> list[str]:
        return self.page.evaluate("window.__csp ?? []")

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.csp() == [], "CSP violations"


@pytest.fixture
def context(browser):
    ctx = browser.new_context(accept_downloads=True)
    ctx.add_init_script(WATCH)
    yield ctx
    ctx.close()


# --- helpers


def open_demo(context, service: Service) -> Watched:
    watched = Watched(context)
    page = watched.page
    page.goto(service.url("/demo/"))
    page.wait_for_selector('body[data-ready="1"]', timeout=60_000)
    page.select_option("#source", "test:0")
    # The form is rebuilt from the source's aliases: wait for the values the scans use.
    page.wait_for_function(
        """([res, size]) => [...document.querySelectorAll('#resolution option')]
             .some((o) => o.value === res)
           && [...document.querySelectorAll('#page-size option')].some((o) => o.value === size)""",
        arg=[SCAN_OPTIONS["resolution"], SCAN_OPTIONS["page_size"]], timeout=WAIT_MS)
    page.select_option("#resolution", SCAN_OPTIONS["resolution"])
    page.select_option("#page-size", SCAN_OPTIONS["page_size"])
    return watched


def session_of(page) -> tuple[str, str]:
    """(id, token) of the demo's session, from its tab's sessionStorage."""
    stored = json.loads(page.evaluate("sessionStorage.getItem('scanbridge.session')"))
    return stored["id"], stored["token"]


def server_images(service: Service, page) -> list[dict]:
    sid, token = session_of(page)
    answer = Api(service).get(f"/api/v1/sessions/{sid}/images", token=token)
    assert answer.status == 200, answer.body
    return answer.json()


def thumb_ids(page) -> list[str]:
    return page.eval_on_selector_all("#thumbnails .thumb", "ts => ts.map(t => t.dataset.id)")


def scan_in_demo(page, pages: int) -> list[str]:
    """Scan ``pages`` pages with the demo's form; the thumbnails' ids when it ended."""
    before = len(thumb_ids(page))
    page.fill("#pages", str(pages))
    page.click("#scan")
    page.wait_for_function(
        """(n) => document.body.dataset.scanning === '0'
             && document.querySelectorAll('#thumbnails .thumb').length === n
             && document.getElementById('status').className === 'ok'""",
        arg=before + pages, timeout=60_000)
    return thumb_ids(page)


def wait_loaded(page) -> None:
    """Every thumbnail's <img> decoded from the service (not broken, not empty)."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('#thumbnails .thumb img')]
             .every((i) => i.complete && i.naturalWidth > 0)""", timeout=WAIT_MS)
    assert page.locator("#thumbnails .thumb.broken").count() == 0


def wait_status_ok(page) -> str:
    page.wait_for_function("() => ['ok', 'error'].includes(document.getElementById('status')"
                           ".className)", timeout=WAIT_MS)
    assert page.get_attribute("#status", "class") == "ok", page.inner_text("#status")
    return page.inner_text("#status")


def buffer_sessions(service: Service) -> list[dict]:
    with service.client() as client:
        return client.call("buffer", "sessions", timeout=15)


class StaticSite:
    """A static HTTP server on 127.0.0.1 (a web app on another origin than the service)."""

    def __init__(self, root: Path):
        self.port = free_port()
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


# The other origin's app: imports the client from the service (the documented way), then
# connects, lists sources, scans one page from test:0 and saves a PDF.
APP = """<!doctype html>
<html><head><meta charset="utf-8"><title>app</title><link rel="icon" href="data:,"></head>
<body><p>app</p>
<script type="module">
const service = new URLSearchParams(location.search).get("service");
const out = {origin: location.origin};
const report = () => { document.body.dataset.result = JSON.stringify(out); };
let client;
try {
  client = await import(service + "/scanbridge.js");
  out.imported = true;
} catch (error) {
  out.imported = false;
  out.importError = String(error);
}
try {
  const session = await client.connect({url: service});
  out.session = session.id;
  const sources = await session.listSources();
  out.sources = sources.map((s) => s.id);
  const job = session.scan({source: "test:0", pages: 1,
                            options: {resolution: 75, page_size: "A6"}});
  const pages = [];
  for await (const info of job) pages.push(info.id);
  out.scanned = pages;
  out.images = (await session.images()).map((i) => i.id);
  const pdf = await session.save({format: "pdf", filename: "app"});
  out.pdf = {name: pdf.name, type: pdf.type, size: pdf.size,
             head: new TextDecoder().decode(await pdf.slice(0, 5).arrayBuffer())};
} catch (error) {
  out.error = {code: error.code, status: error.status, message: error.message,
               reason: error.details?.reason ?? null};
}
report();
</script></body></html>
"""


def run_app(context, url: str) -> tuple[Watched, dict]:
    watched = Watched(context)
    watched.page.goto(url)
    watched.page.wait_for_selector("body[data-result]", state="attached", timeout=60_000)
    return watched, json.loads(watched.page.get_attribute("body", "data-result"))


# --- the demo


def test_the_demo_shows_pages_while_scanning_then_rotates_deletes_and_saves_a_pdf(
        context, service):
    watched = open_demo(context, service)
    page = watched.page
    ids = scan_in_demo(page, 3)

    # Thumbnails arrived one by one while the scan ran: 1, 2, 3, the first with
    # body[data-scanning="1"] still set, and the scan ended after the third.
    records = page.evaluate("window.__thumbs")
    started = next(r for r in records if r["scanning"] == "1")
    during = [r for r in records if r["t"] >= started["t"]]
    trail = [(round(r["t"]), r["scanning"], [i[:6] for i in r["ids"]]) for r in during]
    # No thumbnail ever leaves the grid while pages are added: each state keeps the ids
    # of the one before, in order (a thumbnail that vanishes and comes back flickers, and
    # its <img> loads again).
    for previous, current in zip(during, during[1:], strict=False):
        assert current["ids"][:len(previous["ids"])] == previous["ids"], \
            f"a thumbnail left the grid during the scan: {trail}"
    counts = [r["count"] for r in during]
    changes = [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]
    assert changes == [0, 1, 2, 3], trail
    assert during[-1]["ids"] == ids
    first = next(r for r in during if r["count"] == 1)
    ended = next(r for r in during if r["scanning"] == "0")
    assert first["scanning"] == "1", trail
    assert first["t"] < ended["t"], trail
    assert next(r for r in during if r["count"] == 3)["t"] <= ended["t"], trail

    wait_loaded(page)
    infos = server_images(service, page)
    assert [i["id"] for i in infos] == ids
    assert all(i["width"] < i["height"] for i in infos), infos  # A6, portrait
    if os.environ.get("SCANBRIDGE_SCREENSHOT"):
        # The viewport, not full_page: the status bar is fixed at the window's bottom.
        page.set_viewport_size({"width": 1280, "height": 1000})
        wait_loaded(page)
        page.wait_for_timeout(300)
        page.screenshot(path=str(SCREENSHOT))

    # Rotate the first page right: the service's image turns landscape, one more edit,
    # and the thumbnail reloads (new src) and shows it.
    before = infos[0]
    src = page.get_attribute(f'.thumb[data-id="{ids[0]}"] img', "src")
    page.click(f'.thumb[data-id="{ids[0]}"]')
    assert "selected" in page.get_attribute(f'.thumb[data-id="{ids[0]}"]', "class")
    page.click("#rotate-right")
    wait_status_ok(page)
    after = server_images(service, page)[0]
    assert after["id"] == ids[0]
    assert (after["width"], after["height"]) == (before["height"], before["width"])
    assert after["edits"] == before["edits"] + 1, (before, after)
    assert after["etag"] != before["etag"]
    page.wait_for_function(
        """([id, src]) => {
             const img = document.querySelector(`.thumb[data-id="${id}"] img`);
             return img.src !== src && img.complete && img.naturalWidth > img.naturalHeight;
           }""", arg=[ids[0], src], timeout=WAIT_MS)

    # Delete the second page: two thumbnails left, and the service has two pages.
    page.click(f'.thumb[data-id="{ids[1]}"]')
    page.click("#delete")
    page.wait_for_function("() => document.querySelectorAll('#thumbnails .thumb').length === 2",
                           timeout=WAIT_MS)
    assert thumb_ids(page) == [ids[0], ids[2]]
    assert [i["id"] for i in server_images(service, page)] == [ids[0], ids[2]]

    # Save as PDF: a download of 2 pages, the first landscape (rotated), the second not.
    wait_status_ok(page)
    with page.expect_download(timeout=WAIT_MS) as download:
        page.click("#save-pdf")
    path = download.value.path()
    assert download.value.suggested_filename.endswith(".pdf")
    with pymupdf.open(path) as pdf:
        assert pdf.page_count == 2
        rects = [p.rect for p in pdf]
    assert rects[0].width > rects[0].height and rects[1].width < rects[1].height, rects
    wait_status_ok(page)
    watched.clean()


def test_dragging_a_thumbnail_reorders_the_pages_on_the_service(context, service):
    watched = open_demo(context, service)
    page = watched.page
    sid, token = session_of(page)
    api = Api(service)
    for color in ("red", "green", "blue"):
        answer = api.post(f"/api/v1/sessions/{sid}/images", data=png(60, 40, color),
                          token=token, headers={"Content-Type": "image/png"})
        assert answer.status == 201, answer.body
    # The demo learns of the imports from its event socket (buffer.changed).
    page.wait_for_function("() => document.querySelectorAll('#thumbnails .thumb').length === 3",
                           timeout=WAIT_MS)
    ids = thumb_ids(page)
    assert ids == [i["id"] for i in server_images(service, page)]
    wait_loaded(page)

    # Drag the first page onto the third: it takes the third's place.
    page.drag_and_drop(f'.thumb[data-id="{ids[0]}"]', f'.thumb[data-id="{ids[2]}"]')
    expected = [ids[1], ids[2], ids[0]]
    poll_for(lambda: [i["id"] for i in server_images(service, page)] == expected, 10,
             "the dragged order on the service")
    page.wait_for_function("(want) => [...document.querySelectorAll('#thumbnails .thumb')]"
                           ".map((t) => t.dataset.id).join() === want.join()",
                           arg=expected, timeout=WAIT_MS)
    assert [i["index"] for i in server_images(service, page)] == [0, 1, 2]

    # Dropped back on the first place: the original order again.
    page.drag_and_drop(f'.thumb[data-id="{ids[0]}"]', f'.thumb[data-id="{ids[1]}"]')
    poll_for(lambda: [i["id"] for i in server_images(service, page)] == ids, 10,
             "the original order on the service")
    wait_status_ok(page)
    watched.clean()


def test_a_file_chosen_in_the_import_input_becomes_a_page(context, service):
    watched = open_demo(context, service)
    page = watched.page
    assert server_images(service, page) == []
    page.set_input_files("#import-file", files=[
        {"name": "green.png", "mimeType": "image/png", "buffer": png(90, 60, "green")}])
    page.wait_for_function("() => document.querySelectorAll('#thumbnails .thumb').length === 1",
                           timeout=WAIT_MS)
    wait_status_ok(page)
    wait_loaded(page)
    [info] = server_images(service, page)
    assert thumb_ids(page) == [info["id"]]
    assert (info["width"], info["height"], info["format"]) == (90, 60, "png")
    sid, token = session_of(page)
    answer = Api(service).get(f"/api/v1/sessions/{sid}/images/{info['id']}?format=png",
                              token=token)
    assert answer.status == 200
    pixel = Image.open(io.BytesIO(answer.body)).convert("RGB").getpixel((45, 30))
    assert pixel == (0, 128, 0), pixel
    watched.clean()


def test_a_reload_of_the_demo_keeps_its_session_and_pages(context, service):
    watched = open_demo(context, service)
    page = watched.page
    ids = scan_in_demo(page, 1)
    sid, _ = session_of(page)
    page.reload()
    page.wait_for_selector('body[data-ready="1"]', timeout=60_000)
    page.wait_for_function(f"() => document.querySelectorAll('#thumbnails .thumb').length "
                           f"=== {len(ids)}", timeout=WAIT_MS)
    assert thumb_ids(page) == ids
    assert session_of(page)[0] == sid
    wait_loaded(page)
    page.wait_for_selector('#connection[data-state="connected"]', timeout=WAIT_MS)
    watched.clean()


# --- another origin


def test_an_app_on_another_origin_works_once_allowed_and_is_refused_otherwise(
        context, service, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(APP)
    allowed_site, refused_site = StaticSite(site), StaticSite(site)
    try:
        allowed = f"http://127.0.0.1:{allowed_site.port}"
        refused = f"http://127.0.0.1:{refused_site.port}"
        query = f"/index.html?service={service.url('').rstrip('/')}"

        service.cli("allow", allowed, check=True)
        poll_for(lambda: allowed in json.loads(service.get("/api/v1/status")[2])["origins"],
                 10, f"{allowed} in the service's allowed origins")

        watched, result = run_app(context, allowed + query)
        assert "error" not in result, result
        assert result["imported"] is True
        assert {"test:0", "test:1"} <= set(result["sources"])
        assert len(result["scanned"]) == 1 and result["images"] == result["scanned"]
        assert result["pdf"]["size"] > 0 and result["pdf"]["head"] == "%PDF-", result["pdf"]
        assert result["pdf"]["name"] == "app.pdf"
        sessions = buffer_sessions(service)
        mine = [s for s in sessions if s["session"] == result["session"]]
        assert mine and mine[0]["meta"]["gateway"]["origin"] == allowed, sessions
        watched.clean()

        # Not allowed: the module is served to any origin, and connect() says which
        # command allows this one (before, the import itself failed: "Failed to fetch
        # dynamically imported module").
        watched, result = run_app(context, refused + query)
        assert result["imported"] is True, result
        assert result["error"]["code"] == "origin_not_allowed", result
        assert f"scanbridge allow {refused}" in result["error"]["message"], result
        assert "session" not in result

        def logged():
            found = [r for r in service.log_records("gateway")
                     if r.get("msg") == "refused origin" and r.get("origin") == refused]
            return found if "/api/v1/sessions" in {r["path"] for r in found} else None
        records = poll_for(logged, 10, f"'refused origin' lines for {refused} in gateway.log")
        assert all(r["status"] == 403 and r["level"] == "warning" for r in records), records
        assert {r["path"] for r in records} == {"/api/v1/sessions"}, records
        assert not [r for r in service.log_records("gateway")
                    if r.get("msg") == "refused origin" and r.get("origin") == allowed]
        origins = [(s["meta"].get("gateway") or {}).get("origin") for s in buffer_sessions(service)]
        assert refused not in origins, origins
        assert allowed in origins

        # The command it named lets the same page in.
        service.cli("allow", refused, check=True)
        poll_for(lambda: refused in json.loads(service.get("/api/v1/status")[2])["origins"],
                 10, f"{refused} in the service's allowed origins")
        watched, result = run_app(context, refused + query)
        assert "error" not in result, result
        assert len(result["scanned"]) == 1 and result["pdf"]["head"] == "%PDF-", result
        watched.clean()
    finally:
        allowed_site.close()
        refused_site.close()


def test_a_page_on_an_allowed_origin_reads_the_headers_of_a_split_document(
        context, service, tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>"
                                         '<link rel="icon" href="data:,">')
    site = StaticSite(tmp_path)
    try:
        origin = f"http://127.0.0.1:{site.port}"
        service.cli("allow", origin, check=True)
        api = Api(service, origin=origin)
        poll_for(lambda: api.get("/api/v1/status").status == 200, 10, f"{origin} allowed")
        sid, token = api.open_session()
        answer = api.post(f"/api/v1/sessions/{sid}/images", data=png(), token=token,
                          headers={"Content-Type": "image/png"})
        assert answer.status == 201, answer.body
        watched = Watched(context)
        watched.page.goto(origin + "/index.html")
        seen = watched.page.evaluate(
            """async ([url, token]) => {
                 const response = await fetch(url, {method: "POST", body: JSON.stringify(
                   {format: "pdf", split_by: "barcode"}), headers: {
                   "Authorization": `Bearer ${token}`, "Content-Type": "application/json"}});
                 return {status: response.status, parts: response.headers.get(
                   "X-Scanbridge-Parts"), pages: response.headers.get("X-Scanbridge-Pages")};
               }""", [service.url(f"/api/v1/sessions/{sid}/documents"), token])
        assert seen == {"status": 200, "parts": "1", "pages": "1"}, seen
        watched.clean()
    finally:
        site.close()


# --- the welcome page


def test_the_welcome_page_lists_actors_and_devices_without_errors(context, service):
    watched = Watched(context)
    page = watched.page
    actors = json.loads(service.get("/api/v1/status")[2])["actors"]
    assert "gateway" in actors and "scanner" in actors, actors
    page.goto(service.url("/"))
    listed = page.eval_on_selector_all("#actors tbody tr",
                                       "rows => rows.map(r => r.cells[0].textContent.trim())")
    assert set(listed) == set(actors), listed
    page.wait_for_function(
        """() => { const ids = [...document.querySelectorAll('#devices tbody tr')]
                     .map((r) => r.cells[0].textContent.trim());
                   return ids.includes('test:0') && ids.includes('test:1'); }""",
        timeout=60_000)
    states = page.eval_on_selector_all(
        "#devices tbody tr", "rows => rows.map(r => [r.cells[0].textContent, "
        "r.cells[r.cells.length - 1].textContent])")
    assert ["test:0", "ready"] in states and ["test:1", "ready"] in states, states
    assert page.locator("#devices .error").count() == 0
    page.wait_for_timeout(300)  # a late console error or violation would show here
    watched.clean()
