"""Request bodies read with a size cap and a deadline, so that neither a huge body nor a
client that trickles one ties up the gateway. Files (imports) go to a file as they come,
so that concurrent large ones do not sit in the gateway's memory."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

from aiohttp import web

from broker.protocol import Error

CHUNK = 256 * 1024


async def _chunks(request: web.Request, limit: int, timeout: float,
                  what: str) -> AsyncIterator[bytes]:
    """The body piece by piece: ``too_large`` (413) past ``limit`` bytes (declared or
    sent), ``request_timeout`` (408) when all of it takes longer than ``timeout``."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Error("too_large", f"{what} is {declared} bytes; the limit is {limit} bytes",
                    limit=limit)
    size = 0
    end = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            async with asyncio.timeout_at(end):
                chunk = await request.content.read(CHUNK)
        except TimeoutError:
            raise Error("request_timeout", f"{what} did not arrive within {timeout:g} s") \
                from None
        if not chunk:
            return
        size += len(chunk)
        if size > limit:
            raise Error("too_large", f"{what} is over the limit of {limit} bytes", limit=limit)
        yield chunk


async def read_bytes(request: web.Request, limit: int, timeout: float, what: str) -> bytes:
    """The whole body (see ``_chunks`` for the errors)."""
    return b"".join([chunk async for chunk in _chunks(request, limit, timeout, what)])


@contextlib.asynccontextmanager
async def spooled(request: web.Request, limit: int, timeout: float, what: str,
                  folder: Path) -> AsyncIterator[tuple[Path, int]]:
    """The body written to a new private file in ``folder``: (path, size) while the
    ``async with`` lasts; the file is removed after it, and on any error."""
    handle, name = tempfile.mkstemp(prefix="import-", dir=folder)  # mode 0600
    path = Path(name)
    size = 0
    try:
        with os.fdopen(handle, "wb") as out:
            async for chunk in _chunks(request, limit, timeout, what):
                await asyncio.to_thread(out.write, chunk)  # a slow disk must not stall the loop
                size += len(chunk)
        yield path, size
    finally:
        path.unlink(missing_ok=True)


def clear_spool(folder: Path) -> None:
    """Make ``folder`` (0700) and remove what a gateway that stopped mid-import left."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for leftover in folder.glob("import-*"):
        leftover.unlink(missing_ok=True)


async def read_json(request: web.Request, limit: int, timeout: float,
                    default: Any = None) -> Any:
    """The body as JSON; ``default`` for an empty body (None: a body is required)."""
    kind = request.content_type
    data = await read_bytes(request, limit, timeout, "the JSON body")
    if not data.strip():
        if default is None:
            raise Error("bad_request", "this request needs a JSON body")
        return default
    if kind not in ("application/json", "application/octet-stream"):  # octet: none given
        raise Error("unsupported_media", f"the body must be application/json, not {kind}")
    try:
        return json.loads(data, parse_int=_int64, parse_constant=_no_constant)
    except Error:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise Error("bad_request", f"the body is not valid JSON: {exc}") from None


def _int64(text: str) -> int:
    # The broker's msgpack carries 64-bit integers; anything longer is no sane value.
    value = int(text)
    if not -2**63 <= value < 2**64:
        raise Error("invalid_argument", f"the number {text[:30]}... is too large")
    return value


def _no_constant(name: str):
    raise Error("invalid_argument", f"{name} is not a number JSON allows")


def json_object(body: Any, allowed: set[str], required: tuple[str, ...] = ()) -> dict:
    """``body`` checked to be an object with only ``allowed`` keys and every ``required``."""
    if not isinstance(body, dict):
        raise Error("invalid_argument", "the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Error("invalid_argument", f"unknown field(s) {', '.join(unknown)}; known: "
                    f"{', '.join(sorted(allowed))}")
    missing = [key for key in required if key not in body]
    if missing:
        raise Error("invalid_argument", f"missing field(s): {', '.join(missing)}")
    return body
