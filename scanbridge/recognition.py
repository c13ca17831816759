"""``scanbridge ocr | barcodes``: read text or barcodes of image and PDF files from the
command line, through the running service's gateway HTTP API, with a progress bar.

    scanbridge ocr page.png                         the text, on stdout
    scanbridge ocr scan.pdf --lang deu+eng -o scan.txt
    scanbridge ocr a.jpg b.tif --output pdf -o searchable.pdf
    scanbridge ocr page.png --output words          words with boxes, as JSON
    scanbridge barcodes labels.pdf --formats qr,code128

Like a web page, the command opens a session (no Origin: the gateway lets local programs
in), imports the files into it, starts an OCR or barcode job on all their pages and polls
it, then writes the result. The session is closed at the end, also after an error or
Ctrl-C (which cancels the job first).
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import supervision
from broker.procutil import atomic_write
from common.commands import (EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_USAGE, command, fail,
                             load_config, not_running)
from common.jobs import ACTIVE_STATES, JobState

from .progress import Progress

OUTPUTS = ("text", "hocr", "pdf", "words")
ENGINES = ("zxing", "zbar")
# Leading bytes -> the media type the gateway's import takes.
MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"),
         (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"), (b"BM", "image/bmp"),
         (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"), (b"%PDF-", "application/pdf"))
KINDS = "JPEG, PNG, TIFF, BMP, GIF or PDF"
CALL_TIMEOUT = 60.0  # seconds for a request that does no real work (sessions, polls)
IMPORT_TIMEOUT = 660.0  # the gateway gives a big PDF 600 s to rasterise
POLL_FIRST, POLL_MAX = 0.05, 0.5  # seconds between two looks at a job, growing
# Gateway error codes that mean the input (a file, an option) is at fault: exit status 2.
INPUT_CODES = {"invalid_image", "unsupported_media", "too_large", "password_required",
               "invalid_argument", "invalid_option"}


def build_ocr(ocr: argparse.ArgumentParser) -> None:
    ocr.add_argument("files", nargs="+", metavar="FILE", help=f"{KINDS} files")
    ocr.add_argument("--lang", help="language(s) like eng or deu+eng (default: the "
                                    "service's [ocr] default_lang)")
    ocr.add_argument("--output", choices=OUTPUTS, default="text",
                     help="text (default), hocr (XHTML), pdf (searchable) or words (JSON)")
    ocr.add_argument("-o", "--out", metavar="PATH",
                     help="write here instead of stdout (needed for pdf at a terminal)")
    ocr.add_argument("--no-rotate", action="store_true",
                     help="read the pages as they are (no automatic orientation)")
    ocr.add_argument("--timeout", type=_seconds, metavar="S",
                     help="seconds the whole job may take (default: one hour)")


def build_barcodes(codes: argparse.ArgumentParser) -> None:
    codes.add_argument("files", nargs="+", metavar="FILE", help=f"{KINDS} files")
    codes.add_argument("--formats", metavar="LIST",
                       help="only these, comma separated, e.g. qr,code128 (default: all)")
    codes.add_argument("--engine", choices=ENGINES,
                       help="the reader (default: the service's [barcode] engine)")
    codes.add_argument("--timeout", type=_seconds, metavar="S",
                       help="seconds the whole job may take (default: one hour)")
    codes.add_argument("--json", action="store_true",
                       help="the symbols as JSON, with raw bytes and corners")


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{raw!r} is not seconds from 1 to 86400")
    return value


# --- the gateway

class GatewayError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Unreachable(Exception):
    pass


class Gateway:
    """Requests to the gateway's HTTP API, with one session's token once ``open()``ed."""

    def __init__(self, port: int):
        self.port = port
        self.sid: str | None = None
        self.token: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, media: str | None = None,
                length: int | None = None, timeout: float = CALL_TIMEOUT) -> bytes:
        """The answer's body; GatewayError for an error answer, Unreachable when nobody
        listens. ``body``: bytes or a file (``media``, ``length``), or JSON."""
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None and media is None:
            body, media = json.dumps(body).encode(), "application/json"
        if media is not None:
            headers["Content-Type"] = media
            headers["Content-Length"] = str(length if length is not None else len(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
            except ConnectionRefusedError as exc:
                raise Unreachable(str(exc)) from None
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise GatewayError(0, "unavailable", f"the gateway on port {self.port} did not "
                               f"answer: {exc or type(exc).__name__}") from None
        finally:
            conn.close()
        if response.status >= 400:
            try:
                error = json.loads(data)["error"]
                raise GatewayError(response.status, str(error["code"]), str(error["message"]))
            except (ValueError, KeyError, TypeError):
                text = data.decode(errors="replace").strip()[:200] or response.reason
                raise GatewayError(response.status, "http", f"HTTP {response.status}: "
                                                            f"{text}") from None
        return data

    def json(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        return json.loads(self.request(method, path, body, **kwargs))

    def session(self, path: str = "") -> str:
        return f"/api/v1/sessions/{self.sid}{path}"

    def open(self, client: str) -> None:
        opened = self.json("POST", "/api/v1/sessions", {"meta": {"client": client}})
        self.sid, self.token = opened["id"], opened["token"]

    def close(self) -> None:
        """Close the session (best effort: it expires anyway)."""
        if self.sid is None:
            return
        try:
            self.request("DELETE", self.session())
        except (GatewayError, Unreachable):
            pass
        self.sid = self.token = None


def _gateway(home: Any) -> Gateway:
    cfg = load_config(home)
    return Gateway(cfg.ports.http[0])


def _unreachable(home: Any, gateway: Gateway) -> None:
    if not supervision.socket_answers(supervision.socket_path(home)):
        not_running(home)
    fail(f"the gateway does not answer on http://127.0.0.1:{gateway.port}/ (see: scanbridge "
         "status; scanbridge logs gateway)", EXIT_NOT_RUNNING)


# --- files and pages

@dataclass
class Source:
    name: str  # as given on the command line
    path: Path
    media: str
    size: int


@dataclass
class Page:
    image: str  # the id in the session
    file: str
    number: int  # from 1 within its file


def _sources(names: list[str]) -> list[Source]:
    """The files, checked before the service is asked: readable, an image or a PDF."""
    found = []
    for name in names:
        path = Path(name)
        try:
            with open(path, "rb") as handle:
                head = handle.read(16)
                size = handle.seek(0, 2)
        except OSError as exc:
            fail(f"cannot read {name}: {exc.strerror}", EXIT_USAGE)
        if not head:
            fail(f"{name}: the file is empty", EXIT_USAGE)
        media = next((media for magic, media in MAGIC if head.startswith(magic)), None)
        if media is None:
            fail(f"{name}: not an image or a PDF (it can be {KINDS})", EXIT_USAGE)
        found.append(Source(name, path, media, size))
    return found


def _import(gateway: Gateway, sources: list[Source], progress: Progress) -> list[Page]:
    pages: list[Page] = []
    for number, source in enumerate(sources, 1):
        progress.bar(f"importing {source.name} ({number}/{len(sources)})", None)
        try:
            with open(source.path, "rb") as body:
                imported = gateway.json("POST", gateway.session("/images"), body,
                                        media=source.media, length=source.size,
                                        timeout=IMPORT_TIMEOUT)
        except OSError as exc:
            fail(f"cannot read {source.name}: {exc.strerror}", EXIT_USAGE)
        except GatewayError as exc:
            fail(f"{source.name}: {exc.message}", _status(exc))
        pages += [Page(image["id"], source.name, page)
                  for page, image in enumerate(imported["images"], 1)]
    return pages


def _status(exc: GatewayError) -> int:
    return EXIT_USAGE if exc.code in INPUT_CODES else EXIT_FAILED


# --- jobs

class Run:
    """One command's session and job: ``with Run(...) as run``; leaving closes the session,
    cancelling the job first when it has not ended (Ctrl-C, an error)."""

    def __init__(self, home: Any, kind: str, client: str):
        self.home = home
        self.kind = kind  # "ocr" | "barcodes": the endpoint
        self.client = client
        self.gateway = _gateway(home)
        self.job: str | None = None
        self.ended = False
        self.progress = Progress()

    def __enter__(self) -> Run:
        try:
            self.gateway.open(self.client)
        except Unreachable:
            _unreachable(self.home, self.gateway)
        except GatewayError as exc:
            fail(f"cannot open a session: {exc.message}")
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a 2nd Ctrl-C: clean up
        try:
            self.progress.close()
            if kind is KeyboardInterrupt:
                print("scanbridge: interrupted; cancelling", file=sys.stderr)
            if self.job is not None and not self.ended:
                try:
                    self.gateway.request("DELETE", self.gateway.session(
                        f"/{self.kind}/{self.job}"))
                except (GatewayError, Unreachable):
                    pass
            self.gateway.close()
        finally:
            signal.signal(signal.SIGINT, previous)

    def pages(self, sources: list[Source]) -> list[Page]:
        try:
            return _import(self.gateway, sources, self.progress)
        except Unreachable:
            _unreachable(self.home, self.gateway)

    def start(self, body: dict) -> None:
        try:
            job = self.gateway.json("POST", self.gateway.session(f"/{self.kind}"), body)
        except Unreachable:
            _unreachable(self.home, self.gateway)
        except GatewayError as exc:
            fail(exc.message, _status(exc))
        self.job = job["job"]

    def wait(self, what: str) -> dict:
        """Poll the job until it ends; its view when done, else fail."""
        path = self.gateway.session(f"/{self.kind}/{self.job}")
        pause = POLL_FIRST
        while True:
            try:
                view = self.gateway.json("GET", path)
            except Unreachable:
                _unreachable(self.home, self.gateway)
            except GatewayError as exc:
                fail(f"{what} job {self.job}: {exc.message}")
            done, total = view["progress"]["done"], view["progress"]["total"]
            self.progress.bar(f"{what}: {done}/{total} pages", done / total if total else None)
            if view["state"] not in ACTIVE_STATES:
                break
            time.sleep(pause)
            pause = min(POLL_MAX, pause * 1.5)
        self.ended = True
        self.progress.close()
        if view["state"] == JobState.DONE:
            return view
        error = view.get("error") or {}
        if view["state"] == JobState.CANCELLED:
            fail(f"the {what} job was cancelled")
        code = str(error.get("code", "internal"))
        fail(f"{what} failed: {code}: {error.get('message', 'no reason given')}",
             EXIT_USAGE if code in INPUT_CODES else EXIT_FAILED)

    def read(self, sources: list[Source], body: dict, what: str) -> tuple[list[Page], dict]:
        """Import the files, run the job on all their pages, wait: (pages, its result)."""
        pages = self.pages(sources)
        self.start({**body, "images": [page.image for page in pages]})
        return pages, self.wait(what)["result"]

    def fetch(self, output: str) -> bytes:
        try:
            return self.gateway.request("GET", self.gateway.session(
                f"/ocr/{self.job}/{output}"), timeout=IMPORT_TIMEOUT)
        except Unreachable:
            _unreachable(self.home, self.gateway)
        except GatewayError as exc:
            fail(f"cannot get the {output} of OCR job {self.job}: {exc.message}")


def _write(data: bytes, out: str | None) -> None:
    if out is None or out == "-":
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        atomic_write(Path(out), data, 0o644)
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror}")


# --- commands

@command("ocr", "read the text of images and PDFs (Tesseract)", build_ocr,
         description=__doc__.split("\n\n")[0])
def cmd_ocr(home: Any, opts: argparse.Namespace) -> int:
    to_stdout = opts.out is None or opts.out == "-"
    if opts.output == "pdf" and to_stdout and sys.stdout.isatty():
        fail("a PDF is not for a terminal: give -o FILE.pdf (or redirect stdout)",
             EXIT_USAGE)
    if opts.out and not to_stdout and not Path(opts.out).parent.is_dir():
        fail(f"{opts.out}: the folder {Path(opts.out).parent} does not exist", EXIT_USAGE)
    sources = _sources(opts.files)
    body: dict[str, Any] = {"output": opts.output}  # the text comes with every output
    if opts.lang:
        body["lang"] = opts.lang
    if opts.no_rotate:
        body["rotate"] = False
    if opts.timeout:
        body["timeout"] = opts.timeout
    with Run(home, "ocr", "scanbridge ocr") as run:
        pages, result = run.read(sources, body, "OCR")
        if opts.output == "words":
            by_id = {page.image: page for page in pages}
            data = json.dumps({"lang": result["lang"], "pages": [
                {"file": by_id[p["image"]].file, "page": by_id[p["image"]].number,
                 **{key: p[key] for key in ("width", "height", "rotation",
                                            "orientation_confidence", "confidence", "text",
                                            "words")}}
                for p in result["pages"]]}, indent=2, ensure_ascii=False).encode() + b"\n"
        elif opts.output == "text":
            data = result["text"].encode()
        else:
            data = run.fetch(opts.output)
    _write(data, opts.out)
    if not to_stdout:
        print(opts.out)
    return 0


@command("barcodes", "read the barcodes of images and PDFs", build_barcodes,
         description=__doc__.split("\n\n")[0])
def cmd_barcodes(home: Any, opts: argparse.Namespace) -> int:
    sources = _sources(opts.files)
    body: dict[str, Any] = {}
    if opts.formats is not None:
        formats = [name.strip().lower() for name in opts.formats.split(",") if name.strip()]
        if not formats:
            fail("--formats needs format names, like qr,code128", EXIT_USAGE)
        body["formats"] = formats
    if opts.engine:
        body["engine"] = opts.engine
    if opts.timeout:
        body["timeout"] = opts.timeout
    with Run(home, "barcodes", "scanbridge barcodes") as run:
        pages, result = run.read(sources, body, "barcode reading")
    by_id = {page.image: page for page in pages}
    found = [{"file": by_id[p["image"]].file, "page": by_id[p["image"]].number, **symbol}
             for p in result["pages"] for symbol in p["barcodes"]]
    if opts.json:
        print(json.dumps({"engine": result["engine"], "count": len(found), "pages": len(pages),
                          "barcodes": found}, indent=2, ensure_ascii=False))
        return 0
    for symbol in found:
        text = symbol["text"].replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
        print(f"{symbol['file']} page {symbol['page']}: {symbol['format']} {text}")
    if not found:
        print(f"scanbridge: no barcodes found in {len(pages)} page(s)", file=sys.stderr)
    return 0
