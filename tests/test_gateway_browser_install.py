"""A web app that hosts dist/scanbridge.js itself, in real Chromium, before and after the
service runs: the page loads with the service stopped; ``connect()`` then rejects
``not_running`` with the app's ``installUrl``; ``ensureService()`` shows its dialog (a
modal dialog named by its heading, the focus on the download link, a live status line)
and, once the service starts on the ports the page was given, closes it, gives the focus
back and resolves with the status; ``connect()`` then passes over a port where nothing
answers. With the service running: no dialog; ``minVersion``
above its version is ``too_old`` (the dialog says both versions, Escape closes it:
``cancelled``; an AbortSignal: ``aborted``); a page on an origin that is not allowed gets
``origin_not_allowed`` from both, without a dialog.

One service for the module, stopped until the first test starts it; the tests run in
file order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker import API_LEVEL, __version__
from scanbridge import jsbundle
from tests.support.gateway_browser import WAIT_MS, StaticSite, Watched
from tests.support.gateway_browser import context  # fixture
from tests.support.service import Service
from tests.support.stack import free_port, write_ini

pytestmark = pytest.mark.timeout(120)

INSTALL_URL = "https://downloads.example/scanbridge/latest"
TITLE = "Scanbridge is needed"

# The app: the hosted client on window.sb, a button that had the focus before the dialog,
# and every dialog ever added to the page counted (there must be none when it runs).
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>app</title><link rel="icon" href="data:,"></head>
<body><button id="opener">Scan</button>
<script type="module">
import * as sb from "./scanbridge.js";
window.sb = sb;
window.dialogs = 0;
new MutationObserver((changes) => {
  for (const change of changes) {
    window.dialogs += [...change.addedNodes].filter((n) => n.nodeName === "DIALOG").length;
  }
}).observe(document.body, {childList: true});
// A promise's outcome as data the test can wait for (not the promise: page.evaluate
// would wait for it).
window.settle = (name, promise) => {
  promise.then((value) => { window[name] = {ok: value}; },
    (error) => { window[name] = {error: {code: error.code, message: error.message,
                                         details: error.details}}; });
};
document.body.dataset.ready = "1";
</script></body></html>
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The app's folder, its page and the bundle, served on two origins: the first one
    allowed by the service, the other not."""
    root = tmp_path_factory.mktemp("site")
    (root / "index.html").write_text(PAGE)
    assert jsbundle.main([str(root / "scanbridge.js")]) == 0
    sites = StaticSite(root), StaticSite(root)
    yield [f"http://127.0.0.1:{s.port}" for s in sites]
    for s in sites:
        s.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory, site):
    svc = Service(Path(tmp_path_factory.mktemp("home")))
    write_ini(svc.home, "user_config.ini", f"[access]\nallowed_origins = {site[0]}\n")
    yield svc  # not started: the first test starts it
    svc.stop()


def urls(service: Service) -> list[str]:
    return [f"http://127.0.0.1:{port}" for port in service.ports]


def open_app(context, origin: str) -> Watched:
    watched = Watched(context)
    watched.page.goto(f"{origin}/index.html")
    watched.page.wait_for_selector('body[data-ready="1"]', state="attached", timeout=WAIT_MS)
    return watched


def settled(page, name: str) -> dict:
    page.wait_for_function(f"() => window.{name} !== undefined", timeout=WAIT_MS)
    return page.evaluate(f"window.{name}")


def expect_dialog(page):
    dialog = page.get_by_role("dialog", name=TITLE)
    dialog.wait_for(state="visible", timeout=WAIT_MS)
    assert dialog.get_attribute("aria-modal") == "true"
    link = dialog.get_by_role("link")
    assert link.get_attribute("href") == INSTALL_URL
    # The focus moved into it: on the download link.
    assert page.evaluate("document.activeElement.closest('dialog') !== null "
                         "&& document.activeElement.href") == INSTALL_URL
    return dialog


def refused_ports(errors: list[str]) -> list[str]:
    """The console errors but Chromium's own line for each port that refused to connect."""
    return [e for e in errors if "ERR_CONNECTION_REFUSED" not in e]


