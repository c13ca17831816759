"""v1 handlers for a session's uploads: start a job, its state, the list, cancel.

The uploader checks the target itself; the gateway passes it the origin of the page that
opened the session, which it alone knows for sure (see sessions.py).
"""

from __future__ import annotations

from aiohttp import web

from .shared import call, json_body, session_of

UPLOAD_FIELDS = {"images", "url", "method", "format", "page_format", "fields", "headers",
                 "filename", "field_name", "auth", "title", "author", "subject", "keywords",
                 "pdfa", "compression", "quality", "tiff_compression", "order"}
SUBMIT_TIMEOUT = 600.0  # the document is rendered before the job is accepted


async def start_upload(request: web.Request) -> web.Response:
    holder = await session_of(request)
    body = await json_body(request, UPLOAD_FIELDS, required=("url",))
    job = await call(request, "uploader", "submit", {
        **body, "session": holder.id, "origin": holder.origin or None},
        timeout=SUBMIT_TIMEOUT)
    return web.json_response(job, status=202, headers={
        "Location": f"/api/v1/sessions/{holder.id}/uploads/{job['job']}"})


async def uploads(request: web.Request) -> web.Response:
    holder = await session_of(request)
    return web.json_response(await call(request, "uploader", "jobs", {"session": holder.id}))


async def upload_job(request: web.Request) -> web.Response:
    holder = await session_of(request)
    op = "cancel" if request.method == "DELETE" else "job"
    return web.json_response(await call(request, "uploader", op, {
        "job": request.match_info["job"], "session": holder.id}))


def add_routes(router: web.UrlDispatcher, expect) -> None:
    base = "/api/v1/sessions/{sid}/uploads"
    router.add_post(base, start_upload, expect_handler=expect)
    router.add_get(base, uploads)
    router.add_get(f"{base}/{{job}}", upload_job)
    router.add_delete(f"{base}/{{job}}", upload_job, expect_handler=expect)
