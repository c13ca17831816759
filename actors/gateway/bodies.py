"""Request bodies read with a size cap and a deadline, so that neither a huge body nor a
client that trickles one ties up the gateway."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from broker.protocol import Error

CHUNK = 256 * 1024


async def read_bytes(request: web.Request, limit: int, timeout: float, what: str) -> bytes:
    """The whole body, or ``too_large`` (413) past ``limit`` bytes, ``timeout`` (408)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise Error("too_large", f"{what} is {declared} bytes; the limit is {limit} bytes",
                    limit=limit)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while chunk := await request.content.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise Error("too_large", f"{what} is over the limit of {limit} bytes",
                                limit=limit)
                parts.append(chunk)
    except TimeoutError:
        raise Error("request_timeout", f"{what} did not arrive within {timeout:g} s") from None
    return b"".join(parts)


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
