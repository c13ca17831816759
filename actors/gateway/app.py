"""The aiohttp application: the guard middleware, static pages and the v1 routes."""

from __future__ import annotations

import html
import json
from functools import partial
from pathlib import Path

from aiohttp import web

from broker import config as configlib
from broker.client import AsyncClient
from broker.config import Config
from broker.protocol import Error

from . import api, bodies, images, openapi, recognition, uploads
from .events import EventHub
from .jobs import Jobs
from .peers import LocalUsers
from .security import Allowlist, cors_headers, loopback_host, public, public_headers, refusal
from .sessions import Sessions
from .shared import STATE, State, error_response, session_of, state

STATIC = Path(__file__).parent / "static"
HTTP_ERRORS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed",
               408: "request_timeout", 413: "too_large", 415: "unsupported_media"}
LOCAL_USERS = web.AppKey("local_users", LocalUsers)
PAGE_POLICY = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
               "connect-src 'self'; frame-ancestors 'none'")


def screen(request: web.Request) -> web.Response | None:
    """The refusal that the request line and headers alone decide, or None."""
    st = state(request)
    other_user = request.app[LOCAL_USERS].refusal(request)
    if other_user is not None:
        return error_response("other_user", other_user)
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example.
    host = request.headers.get("Host", "")
    if not loopback_host(host):
        st.log.warning("refused host", host=host[:200], path=request.path[:200])
        return error_response("forbidden", f"Host {host[:200]!r} is not a loopback name; this "
                              "service only answers to localhost, 127.0.0.1 and [::1]")
    origin = request.headers.get("Origin")
    request["public"] = public(request.method, request.path)
    if origin is not None and not request["public"]:
        if not st.allowlist.allows(origin):
            st.log.warning("refused origin", origin=origin[:200], method=request.method,
                           path=request.path[:200], status=403)
            return error_response("forbidden", refusal(origin[:200]), origin=origin[:200])
        if not st.allowlist.same_service(origin):
            request["cors"] = origin
    return None


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    refused = screen(request)
    if refused is not None:
        return refused
    origin = request.get("cors") or request.headers.get("Origin")
    if (origin is not None and request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers):
        return web.Response(status=204, headers=public_headers(request.headers)
                            if request["public"] else cors_headers(origin, request.headers))
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.reason or exc.text or "bad request"
        path = request.path[:200]
        if exc.status == 404:
            message = f"nothing at {path}; the API is described at /api/v1/openapi.json"
        elif exc.status == 405:
            message = (f"{path} does not take {request.method}; the API is described at "
                       "/api/v1/openapi.json")
        response = error_response(HTTP_ERRORS.get(exc.status, "bad_request"), message,
                                  exc.status)
        if "Allow" in exc.headers:  # a 405 says which methods the resource takes
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Error as exc:
        return error_response(exc.code, exc.message, **exc.details)
    except ConnectionResetError:
        raise
    except Exception:
        st = state(request)
        st.log.exception("request failed", method=request.method, path=request.path[:200])
        return error_response("internal", "the gateway failed on this request; see "
                              "logs/gateway.log")


async def expect_continue(request: web.Request) -> web.Response | None:
    """Answer ``Expect: 100-continue`` with the refusal when the headers decide one, so
    that a client is never invited to send a body that will be refused."""
    refused = screen(request)
    if refused is None:
        try:
            if "sid" in request.match_info:
                await session_of(request)
            limit = body_limit(request)
            if request.content_length is not None and request.content_length > limit:
                raise Error("too_large", f"the body is {request.content_length} bytes; the "
                            f"limit is {limit} bytes", limit=limit)
        except Error as exc:
            refused = error_response(exc.code, exc.message, **exc.details)
    if refused is not None:
        refused.force_close()  # the client may send the body anyway: do not read it
        return refused
    if request.headers.get("Expect", "").lower() != "100-continue":
        return error_response("bad_request", "only 'Expect: 100-continue' is understood",
                              417)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return None


