"""What the tests of the gateway's event WebSocket share (test_gateway_events and
test_gateway_close_timer): ``web_test``, which runs an async test with a ``Web`` (a web
session's requests) on a service; a socket driven with aiohttp, message matchers, and the
services with special settings: ``event_backlog = 10`` (``small_backlog``) and
``session_close_delay = 1.5`` (``closing``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time

import aiohttp
import pytest

from .images import png
from .service import Service, started

WAIT = 20.0  # seconds one expected message may take (2 loaded cores)
DELAY = 1.5  # session_close_delay of the timer service
BACKLOG = 10  # event_backlog of the small-backlog service
SCAN_OPTIONS = {"resolution": 75}


# --- helpers


class Socket:
    """One event socket: its hello, then every message read so far (parsed and raw)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, hello: dict):
        self.ws = ws
        self.hello = hello
        self.seen: list[dict] = []
        self.raw: list[str] = []

    async def next(self, timeout: float = WAIT) -> dict:
        msg = await self.ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"not a text message: {msg}"
        message = json.loads(msg.data)
        self.seen.append(message)
        self.raw.append(msg.data)
        return message

    async def until(self, match, timeout: float = WAIT) -> list[dict]:
        """Messages up to and including the first one ``match(message)`` is true for."""
        got = []
        end = time.monotonic() + timeout
        while True:
            message = await self.next(max(0.1, end - time.monotonic()))
            got.append(message)
            if match(message):
                return got

    async def quiet(self, seconds: float) -> list[dict]:
        """What arrives within ``seconds`` (nothing, usually)."""
        got = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                msg = await self.ws.receive(timeout=left)
            except asyncio.TimeoutError:
                break
            got.append(json.loads(msg.data) if msg.type == aiohttp.WSMsgType.TEXT
                       else {"type": str(msg.type), "data": msg.data})
        return got

    async def close(self) -> None:
        await self.ws.close()


class Web:
    """HTTP and WebSocket requests to one service over one aiohttp client session."""

    def __init__(self, http: aiohttp.ClientSession, svc: Service):
        self.http = http
        self.svc = svc
        self.base = svc.url("").rstrip("/")
        self.sockets: list[Socket] = []  # every one ``connect`` made

    async def request(self, method: str, path: str, token: str | None = None,
                      **kwargs) -> tuple[int, object]:
        headers = kwargs.pop("headers", {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with self.http.request(method, self.base + path, headers=headers,
                                     **kwargs) as response:
            body = await response.read()
            try:
                return response.status, json.loads(body)
            except ValueError:
                return response.status, body

    async def open_session(self) -> tuple[str, str]:
        status, body = await self.request("POST", "/api/v1/sessions", json={})
        assert status == 201, body
        return body["id"], body["token"]

    async def info(self, sid: str, token: str) -> tuple[int, dict]:
        return await self.request("GET", f"/api/v1/sessions/{sid}", token)

    async def connect(self, sid: str, token: str, **query) -> Socket:
        """An event socket, once its hello arrived (then it surely gets live events)."""
        params = {"token": token, **{k: str(v) for k, v in query.items()}}
        ws = await self.http.ws_connect(f"{self.base}/api/v1/sessions/{sid}/events",
                                        params=params)
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"no hello: {msg}"
        hello = json.loads(msg.data)
        assert hello["topic"] == "hello", hello
        self.sockets.append(Socket(ws, hello))
        return self.sockets[-1]

    async def scan(self, sid: str, token: str, pages: int, source: str = "test:0") -> str:
        status, job = await self.request("POST", f"/api/v1/sessions/{sid}/scans", token,
                                         json={"source": source, "pages": pages,
                                               "options": SCAN_OPTIONS})
        assert status == 202, job
        return job["job"]

    async def import_png(self, sid: str, token: str, **kwargs) -> str:
        status, body = await self.request("POST", f"/api/v1/sessions/{sid}/images", token,
                                          data=png(**kwargs),
                                          headers={"Content-Type": "image/png"})
        assert status == 201, body
        return body["images"][0]["id"]


def web_test(fixture: str):
    """Make ``async def test_x(web)`` a pytest test of the service that the fixture named
    ``fixture`` gives (``service``, ``small_backlog``, ``closing``): it runs in
    ``asyncio.run`` with ``web``, a Web on that service. Once it passed, the sockets it left
    open are closed (a closing handshake each)."""
    def make(test):
        @functools.wraps(test)
        def run(**fixtures) -> None:
            async def main():
                async with aiohttp.ClientSession() as http:
                    web = Web(http, fixtures[fixture])
                    await test(web)
                    for socket in web.sockets:
                        await socket.close()
            asyncio.run(main())

        # What pytest reads to know which fixture to pass.
        run.__signature__ = inspect.Signature(
            [inspect.Parameter(fixture, inspect.Parameter.POSITIONAL_OR_KEYWORD)])
        return run
    return make


def done_of(job: str):
    return lambda m: m["topic"] in ("scan.done", "scan.error") and m["data"].get("job") == job


def seqs(messages: list[dict]) -> list[int]:
    return [m["seq"] for m in messages]


def consecutive(first: int, count: int) -> list[int]:
    return list(range(first, first + count))


@pytest.fixture(scope="module")
def small_backlog(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("home"),
                       f"[gateway]\nevent_backlog = {BACKLOG}\n")


@pytest.fixture(scope="module")
def closing(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("home"),
                       f"[gateway]\nsession_close_delay = {DELAY}\n")
