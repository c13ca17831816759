"""What the browser upload tests share: the receiver (a small aiohttp app on 127.0.0.1,
another origin than the page), the service that allows its ``/in/`` prefix, a browser
context that records the upload panel's progress, and the demo opened with a page in it.
"""

from __future__ import annotations

import asyncio
import re
import threading

import pymupdf
import pytest
from aiohttp import web

from .browser import Watched, watching_context
from .images import png
from .service import Service, started
from .stack import free_port, write_ini

WAIT_MS = 30_000  # the longest a page may take for one expected change (2 loaded cores)
RECEIPT = re.compile(r"receipt \d+: stored (\S+) \((\d+) bytes\) for customer (\S+)")

# Recorded from the first script of every page: each change of the upload panel's progress
# text, with the bar's value at that moment.
WATCH = """
window.__upload = [];
document.addEventListener("DOMContentLoaded", () => {
  const text = document.getElementById("upload-progress-text");
  const bar = document.getElementById("upload-progress");
  if (!text || !bar) return;
  new MutationObserver(() => window.__upload.push({value: bar.value, text: text.textContent}))
    .observe(text, {childList: true, characterData: true, subtree: true});
});
"""


# --- the receiver


class Receiver:
    """A real aiohttp server on 127.0.0.1 in a thread of its own; records every request
    (multipart parts parsed) and answers by the last segment of the path."""

    def __init__(self):
        self.port = free_port()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the receiver did not start"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        ready.set()
        self.loop.run_forever()

    async def handle(self, request: web.Request) -> web.Response:
        record = {"method": request.method, "path": request.path,
                  "headers": dict(request.headers), "parts": [], "body": b""}
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                data = bytes(await part.read())
                record["parts"].append({"name": part.name, "filename": part.filename,
                                        "type": part.headers.get("Content-Type"),
                                        "data": data})
        else:
            record["body"] = await request.read()
        with self.lock:
            self.requests.append(record)
            number = len(self.requests)
        last = request.path.rstrip("/").rsplit("/", 1)[-1]
        if last == "reject":
            return web.Response(status=400, text="refused: the customer field is missing")
        if last == "busy":
            return web.Response(status=503, text="busy", headers={"Retry-After": "30"})
        files = [p for p in record["parts"] if p["filename"]]
        fields = {p["name"]: p["data"].decode() for p in record["parts"] if not p["filename"]}
        name, size = (files[0]["filename"], len(files[0]["data"])) if files else \
            ("body", len(record["body"]))
        return web.Response(text=f"receipt {number}: stored {name} ({size} bytes) for "
                                 f"customer {fields.get('customer', '-')}")

    def at(self, path: str) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def close(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


# --- fixtures


@pytest.fixture(scope="module")
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, receiver):
    home = tmp_path_factory.mktemp("home")
    write_ini(home, "user_config.ini",
              f"[access]\nupload_targets = {receiver.url('/in/')}\n")
    yield from started(home)


@pytest.fixture
def context(browser):
    yield from watching_context(browser, WATCH)


# --- helpers


def demo_with_a_page(context, service: Service) -> Watched:
    """The demo, ready, with one imported 90x60 page."""
    watched = Watched.demo(context, service)
    page = watched.page
    page.set_input_files("#import-file", files=[
        {"name": "green.png", "mimeType": "image/png", "buffer": png(90, 60, "green")}])
    page.wait_for_function("() => document.querySelectorAll('#thumbnails .thumb').length === 1",
                           timeout=WAIT_MS)
    page.wait_for_function("() => !document.getElementById('upload').disabled", timeout=WAIT_MS)
    return watched


def wait_result(page, state: str) -> None:
    page.wait_for_selector(f'#upload-result[data-state="{state}"]:not([hidden])',
                           timeout=WAIT_MS)
    page.wait_for_function("() => document.body.dataset.uploading === '0'", timeout=WAIT_MS)


def file_part(request: dict) -> dict:
    [part] = [p for p in request["parts"] if p["filename"]]
    return part


def pages_of(pdf: bytes) -> list:
    with pymupdf.open(stream=pdf, filetype="pdf") as document:
        return [page.rect for page in document]
