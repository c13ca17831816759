"""scanbridge.js in a real browser (Debian's Chromium through Playwright) on a web app on
another local origin that imports ``/scanbridge.js`` from the service.

Allowed with ``scanbridge allow``, it scans and saves; not allowed, the import works and
``connect()`` fails with ``origin_not_allowed`` naming the command, the refusal is logged
and no session opened, and after that command the same page works; a split document's
``X-Scanbridge-Parts`` read by a page on an allowed origin.
"""

from __future__ import annotations

import json

import pytest

from tests.support.gateway_browser import APP, StaticSite, Watched, buffer_sessions, run_app
from tests.support.gateway_browser import context, service  # fixtures
from tests.support.images import png
from tests.support.stack import poll_for
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


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
