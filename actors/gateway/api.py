"""v1 handlers: status, sessions, sources (scanners and cameras), scans, the event socket."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from broker import API_LEVEL, __version__
from broker.protocol import Error
from common.devices import device_service

from . import cameras
from .caps import too_many
from .shared import call, json_body, query_bool, query_int, session_of, state

STATUS_TIMEOUT = 2.0  # seconds the status waits for the broker and the monitor
DEVICE_TIMEOUT = 30.0  # the scanner may have to start (on demand) and probe its devices

SCAN_FIELDS = {"source", "options", "pages", "batch"}


async def gather_status(request: web.Request) -> dict:
    """Programs and their states from the monitor, services from the broker."""
    st = state(request)
    result = {"name": st.cfg.service.name, "display_name": st.cfg.service.display_name,
              "version": __version__, "api": API_LEVEL, "time": time.time(), "actors": {},
              "services": {},
              "origins": st.allowlist.origins(),
              "https": {**(st.tls.summary() if st.tls else {"served": False}),
                        "ports": st.cfg.ports.https}}
    if not result["https"]["served"]:  # the certificate helper knows why
        try:
            problem = (await call(request, "certhelper", "status",
                                  timeout=STATUS_TIMEOUT))["problem"]
            if problem:
                result["https"]["error"] = problem
        except Error:
            pass
    try:
        services = (await call(request, "broker", "services",
                               timeout=STATUS_TIMEOUT))["services"]
        result["services"] = {name: {"workers": len(svc["workers"]), "queued": svc["queued"]}
                              for name, svc in services.items()}
        result["broker"] = "RUNNING"
    except Error as exc:
        result["broker"] = f"unavailable: {exc.message}"
    try:
        programs = (await call(request, "monitor", "status",
                               timeout=STATUS_TIMEOUT))["programs"]
        for program in programs:
            result["actors"][program["name"]] = {
                key: program[key] for key in ("state", "pid", "uptime", "ondemand")}
    except Error as exc:
        result["monitor"] = f"unavailable: {exc.message}"
        for name, svc in result["services"].items():  # second best: who the broker knows
            result["actors"][name] = {"state": "RUNNING" if svc["workers"] else "UNKNOWN"}
    return result


async def status(request: web.Request) -> web.Response:
    return web.json_response(await gather_status(request))


# --- sessions

async def open_session(request: web.Request) -> web.Response:
    body = await json_body(request, {"meta"}, default={})
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise Error("invalid_argument", "meta must be an object")
    opened = await state(request).sessions.create(request.headers.get("Origin", ""), meta)
    state(request).hub.channel(opened["id"])
    return web.json_response(opened, status=201, headers={
        "Location": f"/api/v1/sessions/{opened['id']}", "Cache-Control": "no-store"})


async def session_info(request: web.Request) -> web.Response:
    holder = await session_of(request)
    return web.json_response(await state(request).sessions.info(holder))


async def close_session(request: web.Request) -> web.Response:
    holder = await session_of(request)
    return web.json_response(await state(request).sessions.close(holder.id, "asked by client"))


async def events(request: web.Request) -> web.WebSocketResponse:
    holder = await session_of(request)
    st = state(request)
    since = query_int(request, "since", 0, 2**53)
    epoch = request.query.get("epoch") or None
    limit = st.cfg.gateway.max_sockets_per_session
    if st.sessions.sockets.get(holder.id, 0) >= limit:
        raise too_many(f"event sockets for session {holder.id}", limit, limit, "close one of "
                       "its sockets (another tab or page of this session) first")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise Error("bad_request", "this is a WebSocket endpoint (Upgrade: websocket)")
    st.sessions.socket_opened(holder.id)
    try:
        return await st.hub.serve(request, holder.id, since, epoch)
    finally:
        st.sessions.socket_closed(holder.id)


# --- sources

async def sources(request: web.Request) -> web.Response:
    """The listing the actors keep is public (the welcome page shows it); probing every
    device again is not."""
    args = {"refresh": query_bool(request, "refresh")}
    if args["refresh"]:
        await state(request).sessions.of_request(request)
    scanners, cameras = await asyncio.gather(
        call(request, "scanner", "sources", args, timeout=DEVICE_TIMEOUT),
        call(request, "camera", "sources", args, timeout=DEVICE_TIMEOUT),
        return_exceptions=True)
    if isinstance(scanners, BaseException) and isinstance(cameras, BaseException):
        raise scanners
    listing = []
    for found, actor in ((scanners, "scanner"), (cameras, "camera")):
        if isinstance(found, BaseException):
            state(request).log.warning("sources incomplete", actor=actor, error=str(found))
        else:
            listing += found
    return web.json_response(listing)


async def options(request: web.Request) -> web.Response:
    """Opens the device (a camera's light goes on): only for a session, never for any
    page that puts the URL in an <img>."""
    await state(request).sessions.of_request(request)
    source = request.match_info["src"]
    described = await call(request, device_service(source), "options", {"source": source},
                           timeout=DEVICE_TIMEOUT)
    return web.json_response(described)


# --- scans

async def start_scan(request: web.Request) -> web.Response:
    holder = await session_of(request)
    body = await json_body(request, SCAN_FIELDS, ("source",))
    if "options" in body and body["options"] is not None and not isinstance(
            body["options"], dict):
        raise Error("invalid_argument", "options must be an object of option: value")
    job = await call(request, device_service(body["source"]), "scan",
                     {"session": holder.id, **body}, timeout=DEVICE_TIMEOUT)
    return web.json_response(job, status=202, headers={
        "Location": f"/api/v1/sessions/{holder.id}/scans/{job['job']}"})


async def scans(request: web.Request) -> web.Response:
    holder = await session_of(request)
    found = []
    for actor in ("scanner", "camera"):
        found += await call(request, actor, "jobs", {"session": holder.id})
    return web.json_response(sorted(found, key=lambda job: job.get("created", 0)))


async def scan_job(request: web.Request) -> web.Response:
    holder = await session_of(request)
    op = "cancel" if request.method == "DELETE" else "job"
    job = request.match_info["job"]
    actor = "camera" if job.startswith("cam-") else "scanner"
    return web.json_response(await call(request, actor, op, {
        "job": job, "session": holder.id}))


def add_routes(router: web.UrlDispatcher, expect) -> None:
    """``expect`` answers ``Expect: 100-continue`` of the routes that take a body."""
    v1 = "/api/v1"
    router.add_get(f"{v1}/status", status)
    router.add_post(f"{v1}/sessions", open_session, expect_handler=expect)
    router.add_get(f"{v1}/sessions/{{sid}}", session_info)
    router.add_delete(f"{v1}/sessions/{{sid}}", close_session, expect_handler=expect)
    router.add_get(f"{v1}/sessions/{{sid}}/events", events)
    router.add_get(f"{v1}/sources", sources)
    router.add_get(f"{v1}/sources/{{src:.+}}/options", options)
    router.add_get(f"{v1}/sources/{{src:.+}}/stream", cameras.stream)
    router.add_post(f"{v1}/sessions/{{sid}}/scans", start_scan, expect_handler=expect)
    router.add_get(f"{v1}/sessions/{{sid}}/scans", scans)
    router.add_get(f"{v1}/sessions/{{sid}}/scans/{{job}}", scan_job)
    router.add_delete(f"{v1}/sessions/{{sid}}/scans/{{job}}", scan_job, expect_handler=expect)