def body_limit(request: web.Request) -> int:
    cfg = state(request).cfg
    if request.method == "POST" and request.path.endswith("/images"):
        return cfg.limits.max_import_mb * 1024 * 1024
    return cfg.gateway.max_json_kb * 1024


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.get("cors")
    # A public answer carries its CORS header even without Origin: a browser may reuse a
    # cached copy for a cross-origin module import.
    headers = public_headers() if request.get("public") else \
        cors_headers(origin) if origin is not None else {}
    for name, value in headers.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("Cross-Origin-Resource-Policy", "cross-origin")


async def welcome(request: web.Request) -> web.Response:
    status = await api.gather_status(request)
    rows = "\n".join(
        f'<tr><td>{html.escape(name)}</td><td class="state {html.escape(info["state"])}">'
        f'{html.escape(info["state"])}</td><td>{info.get("pid") or ""}</td>'
        f'<td>{"on demand" if info.get("ondemand") else "always"}</td></tr>'
        for name, info in sorted(status["actors"].items()))
    origins = "\n".join(f"<li><code>{html.escape(o)}</code></li>" for o in status["origins"])
    page = (STATIC / "welcome.htm").read_text(encoding="utf-8")
    for key, value in {"display_name": status["display_name"], "version": status["version"],
                       "name": status["name"]}.items():
        page = page.replace("{{%s}}" % key, html.escape(value))
    page = page.replace("{{actor_rows}}", rows or '<tr><td colspan="4">no actor reported '
                        'yet (is the monitor running?)</td></tr>')
    page = page.replace("{{https}}", https_paragraph(status["https"]))
    page = page.replace("{{origin_items}}", origins or "<li>none yet: only this service's "
                        "own pages may use it</li>")
    return web.Response(text=page, content_type="text/html", headers={
        "Cache-Control": "no-store", "Content-Security-Policy": PAGE_POLICY})


def https_paragraph(https: dict) -> str:
    ports = ", ".join(map(str, https["ports"])) or "none configured"
    if not https["served"]:
        return (f'<p id="https">HTTPS (ports {ports}) is not served: '
                f"{html.escape(https.get('error', ''))}. Check with "
                "<code>scanbridge doctor</code>.</p>")
    until = https["not_after"][:10]
    if https["source"] == "local":
        whose = ("the certificate of this computer's own Scanbridge CA "
                 f"(renewed automatically), valid until {until}")
    else:
        whose = (f"the operator's own certificate <code>{html.escape(https['subject'])}"
                 f"</code> (issued by {html.escape(https['issuer'])}), valid until {until}")
    names = ", ".join(html.escape(name) for name in https["names"])
    listening = ", ".join(map(str, https["listening"]))
    trouble = f" Not served on the other ports: {html.escape(https['error'])}." \
        if https.get("error") else ""
    url = f"https://127.0.0.1:{https['listening'][-1]}/"
    return (f'<p id="https">HTTPS on ports {listening} for {names} with {whose} '
            f"({https['days_left']} days left).{trouble} This page over HTTPS: "
            f'<a href="{url}">{url}</a>.</p>')


async def ca_certificate(request: web.Request) -> web.StreamResponse:
    """The local CA's certificate, to install by hand where `scanbridge trust` cannot."""
    path = state(request).cfg.home.cert / "ca.pem"
    if not path.is_file():
        raise Error("not_found", "no local CA yet (the certificate helper makes it)")
    return web.FileResponse(path, headers={
        "Content-Type": "application/x-pem-file", "Cache-Control": "no-cache",
        "Content-Disposition": 'attachment; filename="scanbridge-ca.pem"'})


def static_file(name: str, content_type: str):
    path = STATIC / name

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(path, headers={
            "Content-Type": content_type, "Cache-Control": "no-cache",
            "Content-Security-Policy": PAGE_POLICY})
    return handler


async def client_module(request: web.Request) -> web.StreamResponse:
    """A module of the JS client (static/scanbridge/NAME.js), imported by /scanbridge.js."""
    name = request.match_info["name"]
    path = STATIC / "scanbridge" / name
    if not (name.endswith(".js") and name[:-3].replace("-", "").isalnum()) \
            or not path.is_file():
        raise Error("not_found", f"no client module {name!r}")
    return web.FileResponse(path, headers={
        "Content-Type": "text/javascript", "Cache-Control": "no-cache",
        "Content-Security-Policy": PAGE_POLICY})


