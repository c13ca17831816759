"""What the browser tests of the demo and scanbridge.js share (test_gateway_browser and
test_gateway_browser_origins): a watched page (console errors, uncaught exceptions, CSP
violations, the demo's thumbnails), the demo driven, a static site on another local origin
with a small app that imports ``/scanbridge.js``, and one service for both modules.

Scans use ``test:0`` at 75 dpi on an A6 area (105 x 148 mm, not square, so a rotation shows
in the image's size).
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import pytest

from .browser import Watched as WatchedPage
from .browser import session_of, watching_context
from .service import Service
from .shared import default_service, shared_by_modules
from .stack import ROOT, free_port
from .web import Api

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
    yield from watching_context(browser, WATCH, accept_downloads=True)


# --- helpers


def open_demo(context, service: Service) -> Watched:
    watched = Watched.demo(context, service)
    page = watched.page
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


# conftest.py's service, one for both modules as it was one for the file
service = shared_by_modules(default_service, "service")
