"""Splitting a session's pages into documents at separator barcodes.

Batch scanning puts a sheet with a barcode between documents; ``POST .../documents`` with
``split_by: "barcode"`` reads every page's barcodes (the barcode actor), starts a new part
at each page with a matching symbol, and answers a zip with one PDF or TIFF per part.
"""

from __future__ import annotations

import io
import re
import zipfile
from typing import Any

from aiohttp import web

from broker.protocol import Error

from .shared import call

SEPARATOR_FIELDS = {"formats", "pattern", "keep"}
MAX_PATTERN = 200
READ_TIMEOUT = 600.0


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
            pattern = re.compile(pattern)
        except re.error as exc:
            raise Error("invalid_argument", f"separator.pattern is not a regular "
                                            f"expression: {exc}") from None
    keep = value.get("keep", False)
    if not isinstance(keep, bool):
        raise Error("invalid_argument", "separator.keep must be true or false")
    return {"formats": value.get("formats"), "pattern": pattern, "keep": keep}


def parts(pages: list[dict], pattern: re.Pattern | None, keep: bool) -> list[list[str]]:
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
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for number, images in enumerate(found, 1):
            saved = await call(request, "buffer", "save", {
                **args, "images": images, "output": "file"}, timeout=READ_TIMEOUT)
            archive.write(saved["path"], f"{stem}-{number:03d}.{extension}")
    return out.getvalue(), len(found), sum(len(images) for images in found)
