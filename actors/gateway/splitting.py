"""Splitting a session's pages into documents at separator barcodes.

Batch scanning puts a sheet with a barcode between documents; ``POST .../documents`` with
``split_by: "barcode"`` reads every page's barcodes (the barcode actor), starts a new part
at each page with a matching symbol, and answers a zip with one PDF or TIFF per part.

The separator pattern comes from the web page, so it is compiled by RE2: matching takes
time linear in the text whatever the pattern (Python's ``re`` backtracks, and
``^(a+)+$`` against a code of forty a's and a "!" would hold the gateway's event loop for
hours). RE2 has no backreferences or lookaround; such patterns are refused.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from typing import Any

import re2
from aiohttp import web

from broker.protocol import Error

from .shared import buffer_file, call

SEPARATOR_FIELDS = {"formats", "pattern", "keep"}
MAX_PATTERN = 200
PATTERN_MEMORY = 1 << 20  # bytes RE2 may use for one compiled pattern
READ_TIMEOUT = 600.0


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is the client's 400, not a line on stderr
    options.max_mem = PATTERN_MEMORY
    return options


def check_separator(value: Any) -> dict:
    """``{formats?, pattern?, keep?}`` with the pattern compiled."""
    value = {} if value is None else value
    if not isinstance(value, dict) or set(value) - SEPARATOR_FIELDS:
        raise Error("invalid_argument", "separator must be an object with formats, pattern "
                                        "and keep")
    pattern = value.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
            raise Error("invalid_argument", f"separator.pattern must be a regular expression "
                                            f"of up to {MAX_PATTERN} characters")
        try:
            pattern = re2.compile(pattern, options=_re2_options())
        except re2.error as exc:
            reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
                exc.args[0], bytes) else str(exc)
            raise Error("invalid_argument", f"separator.pattern is not a regular expression "
                        f"RE2 accepts ({reason}); backreferences and lookaround are not "
                        f"supported") from None
    keep = value.get("keep", False)
    if not isinstance(keep, bool):
        raise Error("invalid_argument", "separator.keep must be true or false")
    return {"formats": value.get("formats"), "pattern": pattern, "keep": keep}


def parts(pages: list[dict], pattern: Any, keep: bool) -> list[list[str]]:
    """Image ids per part; a page with a matching symbol begins the next part."""
    found: list[list[str]] = [[]]
    for page in pages:
        texts = [code["text"] for code in page["barcodes"]]
        separator = any(pattern is None or pattern.search(text) for text in texts)
        if separator:
            found.append([page["image"]] if keep else [])
        else:
            found[-1].append(page["image"])
    return [part for part in found if part]


async def split(request: web.Request, sid: str, args: dict, separator: Any,
                stem: str, extension: str) -> tuple[bytes, int, int]:
    """(zip, parts, pages): ``args`` are the buffer ``save`` arguments of the whole
    document; each part is saved with them and its own pages."""
    rule = check_separator(separator)
    read = await call(request, "barcode", "read", {
        "session": sid, "images": args.get("images"), "formats": rule["formats"]},
        timeout=READ_TIMEOUT)
    found = parts(read["pages"], rule["pattern"], rule["keep"])
    if not found:
        raise Error("conflict", "no pages are left once the separator pages are taken out")
    files = []
    for number, images in enumerate(found, 1):
        saved = await call(request, "buffer", "save", {
            **args, "images": images, "output": "file"}, timeout=READ_TIMEOUT)
        path = buffer_file(request, saved["path"])
        files.append((f"{stem}-{number:03d}.{extension}", path))
    # Reading the parts and their CRCs is long for a big batch: off the event loop.
    archive = await asyncio.to_thread(zip_of, files)
    return archive, len(found), sum(len(images) for images in found)


def zip_of(entries: list[tuple[str, str | bytes]]) -> bytes:
    """A zip (stored, not deflated: PDFs and images do not shrink) of (name, file path or
    bytes) entries. Blocking: run it in a thread."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name, source in entries:
            if isinstance(source, str):
                archive.write(source, name)
            else:
                archive.writestr(name, source)
    return out.getvalue()
