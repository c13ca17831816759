"""``scanbridge scan | sources | options``: scanning from the command line, through the
running service (broker, buffer, scanner), with a progress bar.

    scanbridge sources [--refresh]
    scanbridge options test:0
    scanbridge scan --source test:0 --resolution 300 --mode color -o out.pdf
    scanbridge scan --source test:0 --batch -o page-%d.png
    scanbridge scan --source camera:desk --pages 3 --option interval=1 -o frames.pdf

Sources named ``camera:...`` are cameras: the same commands go to the camera actor.

The pages go into a session of the buffer like any web page's scans; the output is
written once the job ended (also after a scan error or Ctrl-C: the pages read are kept),
then the session is closed. If writing fails, the session stays and its id is printed.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

from actors.scanner.options import allowed_text
from broker.client import Client, Subscription
from broker.procutil import atomic_write
from broker.protocol import Error
from common.commands import (EXIT_FAILED, EXIT_NOT_RUNNING, EXIT_USAGE, broker_client, command,
                             fail)
from common.devices import device_service
from common.jobs import ACTIVE_STATES, JobState

from .progress import Progress

DOCUMENTS = {".pdf": "pdf", ".tif": "tiff", ".tiff": "tiff"}
IMAGES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".tif": "tiff",
          ".tiff": "tiff", ".gif": "gif"}
PAGE_NUMBER = re.compile(r"%0?\d*d")
START_TIMEOUT = 60.0  # seconds for the first request: the scanner may be starting
QUIET_POLL = 3.0  # seconds without events after which we ask for the job's state
SAVE_TIMEOUT = 600.0


def build_scan(scan: argparse.ArgumentParser) -> None:
    scan.add_argument("--source", required=True, help="scanner id (see: scanbridge sources)")
    scan.add_argument("-o", "--output", required=True, metavar="PATH",
                      help="out.pdf, out.tiff (all pages), or page-%%d.png|jpg|tif|bmp")
    how_many = scan.add_mutually_exclusive_group()
    how_many.add_argument("--pages", type=int, default=1, metavar="N",
                          help="scan N pages (default 1)")
    how_many.add_argument("--batch", action="store_true",
                          help="scan until the document feeder is empty")
    scan.add_argument("--resolution", type=float, metavar="DPI")
    scan.add_argument("--mode", help="color, gray, lineart (or a mode the device names)")
    scan.add_argument("--depth", type=int, help="bits per sample, e.g. 1, 8, 16")
    scan.add_argument("--feeder", choices=("flatbed", "adf", "duplex"),
                      help="paper source (--batch implies adf)")
    scan.add_argument("--page-size", help="A4, Letter, ... or max")
    scan.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                      help="any device option (see: scanbridge options SOURCE); repeatable")
    scan.add_argument("--quality", type=int, default=85, help="JPEG quality (85)")


def build_sources(sources: argparse.ArgumentParser) -> None:
    sources.add_argument("--refresh", action="store_true", help="look for devices again")
    sources.add_argument("--json", action="store_true")


def build_options(options: argparse.ArgumentParser) -> None:
    options.add_argument("source")
    options.add_argument("--json", action="store_true")


def _call(client: Client, service: str, op: str, args: dict, **kwargs: Any) -> Any:
    try:
        return client.call(service, op, args, **kwargs)
    except Error as exc:
        fail(f"{exc.code}: {exc.message}")


def _ask(home: Any, op: str, args: dict, as_json: bool, service: str = "scanner") -> Any:
    """The device actor's answer to ``op``; printed as JSON (and None returned) with --json."""
    with broker_client(home) as client:
        found = _call(client, service, op, args, timeout=START_TIMEOUT)
    if as_json:
        print(json.dumps(found, indent=2))
        return None
    return found


