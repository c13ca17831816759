"""What every handler uses: the gateway's state and a few request helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from broker.client import AsyncClient
from broker.config import Config
from broker.logs import Log
from broker.protocol import Error, http_status

from . import bodies
from .events import EventHub
from .jobs import Jobs
from .security import Allowlist
from .sessions import Holder, Sessions
from .tls import Tls


@dataclass
class State:
    """The gateway's state, one per app (``request.app[STATE]``), in three parts by when
    each is set."""

    # Given when the app is made (make_app), and tls by the actor before it serves.
    cfg: Config
    log: Log
    allowlist: Allowlist  # the origins let in, re-read when the ini files change
    tls: Tls | None = None  # the HTTPS certificate and its reloads; None: HTTP only
    # Made when the app starts and closed when it stops (app.start_services, a cleanup_ctx):
    # no request is served before they exist.
    broker: AsyncClient = field(init=False)
    sessions: Sessions = field(init=False)
    hub: EventHub = field(init=False)  # the broker's events, fanned out to event sockets
    jobs: Jobs = field(init=False)  # OCR and barcode jobs
    # Kept while the app runs.
    # (session, image) -> the buffer's ``locate`` answer; see images.located()
    located: dict[tuple[str, str], dict] = field(default_factory=dict)
    viewers: int = 0  # camera live views being served (cameras.py)


STATE = web.AppKey("state", State)


def state(request: web.Request) -> State:
    return request.app[STATE]


def error_response(code: str, message: str, status: int | None = None,
                   **details: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message, **details}},
                             status=status or http_status(code))


async def session_of(request: web.Request) -> Holder:
    """The session named in the path, checked against the request's token."""
    return await state(request).sessions.check(request, request.match_info["sid"])


async def json_value(request: web.Request, default: Any = None) -> Any:
    """The JSON body (any JSON value); ``default`` for none (None: one is required)."""
    cfg = state(request).cfg
    return await bodies.read_json(request, cfg.gateway.max_json_kb * 1024,
                                  cfg.gateway.body_timeout, default)


async def json_body(request: web.Request, allowed: set[str], required: tuple[str, ...] = (),
                    default: Any = None) -> dict:
    """The JSON body as an object with only ``allowed`` keys and all ``required`` ones."""
    return bodies.json_object(await json_value(request, default), allowed, required)


async def call(request: web.Request, service: str, op: str, args: dict | None = None,
               timeout: float | None = None, **kwargs: Any) -> Any:
    broker = state(request).broker
    return await broker.call(service, op, args,
                             timeout=timeout or state(request).cfg.broker.request_timeout,
                             **kwargs)


def buffer_file(request: web.Request, path) -> str:
    """A file path from a buffer answer, resolved, if it lies in the buffer's folder.

    Whoever answers as ``buffer`` names the file this gateway sends (or hands to OCR), so
    a path elsewhere (``/etc/passwd``, a symlink out) is refused, never served."""
    root = os.path.realpath(state(request).cfg.home.buffer)
    real = os.path.realpath(path) if isinstance(path, str) and path else ""
    if not real.startswith(root + os.sep):
        state(request).log.error("buffer answer names a file outside its folder",
                                 path=str(path)[:300])
        raise Error("bad_gateway", "the buffer named a file outside its folder; it is not "
                                   "served (see the gateway's log)")
    return real


def query_int(request: web.Request, name: str, lo: int, hi: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not lo <= value <= hi:
        raise Error("invalid_argument", f"{name} must be a whole number {lo}..{hi}")
    return value


def query_bool(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "").lower()
    if raw in ("", "0", "false", "no"):
        return False
    if raw in ("1", "true", "yes"):
        return True
    raise Error("invalid_argument", f"{name} must be true or false")
