"""v1 handlers for OCR and barcode jobs on a session's pages.

Every page is one broker request (``ocr.page``, ``barcode.decode``), idempotent, so the
broker gives each to the next idle worker - local or remote - and re-queues it when a
worker dies mid-page. A job keeps two more pages in flight than there are workers, so no
worker waits for the gateway; a cancel sends no more, but the pages already in flight (at
most workers + 2) are still read, as the broker cannot take a request back. OCR pages
and barcode pages travel as blobs (read here from the buffer's stored file), so remote
workers can do them and no actor lists the session again for every page.
"""

from __future__ import annotations

import asyncio
import html
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from broker.protocol import Error
from common.jobs import JobState

from .images import attachment, download_name, located
from .jobs import Job
from .shared import buffer_file, call, json_body, query_bool, session_of, state

OCR_FIELDS = {"images", "lang", "output", "rotate", "timeout"}
OCR_OUTPUTS = ("text", "words", "hocr", "pdf")
BARCODE_FIELDS = {"images", "formats", "region", "engine", "timeout"}
DEFAULT_TIMEOUT = 3600.0  # seconds a whole job may take unless the request says
PAGE_TIMEOUT = 300.0  # seconds one page may take (queue wait included)
LANGUAGE_TIMEOUT = 10.0
MEDIA = {"text": "text/plain; charset=utf-8", "hocr": "text/html; charset=utf-8",
         "pdf": "application/pdf"}
EXTENSION = {"text": "txt", "hocr": "hocr.html", "pdf": "pdf"}
WORKER_OUTPUT_POLICY = "sandbox; default-src 'none'"  # no script, no fetch, opaque origin


async def _pages(request: web.Request, sid: str, images: Any) -> list[dict]:
    """The session's pages in page order (all, or those named), each {id, index}."""
    listed = await call(request, "buffer", "list", {"session": sid})
    if images is None:
        chosen = listed
    else:
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise Error("invalid_argument", "images must be a list of image ids")
        known = {page["id"] for page in listed}
        missing = [i for i in images if i not in known]
        if missing:
            raise Error("not_found", f"no image {missing[0]!r} in this session")
        wanted = set(images)
        chosen = [page for page in listed if page["id"] in wanted]
    if not chosen:
        raise Error("conflict", "there are no images to read")
    return [{"id": page["id"], "index": number} for number, page in enumerate(chosen)]


def _timeout(body: dict) -> float:
    value = body.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 86400:
        raise Error("invalid_argument", "timeout must be seconds, 1..86400")
    return float(value)


async def _workers(request: web.Request, service: str) -> int:
    try:
        services = (await call(request, "broker", "services", timeout=2.0))["services"]
        return max(1, len(services.get(service, {}).get("workers", [])))
    except Error:
        return 1


async def _page_file(request: web.Request, sid: str, page: dict) -> bytes:
    """A page's stored file, sent to the workers as a blob: one buffer ``list`` per job,
    not per page, and a remote worker gets the same as a local one."""
    stored = await located(request, sid, page["id"])
    return await asyncio.to_thread(Path(stored["path"]).read_bytes)


