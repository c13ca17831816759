"""Raw HTTP against a running gateway: any method, any header (Host and Origin included);
and the answer read from a raw socket."""

from __future__ import annotations

import http.client
import json as jsonlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from .service import Service

WAIT = 20.0  # seconds one expected answer may take (2 loaded cores)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    elapsed: float = field(default=0.0)

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    @property
    def error(self) -> dict:
        """The ``{code, message}`` of an error answer."""
        return self.json()["error"]


class Api:
    """Requests to one gateway port; ``origin`` is sent as ``Origin`` when given."""

    def __init__(self, service: Service, origin: str | None = None, port: int | None = None):
        self.service = service
        self.port = port or service.ports[1]
        self.origin = origin

    def request(self, method: str, path: str, json: Any = None, data: bytes | None = None,
                headers: dict | None = None, token: str | None = None,
                timeout: float = 60) -> Answer:
        sent = {"Host": f"127.0.0.1:{self.port}"}
        if self.origin is not None:
            sent["Origin"] = self.origin
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json is not None:
            data = jsonlib.dumps(json).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        start = time.monotonic()
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            body = response.read()
            return Answer(response.status, response.headers, body, time.monotonic() - start)
        finally:
            connection.close()

    def get(self, path: str, **kwargs) -> Answer:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> Answer:
        return self.request("POST", path, **kwargs)

    def open_session(self) -> tuple[str, str]:
        """A new session: (id, token)."""
        answer = self.post("/api/v1/sessions", json={})
        assert answer.status == 201, answer.body
        opened = answer.json()
        return opened["id"], opened["token"]

    def scan(self, sid: str, token: str, pages: int = 1, source: str = "test:0",
             options: dict | None = None, timeout: float = 60) -> dict:
        """Run a scan job to its end; returns the finished job."""
        answer = self.post(f"/api/v1/sessions/{sid}/scans", token=token,
                           json={"source": source, "pages": pages,
                                 "options": options or {"resolution": 75}})
        assert answer.status == 202, answer.body
        job = answer.json()["job"]
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            state = self.get(f"/api/v1/sessions/{sid}/scans/{job}", token=token).json()
            if state["state"] != "running":
                return state
            time.sleep(0.1)
        raise AssertionError(f"scan job {job} still running after {timeout} s")


class WebSession:
    """One web session: its id, token, and requests under ``/api/v1/sessions/{id}``.

    Opened on ``api`` unless an existing ``sid`` and ``token`` are given."""

    def __init__(self, api: Api, sid: str | None = None, token: str | None = None):
        if sid is None:
            sid, token = api.open_session()
        self.api, self.id, self.token = api, sid, token
        self.path = f"/api/v1/sessions/{sid}"

    def request(self, method: str, sub: str = "", **kwargs) -> Answer:
        kwargs.setdefault("token", self.token)
        return self.api.request(method, self.path + sub, **kwargs)

    def get(self, sub: str = "", **kwargs) -> Answer:
        return self.request("GET", sub, **kwargs)

    def post(self, sub: str = "", **kwargs) -> Answer:
        return self.request("POST", sub, **kwargs)

    def put(self, sub: str = "", **kwargs) -> Answer:
        return self.request("PUT", sub, **kwargs)

    def delete(self, sub: str = "", **kwargs) -> Answer:
        return self.request("DELETE", sub, **kwargs)

    def upload(self, data: bytes, content_type: str = "image/png") -> str:
        """Import one image; its id."""
        answer = self.post("/images", data=data, headers={"Content-Type": content_type})
        assert answer.status == 201, answer.body
        (image,) = answer.json()["images"]
        return image["id"]


def read_answer(sock: socket.socket, timeout: float = WAIT) -> tuple[int, dict, bytes]:
    """The first HTTP answer on a raw socket: (status, lower-cased headers, body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the connection closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body[:length]
