"""The aiohttp application: middlewares (Host check, JSON errors) and routes."""

from __future__ import annotations

import html
import ipaddress
import time
from pathlib import Path

from aiohttp import web

from broker import __version__
from broker.client import AsyncClient
from broker.config import Config
from broker.protocol import Error, http_status

STATIC = Path(__file__).parent / "static"
CONFIG = web.AppKey("config", Config)
BROKER = web.AppKey("broker", AsyncClient)
STATUS_TIMEOUT = 2.0  # seconds the status page waits for the monitor


def error_response(code: str, message: str, status: int | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}},
                             status=status or http_status(code))


def loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z`` and ``[::1]``, with or without a port."""
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@web.middleware
async def guard(request: web.Request, handler) -> web.StreamResponse:
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example.
    host = request.headers.get("Host", "")
    if not loopback_host(host):
        return error_response("forbidden", f"Host {host!r} is not a loopback name; this "
                              "service only answers to localhost, 127.0.0.1 and [::1]")
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "bad_request", 413: "too_large"}.get(exc.status,
                                                                           "bad_request")
        return error_response(code, exc.reason, exc.status)
    except Error as exc:
        return error_response(exc.code, exc.message)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def gather_status(app: web.Application) -> dict:
    """Programs and their states from the monitor, services from the broker."""
    cfg = app[CONFIG]
    broker = app[BROKER]
    result = {"name": cfg.service.name, "display_name": cfg.service.display_name,
              "version": __version__, "time": time.time(), "actors": {}, "services": {}}
    try:
        services = (await broker.call("broker", "services", timeout=STATUS_TIMEOUT))["services"]
        result["services"] = {name: {"workers": len(svc["workers"]), "queued": svc["queued"]}
                              for name, svc in services.items()}
        result["broker"] = "RUNNING"
    except Error as exc:
        result["broker"] = f"unavailable: {exc.message}"
    try:
        programs = (await broker.call("monitor", "status", timeout=STATUS_TIMEOUT))["programs"]
        for program in programs:
            result["actors"][program["name"]] = {
                key: program[key] for key in ("state", "pid", "uptime", "ondemand")}
    except Error as exc:
        result["monitor"] = f"unavailable: {exc.message}"
        for name, svc in result["services"].items():  # second best: who the broker knows
            result["actors"][name] = {"state": "RUNNING" if svc["workers"] else "UNKNOWN"}
    return result


async def api_status(request: web.Request) -> web.Response:
    return web.json_response(await gather_status(request.app))


async def welcome(request: web.Request) -> web.Response:
    status = await gather_status(request.app)
    rows = "\n".join(
        f'<tr><td>{html.escape(name)}</td><td class="state {html.escape(info["state"])}">'
        f'{html.escape(info["state"])}</td><td>{info.get("pid") or ""}</td>'
        f'<td>{"on demand" if info.get("ondemand") else "always"}</td></tr>'
        for name, info in sorted(status["actors"].items()))
    page = (STATIC / "welcome.htm").read_text(encoding="utf-8")
    for key, value in {"display_name": status["display_name"], "version": status["version"],
                       "name": status["name"]}.items():
        page = page.replace("{{%s}}" % key, html.escape(value))
    page = page.replace("{{actor_rows}}", rows or '<tr><td colspan="4">no actor reported '
                        'yet (is the monitor running?)</td></tr>')
    return web.Response(text=page, content_type="text/html", headers={
        "Cache-Control": "no-store",
        "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'"})


async def broker_client(app: web.Application):
    client = AsyncClient(app[CONFIG].home.broker_endpoint)
    app[BROKER] = client
    yield
    await client.close()


def make_app(cfg: Config) -> web.Application:
    app = web.Application(middlewares=[guard],
                          client_max_size=cfg.limits.max_body_mb * 1024 * 1024)
    app[CONFIG] = cfg
    app.cleanup_ctx.append(broker_client)
    app.router.add_get("/", welcome)
    app.router.add_get("/welcome.htm", welcome)
    app.router.add_get("/api/v1/status", api_status)
    return app