async def _spread(job: Job, pages: list[dict], in_flight: int, deadline: float,
                  read_page) -> list:
    """``read_page(page, page_deadline)`` for every page, ``in_flight`` at a time, in order
    of the results; the first failure ends the job (the rest are cancelled)."""
    results: list = [None] * len(pages)
    queue = iter(enumerate(pages))

    async def worker() -> None:
        for number, page in queue:
            remaining = deadline - time.time()
            if remaining <= 0:
                raise Error("timeout", f"the job ran past its timeout with "
                                       f"{len(pages) - job.done} pages left")
            results[number] = await read_page(page, min(PAGE_TIMEOUT, remaining))
            job.advance(image=page["id"], index=page["index"])

    tasks = [asyncio.create_task(worker()) for _ in range(min(in_flight, len(pages)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return results


# --- OCR

def _outputs(value: Any) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if names is None:
        return ["text"]
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n in OCR_OUTPUTS for n in names)):
        raise Error("invalid_argument", f"output must be one of {', '.join(OCR_OUTPUTS)} or "
                                        "a list of them")
    return list(dict.fromkeys(names))


async def languages(request: web.Request) -> web.Response:
    return web.json_response(await call(request, "ocr", "languages", timeout=LANGUAGE_TIMEOUT))


async def start_ocr(request: web.Request) -> web.Response:
    holder = await session_of(request)
    body = await json_body(request, OCR_FIELDS, default={})
    outputs = _outputs(body.get("output"))
    rotate = body.get("rotate")
    if rotate is not None and not isinstance(rotate, bool):
        raise Error("invalid_argument", "rotate must be true or false")
    timeout = _timeout(body)
    checked = await call(request, "ocr", "check", {"lang": body.get("lang")},
                         timeout=LANGUAGE_TIMEOUT)
    lang = checked["lang"]
    pages = await _pages(request, holder.id, body.get("images"))
    workers = await _workers(request, "ocr")
    st = state(request)

    async def read_page(page: dict, timeout: float) -> dict:
        data = await _page_file(request, holder.id, page)
        reply = await st.broker.request("ocr", "page", {
            "lang": lang, "rotate": rotate, "hocr": "hocr" in outputs,
            "index": page["index"]}, blobs=[data], timeout=timeout, idempotent=True)
        return {"image": page["id"], **reply.result}

    async def work(job: Job) -> dict:
        deadline = time.time() + timeout
        read = await _spread(job, pages, workers + 2, deadline, read_page)
        return await _ocr_result(request, job, holder.id, lang, outputs, read,
                                 checked["tesseract"])

    job = _start(request, "ocr", "ocr", holder.id, len(pages), work)
    return _accepted(holder.id, "ocr", job)


async def _ocr_result(request: web.Request, job: Job, sid: str, lang: str,
                      outputs: list[str], read: list[dict], tesseract: str) -> dict:
    pages = []
    for page in read:
        confidences = [w["conf"] for w in page["words"]]
        entry = {key: page[key] for key in ("image", "index", "text", "rotation",
                                            "orientation_confidence", "width", "height",
                                            "seconds", "worker")}
        entry["confidence"] = round(sum(confidences) / len(confidences), 1) \
            if confidences else None
        if "words" in outputs:
            entry["words"] = page["words"]
        pages.append(entry)
    text = "\f".join(page["text"] for page in read)
    job.files["text"] = (text.encode(), MEDIA["text"])
    base = f"/api/v1/sessions/{sid}/ocr/{job.id}"
    files = {"text": f"{base}/text"}
    if "hocr" in outputs:
        document = hocr_document([page["hocr"] for page in read], lang, tesseract)
        job.files["hocr"] = (document.encode(), MEDIA["hocr"])
        files["hocr"] = f"{base}/hocr"
    if "pdf" in outputs:
        layers = [{"rotation": p["rotation"], "width": p["width"], "height": p["height"],
                   "words": [{"text": w["text"], "box": w["box"]} for w in p["words"]]}
                  for p in read]
        saved = await call(request, "buffer", "save", {
            "session": sid, "images": [p["image"] for p in read], "format": "pdf",
            "output": "file", "text_layers": layers}, timeout=PAGE_TIMEOUT)
        job.files["pdf"] = (buffer_file(request, saved["path"]), MEDIA["pdf"])
        files["pdf"] = f"{base}/pdf"
    return {"lang": lang, "pages": pages, "text": text, "files": files}


def hocr_document(pages: list[str], lang: str, version: str) -> str:
    """Tesseract's per-page hOCR bodies (numbered by page) in one XHTML document."""
    lang = html.escape(lang)
    head = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN" '
            '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
            f'<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="{lang}" lang="{lang}">\n'
            '<head>\n<title></title>\n'
            '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
            f'<meta name="ocr-system" content="tesseract {html.escape(version)} via '
            'Scanbridge"/>\n<meta name="ocr-capabilities" content="ocr_page ocr_carea '
            'ocr_par ocr_line ocrx_word ocrp_wconf"/>\n</head>\n<body>\n')
    return head + "".join(pages) + "</body>\n</html>\n"


