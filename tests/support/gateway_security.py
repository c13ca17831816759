"""What the tests of the gateway's defences share (test_gateway_origins, _tokens and
_request_limits): raw HTTP on a socket (answers, closes, trickles), event sockets, imports,
CORS header names, and two services: one shared by the modules, with default settings plus
an ``Access-Control-Allow-Origin`` line at the top of its DSConfiguration.ini, and one with
small limits and short timeouts (``limited``).
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

import aiohttp
import pytest

from .images import png
from .service import Service, running, started
from .shared import shared_by_modules
from .web import WAIT, Answer, Api

EVIL = "https://evil.example"
OLD_ORIGIN = "https://old.example"  # the Access-Control-Allow-Origin line of DSConfiguration.ini
SLOW = 2.0  # idle_timeout and body_timeout of the limited service
SOCKETS = 2  # max_sockets_per_session of the limited service
LIMITED_INI = (f"[gateway]\nmax_json_kb = 1\nidle_timeout = {SLOW:g}\nbody_timeout = {SLOW:g}\n"
               f"max_sockets_per_session = {SOCKETS}\n[limits]\nmax_import_mb = 1\n")
CORS_EXPOSED = ("ETag", "Content-Disposition", "Location", "X-Scanbridge-Pages",
                "X-Scanbridge-Parts")


# --- helpers


def own(svc: Service, name: str = "127.0.0.1", port: int | None = None) -> str:
    """An origin of the service's own pages."""
    return f"http://{name}:{port or svc.ports[1]}"


def cors_names(answer: Answer) -> list[str]:
    return [name for name in answer.headers if name.lower().startswith("access-control-")]


def import_png(api: Api, sid: str, token: str, **kwargs) -> str:
    answer = api.post(f"/api/v1/sessions/{sid}/images", data=png(**kwargs), token=token,
                      headers={"Content-Type": "image/png"})
    assert answer.status == 201, answer.body
    return answer.json()["images"][0]["id"]


def buffer_sessions(svc: Service) -> set[str]:
    with svc.client() as client:
        return {s["session"] for s in client.call("buffer", "sessions", timeout=15)}


def event_socket(svc: Service, sid: str, token: str | None = None,
                 headers: dict | None = None, port: int | None = None) -> int:
    """101 if the session's event socket opened and said hello, else the refusal's status."""
    async def main() -> int:
        params = {"token": token} if token is not None else {}
        async with aiohttp.ClientSession() as http:
            try:
                ws = await http.ws_connect(svc.url(f"/api/v1/sessions/{sid}/events", port),
                                           params=params, headers=headers or {})
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status
            try:
                msg = await ws.receive(timeout=WAIT)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                assert json.loads(msg.data)["topic"] == "hello", msg.data
            finally:
                await ws.close()
            return 101
    return asyncio.run(main())


def connect(svc: Service) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", svc.ports[1]), timeout=WAIT)
    return sock


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closed the connection (None: still open after ``seconds``).

    With ``trickle``, one byte of it is sent every 0.25 s meanwhile (a slowloris)."""
    start = time.monotonic()
    sent = 0
    sock.settimeout(0.25)
    while time.monotonic() - start < seconds:
        if trickle:
            try:
                sock.sendall(trickle[sent % len(trickle):][:1])
                sent += 1
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - start
    return None


# --- services


@shared_by_modules
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"))
    ini = svc.home / "ini" / "DSConfiguration.ini"
    # As the commercial service writes it: above the first [section] (keeps Service's ports).
    ini.write_text(f"Access-Control-Allow-Origin = {OLD_ORIGIN}\n{ini.read_text()}")
    yield from running(svc)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    yield from started(tmp_path_factory.mktemp("home"), LIMITED_INI)