@command("sources", "list the scanners and cameras", build_sources)
def cmd_sources(home: Any, opts: argparse.Namespace) -> int:
    args = {"refresh": opts.refresh}
    with broker_client(home) as client:
        found = _call(client, "scanner", "sources", args, timeout=START_TIMEOUT)
        try:
            found += client.call("camera", "sources", args, timeout=START_TIMEOUT)
        except Error as exc:
            print(f"scanbridge: cameras not listed: {exc.code}: {exc.message}", file=sys.stderr)
    if opts.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no scanners or cameras found (see: scanbridge doctor)")
    for entry in found:
        if entry["type"] == "camera":
            print(f"{entry['id']:<24} {entry['name']}: {entry['device']} ({entry['kind']} "
                  f"camera)")
            continue
        busy = "  (busy)" if entry["busy"] else ""
        print(f"{entry['id']:<24} {entry['vendor']} {entry['model']} ({entry['kind']}){busy}")
    return 0


@command("options", "a scanner's or camera's options and allowed values", build_options)
def cmd_options(home: Any, opts: argparse.Namespace) -> int:
    service = device_service(opts.source)
    found = _ask(home, "options", {"source": opts.source}, opts.json, service)
    if found is None:
        return 0
    if service == "camera":
        for mode in found["modes"]:
            rates = ", ".join(f"{fps:g}" for fps in mode["fps"]) or "?"
            print(f"{mode['width']}x{mode['height']:<8} {mode['format']:<6} fps {rates}")
        for name, value in found["properties"].items():
            print(f"{name:<28} {value}")
        print("\ncapture options: resolution=WxH, interval=SECONDS, document=true|false")
        return 0
    for entry in found["options"]:
        if entry["settable"]:
            print(f"{entry['name']:<28} {str(entry['value']):<20} {allowed_text(entry)}")
    aliases = ", ".join(f"{name} ({', '.join(map(str, spec['values']))})"
                        if "values" in spec else name
                        for name, spec in found["aliases"].items())
    print(f"\naliases: {aliases}")
    return 0


def _value(raw: str) -> Any:
    """Option values from the command line: numbers and booleans as such, else text."""
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _options(opts: argparse.Namespace) -> dict:
    options: dict[str, Any] = {}
    for raw in opts.option:
        name, sep, value = raw.partition("=")
        if not sep or not name:
            fail(f"--option {raw!r} is not NAME=VALUE", EXIT_USAGE)
        options[name.strip()] = _value(value.strip())
    for name, value in (("resolution", opts.resolution), ("mode", opts.mode),
                        ("depth", opts.depth), ("page_size", opts.page_size)):
        if value is not None:
            options[name] = value
    if opts.feeder or opts.batch:
        options["source"] = opts.feeder or "adf"
    if "resolution" in options and float(options["resolution"]).is_integer():
        options["resolution"] = int(options["resolution"])
    return options