async def demo_page(request: web.Request) -> web.StreamResponse:
    if request.path == "/demo":
        raise web.HTTPMovedPermanently("/demo/")
    name = request.match_info.get("name") or "index.html"
    path = (STATIC / "demo" / name).resolve()
    if (STATIC / "demo").resolve() not in path.parents or not path.is_file():
        raise Error("not_found", f"no demo file {name!r}")
    kind = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
            ".svg": "image/svg+xml", ".png": "image/png"}.get(path.suffix)
    if kind is None:
        raise Error("not_found", f"no demo file {name!r}")
    return web.FileResponse(path, headers={
        "Content-Type": kind, "Cache-Control": "no-cache",
        "Content-Security-Policy": PAGE_POLICY})


async def doc_page(request: web.Request) -> web.StreamResponse:
    """The operator documentation (docs/*.md), as plain text."""
    name = request.match_info.get("name") or "README"
    path = configlib.shipped(f"{name}.md" if name == "README" else f"docs/{name}.md")
    if not name.replace("-", "").replace("_", "").isalnum() or not path.is_file():
        raise Error("not_found", f"no document {name!r} (see /docs/)")
    return web.FileResponse(path, headers={
        "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-cache"})


async def origin_access(request: web.Request) -> web.Response:
    """Whether the asking page's origin may use the service. Public, so that a page that
    may not learns it (scanbridge.js: ``origin_not_allowed``) instead of a network error."""
    origin = request.headers.get("Origin")
    answer = {"origin": origin, "allowed": origin is None
              or state(request).allowlist.allows(origin)}
    if not answer["allowed"]:
        answer.update(command=f"scanbridge allow {origin}", message=refusal(origin))
    return web.json_response(answer, headers={"Cache-Control": "no-store", "Vary": "Origin"})


async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(openapi.SPEC, indent=1),
                        content_type="application/json",
                        headers={"Cache-Control": "no-cache"})


async def start_services(app: web.Application):
    st = app[STATE]
    st.broker = AsyncClient(st.cfg.home.broker_endpoint)
    st.sessions = Sessions(st.broker, st.cfg.gateway.session_close_delay, st.log,
                           st.cfg.gateway.max_sessions, st.cfg.gateway.max_sessions_per_origin)
    bodies.clear_spool(st.cfg.home.incoming)
    st.hub = EventHub(st.cfg.home.events_out, st.cfg.gateway.event_backlog, st.log)
    st.jobs = Jobs(st.hub.dispatch, st.log)

    def session_closed(sid: str) -> None:
        st.sessions.forget(sid)
        st.jobs.forget(sid)
    st.hub.on_session_closed = session_closed
    st.hub.listeners.append(partial(images.forget_located, st.located))
    st.hub.start()
    yield
    await st.hub.stop()
    await st.broker.close()


def make_app(cfg: Config, log) -> web.Application:
    app = web.Application(middlewares=[guard],
                          client_max_size=cfg.limits.max_body_mb * 1024 * 1024)
    app[STATE] = State(cfg=cfg, log=log, allowlist=Allowlist(cfg, log))
    app[LOCAL_USERS] = LocalUsers(app[STATE].allowlist.local_users, log)
    app.cleanup_ctx.append(start_services)
    app.on_response_prepare.append(add_headers)
    app.router.add_get("/", welcome)
    app.router.add_get("/welcome.htm", welcome)
    app.router.add_get("/welcome.js", static_file("welcome.js", "text/javascript"))
    app.router.add_get("/welcome.css", static_file("welcome.css", "text/css"))
    app.router.add_get("/scanbridge.js", static_file("scanbridge.js", "text/javascript"))
    app.router.add_get("/scanbridge/{name}", client_module)
    app.router.add_get("/demo", demo_page)
    app.router.add_get("/demo/", demo_page)
    app.router.add_get("/demo/{name}", demo_page)
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/api/v1/origin", origin_access)
    app.router.add_get("/ca.pem", ca_certificate)
    app.router.add_get("/docs/", doc_page)
    app.router.add_get("/docs/{name}.md", doc_page)
    api.add_routes(app.router, expect_continue)
    images.add_routes(app.router, expect_continue)
    uploads.add_routes(app.router, expect_continue)
    recognition.add_routes(app.router, expect_continue)
    return app
