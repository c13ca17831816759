"""HTTPS in Chromium trusting the local CA, with no option to ignore certificate errors.

Chromium (Debian's, through Playwright) reads the CA from ``$HOME/.pki/nssdb``, which
``scanbridge trust`` fills: it then loads the welcome page on 127.0.0.1 and localhost over
HTTPS and sees the certificate the gateway serves (``cert/active.pem``) chained to the
local CA, and the demo works over HTTPS (its fetches, and its event WebSocket over
``wss://``). The same Chromium with a HOME without that database refuses the certificate
(``net::ERR_CERT_AUTHORITY_INVALID``): the positive tests can fail.

Every browser runs with ``HOME`` = the service's user home (a temp folder), and is closed
when its test ends, whatever happened.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM
from tests.support.https_browsers import (WAIT_MS, ca_cert, ca_name, certutil_list, served_cert,
                                          sha256, trust_flags, welcome_https_text)
from tests.support.https_browsers import service  # fixtures
from tests.support.images import png
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


# --- Chromium


@pytest.fixture(scope="module")
def playwright():
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as driver:
        yield driver


@contextlib.contextmanager
def chromium(playwright, home: Path):
    """A headless Chromium whose NSS database is ``home``/.pki/nssdb."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         env={**os.environ, "HOME": str(home)})
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def trusted_chromium(playwright, service):
    """Chromium started after `scanbridge trust --no-system` filled its NSS database."""
    done = service.cli("trust", "--no-system", check=True)
    nssdb = service.user_home / ".pki" / "nssdb"
    assert f"chromium {nssdb}" in done.stdout, done.stdout
    assert trust_flags(nssdb, ca_name(service)) == "C,,", certutil_list(nssdb).stdout
    with chromium(playwright, service.user_home) as browser:
        yield browser


def test_chromium_trusting_the_local_ca_loads_the_welcome_page_over_https(
        trusted_chromium, service):
    context = trusted_chromium.new_context()
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    origin = f"https://127.0.0.1:{service.https_ports[1]}"
    response = page.goto(origin + "/")
    assert response.status == 200
    assert response.url == origin + "/"

    # The certificate Chromium verified is the one in cert/active.pem, chained to the CA.
    leaf, ca = served_cert(service), ca_cert(service)
    details = response.security_details()
    assert details["issuer"] == ca_name(service), details
    assert details["subjectName"] == "localhost", details
    assert details["protocol"] in ("TLS 1.2", "TLS 1.3"), details
    assert details["validFrom"] == leaf.not_valid_before_utc.timestamp(), details
    assert details["validTo"] == leaf.not_valid_after_utc.timestamp(), details
    chain = cdp.send("Network.getCertificate", {"origin": origin})["tableNames"]
    assert [hashlib.sha256(base64.b64decode(der)).hexdigest() for der in chain] == \
        [sha256(leaf), sha256(ca)]

    # The page: the service's welcome page, rendered by the gateway for this service.
    assert page.title() == "Scanbridge"
    text = page.inner_text("#https")
    assert text.startswith(welcome_https_text(service)), text
    assert f"valid until {leaf.not_valid_after_utc:%Y-%m-%d}" in text, text
    rows = page.eval_on_selector_all(
        "#actors tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")
    actors = {row[0]: row for row in rows}
    assert actors["certhelper"][1:] == ["RUNNING", str(service.pid("certhelper")), "always"], rows
    assert actors["gateway"][1] == "RUNNING", rows

    # localhost, on both HTTPS ports, is covered by the same certificate.
    for port in service.https_ports:
        response = page.goto(f"https://localhost:{port}/")
        assert response.status == 200
        assert response.security_details()["issuer"] == ca_name(service)
        assert page.title() == "Scanbridge"
        assert page.inner_text("#https").startswith(welcome_https_text(service))
    context.close()


def test_the_demo_over_https_lists_the_sources_and_gets_events_over_a_tls_websocket(
        trusted_chromium, service):
    context = trusted_chromium.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    sockets: list[str] = []
    frames: list[str] = []

    def on_websocket(ws) -> None:
        sockets.append(ws.url)
        ws.on("framereceived", lambda payload: frames.append(
            payload if isinstance(payload, str) else payload.decode("utf-8", "replace")))
    page.on("websocket", on_websocket)

    origin = f"https://127.0.0.1:{service.https_ports[0]}"
    page.goto(origin + "/demo/")
    # Sources listed through fetch() over TLS: the demo's select holds the test scanners.
    page.wait_for_selector('body[data-ready="1"]', timeout=60_000)
    options = page.eval_on_selector_all("#source option", "os => os.map(o => o.value)")
    assert {"test:0", "test:1"} <= set(options), options
    assert page.get_attribute("#source", "disabled") is None
    assert page.get_attribute("#status", "class") == "ok", page.inner_text("#status")

    # Its session is this origin's, and its event socket is wss:// to the same port.
    stored = json.loads(page.evaluate("sessionStorage.getItem('scanbridge.session')"))
    assert stored["url"] == origin, stored
    sid, token = stored["id"], stored["token"]
    page.wait_for_selector('#connection[data-state="connected"]', timeout=WAIT_MS)
    assert [url.split("?")[0] for url in sockets] == \
        [f"wss://127.0.0.1:{service.https_ports[0]}/api/v1/sessions/{sid}/events"], sockets

    # A page imported from outside reaches the demo only as an event on that socket; its
    # thumbnail then loads over HTTPS.
    answer = Api(service).post(f"/api/v1/sessions/{sid}/images", data=png(80, 50, "blue"),
                               token=token, headers={"Content-Type": "image/png"})
    assert answer.status == 201, answer.body
    [image] = [info["id"] for info in answer.json()["images"]]
    page.wait_for_function(
        """(id) => { const img = document.querySelector(`.thumb[data-id="${id}"] img`);
                     return img && img.complete && img.naturalWidth > 0; }""",
        arg=image, timeout=WAIT_MS)
    src = page.get_attribute(f'.thumb[data-id="{image}"] img', "src")
    assert page.evaluate("(src) => new URL(src, location.href).origin", src) == origin, src
    assert any(image in frame for frame in frames), frames
    assert errors == [], errors
    context.close()


def test_chromium_without_the_local_ca_refuses_the_https_certificate(
        playwright, service, tmp_path):
    # The same service and browser; only the NSS database (none in this HOME) differs.
    from playwright.sync_api import Error as PlaywrightError
    service.cli("trust", "--no-system", check=True)  # the service's own user trusts it
    empty = tmp_path / "home-without-nssdb"
    empty.mkdir()
    with chromium(playwright, empty) as browser:
        for url in (f"https://127.0.0.1:{service.https_ports[1]}/",
                    f"https://localhost:{service.https_ports[0]}/"):
            page = browser.new_page()
            with pytest.raises(PlaywrightError) as refused:
                page.goto(url)
            assert "net::ERR_CERT_AUTHORITY_INVALID" in str(refused.value), str(refused.value)
            page.close()
        # The browser itself works: the HTTP port loads the same welcome page.
        page = browser.new_page()
        response = page.goto(service.url("/"))
        assert response.status == 200 and page.title() == "Scanbridge"
    nssdb = empty / ".pki" / "nssdb"
    assert not nssdb.exists() or trust_flags(nssdb, ca_name(service)) is None