def _plan(path: str, several: bool) -> tuple[str, str]:
    """(kind, format): ("document", pdf|tiff) or ("pages", png|jpeg|...)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if PAGE_NUMBER.search(target.name):
        if suffix not in IMAGES:
            fail(f"{path}: page files can be {', '.join(sorted(IMAGES))}", EXIT_USAGE)
        kind = ("pages", IMAGES[suffix])
    elif suffix in DOCUMENTS:
        kind = ("document", DOCUMENTS[suffix])
    elif suffix in IMAGES:
        if several:
            fail(f"{path}: several pages need a page number in the name, like page-%d"
                 f"{suffix}, or a .pdf/.tiff", EXIT_USAGE)
        kind = ("pages", IMAGES[suffix])
    else:
        fail(f"{path}: the output must end in .pdf, .tiff or an image type "
             f"({', '.join(sorted(IMAGES))})", EXIT_USAGE)
    folder = target.parent
    if not folder.is_dir():
        fail(f"{path}: the folder {folder} does not exist", EXIT_USAGE)
    return kind


@command("scan", "scan pages into a PDF, TIFF or image files", build_scan,
         description=__doc__.split("\n\n")[0])
def cmd_scan(home: Any, opts: argparse.Namespace) -> int:
    if not opts.batch and not 1 <= opts.pages <= 1000000:
        fail("--pages must be 1 or more", EXIT_USAGE)
    kind, fmt = _plan(opts.output, opts.batch or opts.pages > 1)
    options = _options(opts)
    with broker_client(home) as client:
        try:
            events = Subscription(home.events_in, home.events_out, [b"scan."])
        except Error as exc:
            fail(exc.message, EXIT_NOT_RUNNING)
        with events:
            session = _call(client, "buffer", "open_session",
                            {"meta": {"client": "scanbridge scan"}})["session"]
            try:
                job = client.call(device_service(opts.source), "scan", {
                    "session": session, "source": opts.source, "options": options,
                    "pages": None if opts.batch else opts.pages, "batch": opts.batch},
                    timeout=START_TIMEOUT)
            except Error as exc:
                _close(client, session)
                fail(f"{exc.code}: {exc.message}")
            ended = _follow(client, events, job, Progress(), device_service(opts.source))
        images = ended["images"]
        status = 0
        if ended["state"] == JobState.FAILED:
            error = ended.get("error") or {}
            print(f"scanbridge: scan failed after {len(images)} page(s): "
                  f"{error.get('code')}: {error.get('message')}", file=sys.stderr)
            status = EXIT_FAILED
        elif ended["state"] == JobState.CANCELLED:
            status = 130
        if not images:
            _close(client, session)
            if status == 0:
                fail("the scan gave no pages")
            return status
        try:
            written = _write(client, session, images, kind, fmt, opts)
        except (Error, OSError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            fail(f"cannot write {opts.output}: {message}; the {len(images)} scanned page(s) "
                 f"are kept in session {session} (scanbridge call buffer list "
                 f"'{{\"session\": \"{session}\"}}')")
        _close(client, session)
    for path in written:
        print(path)
    return status


def _follow(client: Client, events: Subscription, job: dict, progress: Progress,
            service: str) -> dict:
    """Show the job's progress until it ends; Ctrl-C cancels it (pages read are kept)."""
    job_id = job["job"]
    stored = 0
    interrupted = False

    def interrupt(_signum: int, _frame: Any) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, interrupt)
    try:
        while True:
            if interrupted:
                interrupted = False
                progress.line("cancelling (the pages read are kept)...")
                try:
                    client.call(service, "cancel", {"job": job_id},
                                timeout=15)
                except Error:
                    pass
            event = events.next(QUIET_POLL)
            if event is None:
                state = _call(client, service, "job", {"job": job_id},
                              timeout=15)
                if state["state"] not in ACTIVE_STATES:
                    progress.close()
                    return state
                continue
            topic, body = event
            if body.get("job") != job_id:
                continue
            if topic == "scan.progress":
                percent = body.get("percent")
                progress.bar(f"page {body['page']}: {percent if percent is not None else '?'}%"
                             f"  ({stored} stored)",
                             None if percent is None else percent / 100)
            elif topic == "scan.page":
                stored = body["pages"]
                image = body["image"]
                progress.line(f"page {body['page']} stored: {image['width']}x{image['height']} "
                              f"{image['mode']} {image['dpi'][0]:g} dpi")
            elif topic in ("scan.done", "scan.error"):
                progress.close()
                return body
    finally:
        signal.signal(signal.SIGINT, previous)


def _write(client: Client, session: str, images: list, kind: str, fmt: str,
           opts: argparse.Namespace) -> list[str]:
    if kind == "document":
        reply = client.request("buffer", "save", {
            "session": session, "images": images, "format": fmt, "quality": opts.quality},
            timeout=SAVE_TIMEOUT)
        atomic_write(Path(opts.output), reply.blobs[0].bytes, 0o644)
        return [opts.output]
    written = []
    target = Path(opts.output)
    for number, image in enumerate(images, 1):
        path = str(target.with_name(_numbered(target.name, number)))
        reply = client.request("buffer", "get", {
            "session": session, "image": image, "format": fmt, "quality": opts.quality},
            timeout=SAVE_TIMEOUT)
        atomic_write(Path(path), reply.blobs[0].bytes, 0o644)
        written.append(path)
    return written


def _numbered(name: str, number: int) -> str:
    match = PAGE_NUMBER.search(name)
    if match is None:
        return name
    return name[:match.start()] + match.group(0) % number + name[match.end():]


def _close(client: Client, session: str) -> None:
    try:
        client.call("buffer", "close_session", {"session": session}, timeout=30)
    except Error:
        pass
