"""The gateway's limits on requests, against a service with small limits and short
timeouts: JSON and import sizes (declared, streamed, ``Expect: 100-continue``), slow
headers and bodies, event sockets per session.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time

import aiohttp
import pytest

from tests.support.gateway_security import (EVIL, SLOW, SOCKETS, WAIT, buffer_sessions,
                                            closed_within, connect)
from tests.support.gateway_security import limited  # fixtures
from tests.support.images import png
from tests.support.service import Service
from tests.support.web import Api, read_answer

pytestmark = pytest.mark.timeout(120)


# --- limits


def chunked(svc: Service, head: bytes, body: bytes, piece: int) -> tuple[int, dict, bytes]:
    """The answer to a request on a new connection: ``head`` (its headers, Transfer-Encoding:
    chunked), then ``body`` in chunks of ``piece`` bytes."""
    sock = connect(svc)
    try:
        sock.sendall(head)
        for at in range(0, len(body), piece):
            part = body[at:at + piece]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        return read_answer(sock)
    finally:
        sock.close()


def test_a_json_body_over_max_json_kb_is_refused_with_413(limited):
    api = Api(limited)
    small = {"meta": {"note": "x" * 900}}
    assert api.post("/api/v1/sessions", json=small).status == 201
    before = buffer_sessions(limited)
    big = {"meta": {"note": "x" * 2000}}
    answer = api.post("/api/v1/sessions", json=big)
    assert answer.status == 413, answer.body
    assert answer.error["code"] == "too_large"
    assert answer.error["limit"] == 1024
    sid, token = api.open_session()
    answer = api.post(f"/api/v1/sessions/{sid}/scans", token=token,
                      json={"source": "test:0", "options": {"x": "y" * 2000}})
    assert answer.status == 413, answer.body
    # Without a Content-Length (chunked), the limit holds while reading.
    head = (f"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:{limited.ports[1]}\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    status, _, reply = chunked(limited, head, json.dumps(big).encode(), 500)
    assert status == 413, reply
    assert json.loads(reply)["error"]["code"] == "too_large"
    assert buffer_sessions(limited) == before | {sid}


def import_headers(svc: Service, sid: str, token: str, length: int, extra: str = "") -> bytes:
    return (f"POST /api/v1/sessions/{sid}/images HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{svc.ports[1]}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {length}\r\n{extra}\r\n").encode()


def test_a_declared_import_over_the_limit_is_refused_before_the_body_is_sent(limited):
    sid, token = Api(limited).open_session()
    sock = connect(limited)
    try:
        sock.sendall(import_headers(limited, sid, token, 2 * 1024 * 1024))  # and no body
        start = time.monotonic()
        status, _, body = read_answer(sock, timeout=5)
    finally:
        sock.close()
    assert status == 413, body
    assert time.monotonic() - start < 5
    error = json.loads(body)["error"]
    assert error["code"] == "too_large" and error["limit"] == 1024 * 1024
    assert Api(limited).get(f"/api/v1/sessions/{sid}/images", token=token).json() == []


def test_an_expect_continue_request_that_will_be_refused_gets_no_continue(limited):
    # RFC 9110 10.1.1: a final status that the method, URL and headers decide is sent
    # instead of 100 Continue, so the client does not send a body that will be refused.
    sid, token = Api(limited).open_session()
    expect = "Expect: 100-continue\r\n"
    cases = {"over the import limit": (import_headers(limited, sid, token, 2 * 1024 * 1024,
                                                      expect), 413),
             "a foreign origin": (import_headers(limited, sid, token, 1000,
                                                 f"{expect}Origin: {EVIL}\r\n"), 403),
             "a wrong token": (import_headers(limited, sid, "wrong", 1000, expect), 403)}
    got = {}
    for name, (request, _) in cases.items():
        sock = connect(limited)
        try:
            sock.sendall(request)
            got[name] = read_answer(sock, timeout=5)[0]
        finally:
            sock.close()
    assert got == {name: status for name, (_, status) in cases.items()}


def test_a_streamed_import_over_the_limit_is_refused_with_413(limited):
    api = Api(limited)
    sid, token = api.open_session()
    answer = api.post(f"/api/v1/sessions/{sid}/images", token=token,
                      data=png(), headers={"Content-Type": "image/png"})
    assert answer.status == 201  # a small file is fine
    head = import_headers(limited, sid, token, 0).replace(b"Content-Length: 0",
                                                          b"Transfer-Encoding: chunked")
    status, _, body = chunked(limited, head, secrets.token_bytes(1024 * 1024 + 1), 64 * 1024)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "too_large"
    assert len(api.get(f"/api/v1/sessions/{sid}/images", token=token).json()) == 1


def test_a_client_that_stalls_or_trickles_its_headers_is_disconnected(limited):
    half = f"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1:{limited.ports[1]}\r\n".encode()
    sock = connect(limited)
    try:
        sock.sendall(half)  # ... and nothing more
        took = closed_within(sock, SLOW + 4)
    finally:
        sock.close()
    assert took is not None, f"still open {SLOW + 4} s after half the headers"
    # A slowloris: the headers never end, a byte arrives every 0.25 s.
    sock = connect(limited)
    try:
        sock.sendall(half)
        took = closed_within(sock, SLOW + 4, trickle=b"X-Slow: " + b"a" * 200)
    finally:
        sock.close()
    assert took is not None, f"still open {SLOW + 4} s while the headers trickle"
    assert Api(limited).get("/api/v1/status").status == 200


def test_a_body_slower_than_body_timeout_gets_408_and_the_connection_ends(limited):
    sock = connect(limited)
    try:
        sock.sendall(f"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:{limited.ports[1]}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{".encode())
        start = time.monotonic()
        sock.settimeout(0.25)
        answer = b""
        while b"\r\n\r\n" not in answer and time.monotonic() - start < SLOW + 4:
            sock.sendall(b" ")  # 4 bytes a second: the 200 would take 50 s
            try:
                answer += sock.recv(65536)
            except socket.timeout:
                pass
        took = time.monotonic() - start
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert SLOW - 0.5 <= took <= SLOW + 4, took
        _, _, body = answer.partition(b"\r\n\r\n")
        while True:  # the rest of the JSON error
            try:
                json.loads(body)
                break
            except ValueError:
                chunk = sock.recv(65536)
                assert chunk, f"the connection closed within the 408 answer: {answer!r}"
                body += chunk
        assert json.loads(body)["error"]["code"] == "request_timeout"
        # A client that goes on trickling does not keep the connection (aiohttp drains
        # the unread body for at most 10 s, then closes).
        assert closed_within(sock, 15, trickle=b" ") is not None
    finally:
        sock.close()


def test_more_event_sockets_than_the_limit_are_refused_with_429(limited):
    api = Api(limited)
    sid, token = api.open_session()
    other, other_token = api.open_session()
    url = limited.url(f"/api/v1/sessions/{sid}/events")

    async def main():
        async with aiohttp.ClientSession() as http:
            async def open_one(session, tok):
                ws = await http.ws_connect(limited.url(f"/api/v1/sessions/{session}/events"),
                                           params={"token": tok})
                msg = await ws.receive(timeout=WAIT)
                assert json.loads(msg.data)["topic"] == "hello"
                return ws
            sockets = [await open_one(sid, token) for _ in range(SOCKETS)]
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(url, params={"token": token})
            assert refused.value.status == 429
            async with http.get(url, params={"token": token}) as answer:
                error = (await answer.json())["error"]
            assert error["code"] == "too_many" and error["limit"] == SOCKETS, error
            assert "close one of its sockets" in error["message"]
            info = api.get(f"/api/v1/sessions/{sid}", token=token).json()
            assert info["sockets"] == SOCKETS
            # The limit is per session: another session still gets its own.
            others = [await open_one(other, other_token) for _ in range(SOCKETS)]
            # One closed makes room for one more.
            await sockets.pop().close()
            end = time.monotonic() + 10
            while True:
                try:
                    sockets.append(await open_one(sid, token))
                    break
                except aiohttp.WSServerHandshakeError as exc:
                    assert exc.status == 429 and time.monotonic() < end, exc.status
                    await asyncio.sleep(0.1)
            for ws in sockets + others:
                await ws.close()
    asyncio.run(main())