def test_stopped_not_running_then_the_dialog_waits_until_the_service_starts(
        context, site, service):
    watched = open_app(context, site[0])  # the hosted client loads without the service
    page = watched.page
    page.evaluate("""([urls, installUrl]) => settle('first',
                       sb.connect({url: urls, installUrl}))""", [urls(service), INSTALL_URL])
    error = settled(page, "first")["error"]
    assert error["code"] == "not_running", error
    assert error["details"]["installUrl"] == INSTALL_URL
    assert error["details"]["urls"] == urls(service)

    page.focus("#opener")
    page.evaluate("""([urls, installUrl]) => settle('ensured',
                       sb.ensureService({url: urls, installUrl, pollMs: 250}))""",
                  [urls(service), INSTALL_URL])
    dialog = expect_dialog(page)
    line = dialog.get_by_role("status")
    assert line.inner_text() == "Waiting for Scanbridge to start…"
    assert page.evaluate("window.ensured") is None, "it resolved before the service ran"

    service.start()
    found = settled(page, "ensured")["ok"]
    assert (found["version"], found["api"], found["url"]) == (__version__, API_LEVEL,
                                                              urls(service)[0])
    assert page.locator("dialog").count() == 0, "the dialog is closed and removed"
    assert page.evaluate("document.activeElement.id") == "opener", "the focus came back"

    # connect() passes over a port where nothing answers.
    page.evaluate("""(url) => settle('session', sb.connect({url}).then(async (session) => {
                       await session.close();
                       return session.url;
                     }))""", [f"http://127.0.0.1:{free_port()}", found["url"]])
    assert settled(page, "session") == {"ok": found["url"]}
    assert refused_ports(watched.errors) == []


def test_running_no_dialog_and_a_min_version_above_it_is_too_old(context, site, service):
    watched = open_app(context, site[0])
    page = watched.page
    page.evaluate("""([urls, installUrl]) => settle('ensured',
                       sb.ensureService({url: urls, installUrl, minVersion: "0.1"}))""",
                  [urls(service), INSTALL_URL])
    assert settled(page, "ensured")["ok"]["version"] == __version__
    assert page.evaluate("window.dialogs") == 0, "a dialog showed while the service answered"

    page.evaluate("""([urls, installUrl]) => settle('old', sb.connect(
                       {url: urls, installUrl, minVersion: "99.0"}))""",
                  [urls(service), INSTALL_URL])
    error = settled(page, "old")["error"]
    assert error["code"] == "too_old", error
    assert {"version": __version__, "minVersion": "99.0", "installUrl": INSTALL_URL,
            "url": urls(service)[0]}.items() <= error["details"].items()

    # Escape closes the dialog: cancelled, and the focus goes back.
    page.focus("#opener")
    page.evaluate("""([urls, installUrl]) => settle('escaped', sb.ensureService(
                       {url: urls, installUrl, minVersion: "99.0", pollMs: 250}))""",
                  [urls(service), INSTALL_URL])
    dialog = expect_dialog(page)
    assert f"this computer has {__version__}" in dialog.inner_text()
    assert dialog.get_by_role("status").inner_text() == \
        f"Scanbridge {__version__} is running; waiting for 99.0 or newer…"
    page.keyboard.press("Escape")
    assert settled(page, "escaped")["error"]["code"] == "cancelled"
    assert page.locator("dialog").count() == 0
    assert page.evaluate("document.activeElement.id") == "opener"

    # The app's AbortSignal closes it too.
    page.evaluate("""([urls, installUrl]) => {
                       window.stop = new AbortController();
                       settle('aborted', sb.ensureService({url: urls, installUrl,
                         minVersion: "99.0", signal: window.stop.signal}));
                     }""", [urls(service), INSTALL_URL])
    expect_dialog(page)
    page.evaluate("window.stop.abort()")
    assert settled(page, "aborted")["error"]["code"] == "aborted"
    assert page.locator("dialog").count() == 0
    assert watched.errors == []


def test_an_origin_not_allowed_gets_origin_not_allowed_without_a_dialog(
        context, site, service):
    watched = open_app(context, site[1])
    page = watched.page
    page.evaluate("""([urls, installUrl]) => {
                       settle('connected', sb.connect({url: urls, installUrl}));
                       settle('ensured', sb.ensureService({url: urls, installUrl}));
                     }""", [urls(service), INSTALL_URL])
    for name in ("connected", "ensured"):
        error = settled(page, name)["error"]
        assert error["code"] == "origin_not_allowed", (name, error)
        assert error["details"]["command"] == f"scanbridge allow {site[1]}", error
    assert page.evaluate("window.dialogs") == 0