async def ocr_file(request: web.Request) -> web.StreamResponse:
    """A finished OCR job's text, hOCR or searchable PDF."""
    holder = await session_of(request)
    job = state(request).jobs.get(holder.id, request.match_info["job"], "ocr")
    name = request.match_info["output"]
    if name not in MEDIA:
        raise Error("not_found", "the outputs are text, hocr and pdf")
    if job.state != JobState.DONE:
        raise Error("conflict", f"the job is {job.state}; its files come when it is done")
    if name not in job.files:
        raise Error("not_found", f"the job did not make {name} (ask for it in output)")
    content, media = job.files[name]
    # Text and hOCR are what a worker (maybe a remote one) wrote: inert on our origin.
    headers = {"Cache-Control": "no-store", "Content-Type": media,
               "Content-Security-Policy": WORKER_OUTPUT_POLICY,
               "X-Content-Type-Options": "nosniff"}
    if query_bool(request, "download"):
        filename = download_name(request.query.get("filename"), "ocr", EXTENSION[name])
        headers["Content-Disposition"] = attachment(filename)
    if isinstance(content, bytes):
        return web.Response(body=content, headers=headers)
    if not Path(content).exists():
        raise Error("not_found", "the PDF is no longer kept; run the job again")
    return web.FileResponse(content, headers=headers)


# --- barcodes

async def start_barcodes(request: web.Request) -> web.Response:
    holder = await session_of(request)
    body = await json_body(request, BARCODE_FIELDS, default={})
    timeout = _timeout(body)
    options = {key: body[key] for key in ("formats", "region", "engine") if key in body}
    pages = await _pages(request, holder.id, body.get("images"))
    # Bad formats, region or engine fail the POST, not the job: ask once with no page.
    await call(request, "barcode", "check", options, timeout=LANGUAGE_TIMEOUT)
    workers = await _workers(request, "barcode")
    st = state(request)

    async def read_page(page: dict, timeout: float) -> dict:
        found = await st.broker.call("barcode", "decode", options,
                                     blobs=[await _page_file(request, holder.id, page)],
                                     timeout=timeout, idempotent=True)
        return {"image": page["id"], "index": page["index"],
                "barcodes": found["pages"][0]["barcodes"]}

    async def work(job: Job) -> dict:
        read = await _spread(job, pages, workers * 2, time.time() + timeout, read_page)
        return {"engine": options.get("engine") or st.cfg.barcode.engine, "pages": read,
                "count": sum(len(page["barcodes"]) for page in read)}

    job = _start(request, "barcodes", "barcode", holder.id, len(pages), work)
    return _accepted(holder.id, "barcodes", job)


# --- both

def _start(request: web.Request, kind: str, topic: str, sid: str, total: int, work) -> Job:
    return state(request).jobs.start(kind, topic, sid, total, work)


def _accepted(sid: str, kind: str, job: Job) -> web.Response:
    return web.json_response(job.view(), status=202, headers={
        "Location": f"/api/v1/sessions/{sid}/{kind}/{job.id}"})


def job_list(kind: str):
    async def handler(request: web.Request) -> web.Response:
        holder = await session_of(request)
        return web.json_response(state(request).jobs.list(holder.id, kind))
    return handler


def job_state(kind: str):
    async def handler(request: web.Request) -> web.Response:
        holder = await session_of(request)
        jobs = state(request).jobs
        if request.method == "DELETE":
            job = jobs.cancel(holder.id, request.match_info["job"], kind)
            if job.task is not None and not job.task.done():
                await asyncio.wait([job.task], timeout=5.0)
        else:
            job = jobs.get(holder.id, request.match_info["job"], kind)
        return web.json_response(job.view())
    return handler


def add_routes(router: web.UrlDispatcher, expect) -> None:
    v1 = "/api/v1"
    router.add_get(f"{v1}/ocr/languages", languages)
    for kind, start in (("ocr", start_ocr), ("barcodes", start_barcodes)):
        base = f"{v1}/sessions/{{sid}}/{kind}"
        router.add_post(base, start, expect_handler=expect)
        router.add_get(base, job_list(kind))
        router.add_get(f"{base}/{{job}}", job_state(kind))
        router.add_delete(f"{base}/{{job}}", job_state(kind), expect_handler=expect)
    router.add_get(f"{v1}/sessions/{{sid}}/ocr/{{job}}/{{output}}", ocr_file)
