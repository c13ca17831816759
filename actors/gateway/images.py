"""v1 handlers for a session's images: list, import, read, edit, order, delete, documents.

An image asked for as it is stored goes from its file to the socket (sendfile) without
passing through the buffer actor; other formats and sizes come from the buffer, which
caches them. Either way the ETag follows the image's edits, and a URL that carries the
current ETag as ``v=`` may be cached for good (thumbnails in a grid do not reload).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

from aiohttp import web

from broker.protocol import Error

from . import bodies, splitting
from .shared import (buffer_file, call, json_body, json_value, query_int, session_of,
                     state)

FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "png": "png", "tiff": "tiff", "tif": "tiff",
           "bmp": "bmp", "gif": "gif"}
IMPORT_TYPES = {"image/jpeg", "image/png", "image/tiff", "image/bmp", "image/x-ms-bmp",
                "image/gif", "application/pdf", "application/octet-stream"}
DOCUMENT_FIELDS = {"images", "format", "filename", "title", "author", "subject", "keywords",
                   "pdfa", "compression", "quality", "tiff_compression", "order", "split_by",
                   "separator"}
LOCATED_MAX = 10000  # cached locate answers (a few hundred bytes each)
REVALIDATE = "private, no-cache"
FOREVER = "private, max-age=31536000, immutable"
IMPORT_TIMEOUT = 600.0  # a 2000-page PDF takes a while to rasterise


def _cache_headers(request: web.Request, image_etag: str, etag: str | None = None) -> dict:
    """ETag (``etag``: this representation's) and Cache-Control: for good when the URL's
    ``v`` is the image's current etag (the URL changes with the image)."""
    wanted = request.query.get("v")
    fresh = wanted is not None and wanted.strip('"') == image_etag.strip('"')
    return {"ETag": etag or image_etag, "Cache-Control": FOREVER if fresh else REVALIDATE}


def _not_modified(request: web.Request, etag: str) -> bool:
    sent = request.headers.get("If-None-Match", "")
    return etag in [tag.strip() for tag in sent.split(",")] or sent.strip() == "*"


def _ids(value, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise Error("invalid_argument", f"{name} must be a list of image ids")
    return value


async def list_images(request: web.Request) -> web.Response:
    holder = await session_of(request)
    tags = [t for t in request.query.get("tags", "").split(",") if t]
    return web.json_response(await call(request, "buffer", "list", {
        "session": holder.id, "tags": tags, "match": request.query.get("match", "any")}))


async def import_file(request: web.Request) -> web.Response:
    holder = await session_of(request)
    cfg = state(request).cfg
    if request.content_type not in IMPORT_TYPES:
        raise Error("unsupported_media", f"cannot import {request.content_type}; send the file "
                    "as image/jpeg, image/png, image/tiff, image/bmp, image/gif or "
                    "application/pdf")
    args = {"session": holder.id}
    for name, lo, hi in (("dpi", 10, 1200), ("index", 0, 10**9)):
        value = query_int(request, name, lo, hi)
        if value is not None:
            args[name] = value
    password = request.headers.get("X-Scanbridge-Password") or request.query.get("password")
    if password:
        args["password"] = password
    # On disk, not in memory: the buffer reads the file itself (one local disk).
    async with bodies.spooled(request, cfg.limits.max_import_mb * 1024 * 1024,
                              cfg.gateway.body_timeout, "the file",
                              cfg.home.incoming) as (path, size):
        if not size:
            raise Error("invalid_image", "the body is empty: send the file's bytes")
        imported = await call(request, "buffer", "import", {**args, "incoming": path.name},
                              timeout=IMPORT_TIMEOUT)
    return web.json_response(imported, status=201)


async def delete_images(request: web.Request) -> web.Response:
    holder = await session_of(request)
    body = await json_body(request, {"images"}, default={})
    if "images" in body:
        ids = _ids(body["images"], "images")
    else:
        ids = [info["id"] for info in await call(request, "buffer", "list",
                                                 {"session": holder.id})]
    if not ids:
        return web.json_response({"deleted": []})
    deleted = await call(request, "buffer", "delete", {"session": holder.id, "images": ids})
    for iid in ids:
        state(request).located.pop((holder.id, iid), None)
    return web.json_response(deleted)


async def image(request: web.Request) -> web.StreamResponse:
    holder = await session_of(request)
    iid = request.match_info["iid"]
    query = request.query
    raw_format = query.get("format", "").lower()
    if raw_format and raw_format not in FORMATS:
        raise Error("invalid_argument", f"format {raw_format!r} is not one of jpeg, png, "
                    "tiff, bmp, gif")
    wanted = FORMATS.get(raw_format)
    width = query_int(request, "width", 1, 100000)
    height = query_int(request, "height", 1, 100000)
    quality = query_int(request, "quality", 1, 100)
    if width is None and height is None and quality is None:
        stored = await located(request, holder.id, iid)
        if wanted is None or wanted == stored["format"]:
            return _stored_file(request, stored)
    args = {"session": holder.id, "image": iid, "format": wanted, "width": width,
            "height": height}
    if quality is not None:
        args["quality"] = quality
    reply = await state(request).broker.request("buffer", "get", args)
    info = reply.result
    etag = f'"{info["etag"].strip(chr(34))}-{info["format"]}-{width or 0}x{height or 0}' \
           f'-q{quality or 0}"'
    headers = _cache_headers(request, info["etag"], etag)
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=reply.blobs[0].bytes, content_type=info["media_type"],
                        headers=headers)


async def located(request: web.Request, sid: str, iid: str) -> dict:
    """The buffer's ``locate`` answer, cached: it costs a broker round trip, as much as
    sending a scanned page. An entry goes when this gateway changes the image, when the
    buffer announces a change (``forget_located``), or when the URL's ``v`` names
    another version than the one cached."""
    cache = state(request).located
    stored = cache.get((sid, iid))
    wanted = request.query.get("v")
    if (stored is not None and os.path.exists(stored["path"])  # not deleted meanwhile
            and (wanted is None or stored["etag"].strip('"') == wanted.strip('"'))):
        return stored
    stored = await call(request, "buffer", "locate", {"session": sid, "image": iid})
    stored["path"] = buffer_file(request, stored.get("path"))
    if len(cache) >= LOCATED_MAX:
        cache.clear()
    cache[(sid, iid)] = stored
    return stored


def forget_located(cache: dict, topic: str, body: dict) -> None:
    """Drop cached locations the buffer's event makes stale (any session, any origin)."""
    sid = body.get("session")
    if topic == "buffer.changed" and body.get("action") in ("modify", "remove"):
        for iid in body.get("ids") or ():
            cache.pop((sid, iid), None)
    elif topic == "session.closed":
        for key in [key for key in cache if key[0] == sid]:
            del cache[key]


def _stored_file(request: web.Request, stored: dict) -> web.StreamResponse:
    # A stored file never changes (an edit writes a new one), so FileResponse's own ETag
    # (mtime, size) and its If-None-Match and Range handling are right as they are.
    cache = _cache_headers(request, stored["etag"])["Cache-Control"]
    return web.FileResponse(stored["path"], headers={
        "Cache-Control": cache, "Content-Type": stored["media_type"]})


async def thumbnail(request: web.Request) -> web.Response:
    holder = await session_of(request)
    size = query_int(request, "size", 16, 1024) or 200
    reply = await state(request).broker.request("buffer", "thumbnail", {
        "session": holder.id, "image": request.match_info["iid"], "size": size})
    etag = f'"{reply.result["etag"].strip(chr(34))}-t{size}"'
    headers = _cache_headers(request, reply.result["etag"], etag)
    if _not_modified(request, etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=reply.blobs[0].bytes, content_type="image/jpeg", headers=headers)


async def image_info(request: web.Request) -> web.Response:
    holder = await session_of(request)
    return web.json_response(await call(request, "buffer", "info", {
        "session": holder.id, "image": request.match_info["iid"]}))


async def edit(request: web.Request) -> web.Response:
    holder = await session_of(request)
    ops = await json_value(request)
    if isinstance(ops, dict):
        ops = [ops] if "op" in ops else bodies.json_object(ops, {"ops"}, ("ops",))["ops"]
    iid = request.match_info["iid"]
    state(request).located.pop((holder.id, iid), None)
    edited = await call(request, "buffer", "edit", {"session": holder.id, "image": iid,
                                                    "ops": ops})
    state(request).located.pop((holder.id, iid), None)
    return web.json_response(edited[0])


async def undo(request: web.Request) -> web.Response:
    holder = await session_of(request)
    iid = request.match_info["iid"]
    undone = await call(request, "buffer", "undo", {"session": holder.id, "image": iid})
    state(request).located.pop((holder.id, iid), None)
    return web.json_response(undone)


async def delete_image(request: web.Request) -> web.Response:
    holder = await session_of(request)
    iid = request.match_info["iid"]
    await call(request, "buffer", "locate", {"session": holder.id, "image": iid})  # 404 first
    deleted = await call(request, "buffer", "delete", {"session": holder.id, "images": [iid]})
    state(request).located.pop((holder.id, iid), None)
    return web.json_response(deleted)


async def order(request: web.Request) -> web.Response:
    holder = await session_of(request)
    body = await json_value(request)
    if isinstance(body, dict):
        body = bodies.json_object(body, {"order"}, ("order",))["order"]
    new_order = await call(request, "buffer", "reorder", {
        "session": holder.id, "order": _ids(body, "order")})
    return web.json_response({"order": new_order})


async def document(request: web.Request) -> web.StreamResponse:
    holder = await session_of(request)
    body = await json_body(request, DOCUMENT_FIELDS, default={})
    filename = body.pop("filename", None)
    kind = FORMATS.get(str(body.get("format", "pdf")).lower(), str(body.get("format", "pdf")))
    if "images" in body:
        _ids(body["images"], "images")
    split_by, separator = body.pop("split_by", None), body.pop("separator", None)
    args = {"session": holder.id, **body, "format": kind}
    if split_by is not None or separator is not None:
        if split_by != "barcode" or kind not in ("pdf", "tiff"):
            raise Error("invalid_argument", "split_by takes \"barcode\", for pdf or tiff "
                                            "documents")
        stem = download_name(filename, "scan", "zip").rsplit(".", 1)[0]
        archive, parts, pages = await splitting.split(request, holder.id, args, separator,
                                                      stem, "pdf" if kind == "pdf" else "tif")
        return web.Response(body=archive, content_type="application/zip", headers={
            "Content-Disposition": attachment(f"{stem}.zip"), "Cache-Control": "no-store",
            "X-Scanbridge-Parts": str(parts), "X-Scanbridge-Pages": str(pages)})
    if kind in ("pdf", "tiff"):
        saved = await call(request, "buffer", "save", {**args, "output": "file"},
                           timeout=IMPORT_TIMEOUT)
        name = download_name(filename, "scan", "pdf" if kind == "pdf" else "tif")
        return web.FileResponse(buffer_file(request, saved["path"]), headers={
            "Content-Type": saved["media_type"], "Cache-Control": "no-store",
            "Content-Disposition": attachment(name),
            "X-Scanbridge-Pages": str(saved["pages"])})
    reply = await state(request).broker.request("buffer", "save", args, timeout=IMPORT_TIMEOUT)
    saved = reply.result
    extension = {"jpeg": "jpg", "tiff": "tif"}.get(saved["format"], saved["format"])
    if len(reply.blobs) == 1:
        name = download_name(filename, "scan", extension)
        return web.Response(body=reply.blobs[0].bytes, content_type=saved["media_type"],
                            headers={"Content-Disposition": attachment(name),
                                     "Cache-Control": "no-store", "X-Scanbridge-Pages": "1"})
    stem = download_name(filename, "scan", "zip").rsplit(".", 1)[0]
    archive = await asyncio.to_thread(splitting.zip_of, [
        (f"{stem}-{number:03d}.{extension}", blob.bytes)
        for number, blob in enumerate(reply.blobs, 1)])
    return web.Response(body=archive, content_type="application/zip", headers={
        "Content-Disposition": attachment(f"{stem}.zip"),
        "Cache-Control": "no-store", "X-Scanbridge-Pages": str(len(reply.blobs))})


def attachment(name: str) -> str:
    """Content-Disposition for a download: an ASCII name, and the real one as filename*."""
    ascii_name = "".join(c if c.isascii() else "_" for c in name)
    if ascii_name == name:
        return f'attachment; filename="{name}"'
    return f'attachment; filename="{ascii_name}"; filename*=UTF-8\'\'{quote(name)}'


def download_name(given, stem: str, extension: str) -> str:
    """A safe download name: letters, digits, ``-_. ``; the right extension."""
    if given is not None and not isinstance(given, str):
        raise Error("invalid_argument", "filename must be text")
    cleaned = "".join(c for c in (given or "") if c.isalnum() or c in "-_. ")[:100].strip(". ")
    if not cleaned:
        cleaned = stem
    if "." in cleaned:
        cleaned = cleaned.rsplit(".", 1)[0] or stem
    return f"{cleaned}.{extension}"


def add_routes(router: web.UrlDispatcher, expect) -> None:
    """``expect`` answers ``Expect: 100-continue`` of the routes that take a body."""
    base = "/api/v1/sessions/{sid}"
    router.add_get(f"{base}/images", list_images)
    router.add_post(f"{base}/images", import_file, expect_handler=expect)
    router.add_delete(f"{base}/images", delete_images, expect_handler=expect)
    router.add_get(f"{base}/images/{{iid}}", image)
    router.add_delete(f"{base}/images/{{iid}}", delete_image, expect_handler=expect)
    router.add_get(f"{base}/images/{{iid}}/info", image_info)
    router.add_get(f"{base}/images/{{iid}}/thumbnail", thumbnail)
    router.add_post(f"{base}/images/{{iid}}/ops", edit, expect_handler=expect)
    router.add_post(f"{base}/images/{{iid}}/undo", undo, expect_handler=expect)
    router.add_put(f"{base}/order", order, expect_handler=expect)
    router.add_post(f"{base}/documents", document, expect_handler=expect)
