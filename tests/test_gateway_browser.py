"""The demo and the welcome page in a real browser (Debian's Chromium through Playwright)
against the real service.

The demo's scan with thumbnails arriving while the scan runs, its edits (rotate, delete),
drag-to-reorder, import through the file input, saving a PDF, and a reload that keeps the
session; the welcome page filling its device table without console errors or CSP
violations. (Apps on other origins: test_gateway_browser_origins.py.)

One service (shared with test_gateway_browser_origins) and one browser for the module, a
fresh browser context (so a fresh ``sessionStorage``, so a fresh session) per test.

``SCANBRIDGE_SCREENSHOT=1`` also writes a screenshot of the demo after its 3-page scan to
``docs/demo.png``.
"""

from __future__ import annotations

import io
import json
import os

import pymupdf
import pytest
from PIL import Image

from tests.support.browser import session_of
from tests.support.gateway_browser import (SCREENSHOT, WAIT_MS, Watched, open_demo, scan_in_demo,
                                           server_images, thumb_ids, wait_loaded, wait_status_ok)
from tests.support.gateway_browser import context, service  # fixtures
from tests.support.images import png
from tests.support.stack import poll_for
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


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
