"""The gateway's defences, checked against the real service over HTTP and WebSocket.

Covers the ``Host`` check (DNS rebinding: only loopback names are answered), the ``Origin``
allowlist (403 naming ``scanbridge allow ORIGIN``, the refusal logged; the service's own
pages pass; ``scanbridge allow`` and edits of the ini files take effect without a restart;
an invalid edit keeps the previous list), CORS and Private Network Access answers (only for
allowed origins), session tokens (401 without, 403 with a wrong one or another session's,
at least 128 random bits, bound to the origin that opened the session, sessions opened over
the broker unusable over HTTP), limits (JSON and import sizes, slow headers and bodies,
event sockets per session), the ``nosniff`` and CSP headers, and loopback-only listening.

Two services: a shared one with default settings plus an ``Access-Control-Allow-Origin``
line at the top of its DSConfiguration.ini, and one with small limits and short timeouts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
import secrets
import socket
import time

import aiohttp
import pytest
from PIL import Image

from tests.support.images import png
from tests.support.service import Service
from tests.support.stack import poll_for
from tests.support.web import Answer, Api

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0  # seconds one expected answer may take (2 loaded cores)
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


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"))
    ini = svc.home / "ini" / "DSConfiguration.ini"
    # As the commercial service writes it: above the first [section] (keeps Service's ports).
    ini.write_text(f"Access-Control-Allow-Origin = {OLD_ORIGIN}\n{ini.read_text()}")
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"), extra_ini=LIMITED_INI)
    svc.start()
    yield svc
    svc.stop()


# --- Host: DNS rebinding


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}",
                                  "127.0.0.1.evil.example", ""])
def test_a_host_that_is_not_a_loopback_name_is_refused_everywhere(service, host):
    host = host.format(port=service.ports[1])
    api = Api(service)
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    before = buffer_sessions(service)
    requests = [("GET", "/api/v1/status", None), ("POST", "/api/v1/sessions", None),
                ("GET", f"/api/v1/sessions/{sid}", token),
                ("GET", f"/api/v1/sessions/{sid}/images", token),
                ("GET", f"/api/v1/sessions/{sid}/images/{iid}", token),
                ("DELETE", f"/api/v1/sessions/{sid}", token),
                ("GET", "/", None), ("GET", "/scanbridge.js", None), ("GET", "/demo/", None),
                ("GET", "/api/v1/openapi.json", None)]
    for method, path, tok in requests:
        answer = api.request(method, path, token=tok, headers={"Host": host},
                             json={} if method == "POST" else None)
        assert answer.status == 403, (method, path, answer.status, answer.body[:200])
        assert answer.headers["Content-Type"].startswith("application/json"), path
        assert answer.error["code"] == "forbidden", path
        assert "loopback" in answer.error["message"], answer.error
        assert not answer.body.startswith(b"\x89PNG")
    assert event_socket(service, sid, token, headers={"Host": host}) == 403
    assert buffer_sessions(service) == before  # the refused POST opened no session
    # The session was not deleted by the refused DELETE, and a loopback Host gets through.
    answer = api.get(f"/api/v1/sessions/{sid}", token=token)
    assert answer.status == 200 and answer.json()["images"] == 1


def test_a_request_without_a_host_header_is_refused(service):
    sock = connect(service)
    try:
        sock.sendall(b"GET /api/v1/status HTTP/1.0\r\n\r\n")
        status, headers, body = read_answer(sock)
    finally:
        sock.close()
    assert status == 403
    assert json.loads(body)["error"]["code"] == "forbidden"


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1", "[::1]"])
def test_loopback_host_names_with_a_port_are_accepted(service, name):
    host = f"{name}:{service.ports[1]}"
    api = Api(service)
    answer = api.get("/api/v1/status", headers={"Host": host})
    assert answer.status == 200, answer.body
    assert answer.json()["name"] == "scanbridge"
    answer = api.post("/api/v1/sessions", json={}, headers={"Host": host})
    assert answer.status == 201, answer.body
    sid, token = answer.json()["id"], answer.json()["token"]
    answer = api.get(f"/api/v1/sessions/{sid}", token=token, headers={"Host": host})
    assert answer.status == 200 and answer.json()["id"] == sid
    answer = api.get("/", headers={"Host": host})
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/html")
    assert event_socket(service, sid, token, headers={"Host": host}) == 101


# --- Origin allowlist and CORS


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1:1", "http://localhost",
                                    "https://old.example.evil.example"])
def test_a_foreign_origin_is_refused_with_the_command_that_allows_it(service, origin):
    api = Api(service, origin=origin)
    before = buffer_sessions(service)
    for method, path in [("GET", "/api/v1/status"), ("POST", "/api/v1/sessions"),
                         ("GET", "/api/v1/sources"), ("GET", "/")]:
        answer = api.request(method, path, json={} if method == "POST" else None)
        assert answer.status == 403, (path, answer.body[:200])
        assert answer.error["code"] == "forbidden"
        assert f"scanbridge allow {origin}" in answer.error["message"], answer.error
        assert cors_names(answer) == [], dict(answer.headers)
    assert buffer_sessions(service) == before
    sid, token = Api(service).open_session()
    assert event_socket(service, sid, token, headers={"Origin": origin}) == 403

    paths = {"/api/v1/status", "/api/v1/sessions", f"/api/v1/sessions/{sid}/events"}

    def logged():
        records = [r for r in service.log_records("gateway")
                   if r.get("msg") == "refused origin" and r.get("origin") == origin]
        return records if {r["path"] for r in records} >= paths else None
    records = poll_for(logged, 10, f"'refused origin' lines for {origin} in gateway.log")
    assert all(r["level"] == "warning" and r["status"] == 403 for r in records)


def test_the_service_own_origins_pass_without_cors_headers(service):
    for port in service.ports:
        for name in ("127.0.0.1", "localhost"):
            origin = own(service, name, port)
            api = Api(service, origin=origin)
            answer = api.get("/api/v1/status")
            assert answer.status == 200, (origin, answer.body[:200])
            assert cors_names(answer) == [], (origin, dict(answer.headers))
            answer = api.post("/api/v1/sessions", json={})
            assert answer.status == 201, (origin, answer.body[:200])
            assert cors_names(answer) == []
            assert answer.json()["token"]


def test_the_allow_origin_line_of_dsconfiguration_allows_its_origin(service):
    api = Api(service, origin=OLD_ORIGIN)
    answer = api.get("/api/v1/status")
    assert answer.status == 200, answer.body
    assert answer.headers["Access-Control-Allow-Origin"] == OLD_ORIGIN
    assert OLD_ORIGIN in answer.json()["origins"]
    sid, token = api.open_session()
    assert api.get(f"/api/v1/sessions/{sid}", token=token).json()["origin"] == OLD_ORIGIN


def test_scanbridge_allow_lets_an_origin_in_without_a_restart(service):
    origin = "http://127.0.0.1:9999"
    api = Api(service, origin=origin)
    assert api.get("/api/v1/status").status == 403
    gateway = service.pid("gateway")
    done = service.cli("allow", origin, check=True)
    assert origin in done.stdout
    start = time.monotonic()
    poll_for(lambda: api.get("/api/v1/status").status == 200, 10, f"{origin} allowed")
    assert time.monotonic() - start < 3.0  # the allowlist is re-read every second
    assert service.pid("gateway") == gateway
    status = api.get("/api/v1/status")
    assert origin in status.json()["origins"]
    for answer in (status, api.post("/api/v1/sessions", json={}),
                   api.get("/api/v1/sessions/nosuchsession")):  # errors too: a page reads them
        assert answer.headers["Access-Control-Allow-Origin"] == origin, answer.status
        assert "Origin" in answer.headers["Vary"]
        exposed = [h.strip() for h in answer.headers["Access-Control-Expose-Headers"].split(",")]
        assert set(CORS_EXPOSED) <= set(exposed), exposed
    # The session it opened answers with CORS headers too, the image as well.
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    answer = api.get(f"/api/v1/sessions/{sid}/images/{iid}", token=token)
    assert answer.status == 200 and answer.body.startswith(b"\x89PNG")
    assert answer.headers["Access-Control-Allow-Origin"] == origin


def test_an_invalid_user_config_keeps_the_previous_origins_and_logs_an_error(service):
    kept, added = "http://127.0.0.1:9998", "http://127.0.0.1:9997"
    service.cli("allow", kept, check=True)
    poll_for(lambda: Api(service, origin=kept).get("/api/v1/status").status == 200, 10,
             f"{kept} allowed")
    path = service.home / "ini" / "user_config.ini"
    good = path.read_text()
    origins = Api(service).get("/api/v1/status").json()["origins"]

    def errors():
        return [r for r in service.log_records("gateway") if r.get("level") == "error"
                and "not reloaded" in r.get("msg", "")]
    seen = len(errors())

    def logged_error():
        Api(service).get("/api/v1/status")  # the allowlist looks at the files when asked
        return len(errors()) > seen and errors()
    try:
        path.write_text(f"[access]\nallowed_origins = {added}, ftp://not.an.origin\n")
        records = poll_for(logged_error, 10, "an error about the invalid user_config.ini",
                           every=0.2)
        assert "user_config.ini" in records[-1]["error"], records[-1]
        assert Api(service, origin=kept).get("/api/v1/status").status == 200
        assert Api(service, origin=added).get("/api/v1/status").status == 403
        assert Api(service).get("/api/v1/status").json()["origins"] == origins
    finally:
        path.write_text(good)
    time.sleep(1.5)  # one more reload of the (valid again) file
    assert Api(service, origin=kept).get("/api/v1/status").status == 200
    assert Api(service).get("/api/v1/status").json()["origins"] == origins


# --- preflight and Private Network Access


def preflight(service: Service, origin: str, path: str = "/api/v1/sessions",
              private_network: bool = True) -> Answer:
    headers = {"Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
    if private_network:
        headers["Access-Control-Request-Private-Network"] = "true"
    return Api(service, origin=origin).request("OPTIONS", path, headers=headers)


def test_a_preflight_of_an_allowed_origin_gets_cors_and_private_network_answers(service):
    sid, _ = Api(service).open_session()
    # A session path too: a browser's preflight carries no token.
    for path in ("/api/v1/sessions", f"/api/v1/sessions/{sid}/images"):
        answer = preflight(service, OLD_ORIGIN, path)
        assert answer.status == 204, (path, answer.body[:200])
        assert answer.body == b""
        assert answer.headers["Access-Control-Allow-Origin"] == OLD_ORIGIN
        assert "Origin" in answer.headers["Vary"]
        methods = {m.strip() for m in answer.headers["Access-Control-Allow-Methods"].split(",")}
        assert {"GET", "POST", "PUT", "DELETE"} <= methods
        allowed = {h.strip().lower()
                   for h in answer.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert int(answer.headers["Access-Control-Max-Age"]) > 0
        assert answer.headers["Access-Control-Allow-Private-Network"] == "true"


def test_a_preflight_without_the_private_network_question_gets_no_such_answer(service):
    answer = preflight(service, OLD_ORIGIN, private_network=False)
    assert answer.status == 204
    assert answer.headers["Access-Control-Allow-Origin"] == OLD_ORIGIN
    assert "Access-Control-Allow-Private-Network" not in answer.headers


def test_a_preflight_of_a_foreign_origin_is_refused_without_cors_headers(service):
    answer = preflight(service, EVIL)
    assert answer.status == 403
    assert answer.error["code"] == "forbidden"
    assert f"scanbridge allow {EVIL}" in answer.error["message"]
    assert cors_names(answer) == [], dict(answer.headers)


def test_a_foreign_origin_gets_the_client_and_the_origin_probe_but_not_the_api(service):
    """The module (and the modules it imports) and the probe answer any origin with ``*``
    (never credentials), so a page that is not allowed can import the client and learn the
    command; nothing else."""
    evil = Api(service, origin=EVIL)
    client = evil.get("/scanbridge.js")
    assert client.status == 200, client.body[:200]
    assert client.headers["Content-Type"].startswith("text/javascript")
    assert b"export async function connect" in client.body
    assert b'from "./scanbridge/session.js"' in client.body
    part = evil.get("/scanbridge/session.js")
    assert part.status == 200, part.body[:200]
    assert part.headers["Content-Type"].startswith("text/javascript")
    assert b"export class Session" in part.body
    probe = evil.get("/api/v1/origin")
    assert probe.status == 200, probe.body
    assert probe.json() == {"origin": EVIL, "allowed": False,
                            "command": f"scanbridge allow {EVIL}",
                            "message": probe.json()["message"]}
    assert f"scanbridge allow {EVIL}" in probe.json()["message"]
    assert "Origin" in probe.headers["Vary"] and probe.headers["Cache-Control"] == "no-store"
    for answer in (client, part, probe, Api(service).get("/scanbridge.js"),
                   Api(service).get("/scanbridge/session.js")):
        assert cors_names(answer) == ["Access-Control-Allow-Origin"], dict(answer.headers)
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
    for path in ("/scanbridge.js", "/scanbridge/session.js"):
        asked = preflight(service, EVIL, path)
        assert asked.status == 204
        assert asked.headers["Access-Control-Allow-Origin"] == "*"
        assert asked.headers["Access-Control-Allow-Methods"] == "GET"
        assert asked.headers["Access-Control-Allow-Private-Network"] == "true"
        assert "Access-Control-Allow-Credentials" not in asked.headers

    # Everything else stays refused: the API, session data, the other static files.
    sid, token = Api(service).open_session()
    before = buffer_sessions(service)
    for method, path, tok in [("GET", "/api/v1/status", None), ("POST", "/api/v1/sessions", None),
                              ("GET", f"/api/v1/sessions/{sid}", token),
                              ("GET", f"/api/v1/sessions/{sid}/images", token),
                              ("GET", "/api/v1/sources", None), ("GET", "/welcome.js", None),
                              ("GET", "/demo/", None), ("GET", "/api/v1/openapi.json", None),
                              ("POST", "/scanbridge.js", None),
                              ("POST", "/scanbridge/session.js", None)]:
        answer = evil.request(method, path, token=tok, json={} if method == "POST" else None)
        assert answer.status == 403, (method, path, answer.status)
        assert answer.error["code"] == "forbidden"
        assert cors_names(answer) == [], (path, dict(answer.headers))
    assert preflight(service, EVIL).status == 403
    assert buffer_sessions(service) == before

    # An allowed origin and a request without Origin are told they may.
    assert Api(service, origin=OLD_ORIGIN).get("/api/v1/origin").json() == {
        "origin": OLD_ORIGIN, "allowed": True}
    assert Api(service).get("/api/v1/origin").json() == {"origin": None, "allowed": True}


# --- session tokens


def session_requests(sid: str, iid: str) -> list[tuple[str, str, dict | None]]:
    """(method, path, JSON body) of the session endpoints."""
    base = f"/api/v1/sessions/{sid}"
    return [("GET", base, None), ("GET", f"{base}/images", None),
            ("GET", f"{base}/images/{iid}", None), ("GET", f"{base}/images/{iid}/info", None),
            ("GET", f"{base}/images/{iid}/thumbnail", None),
            ("POST", f"{base}/images/{iid}/ops", [{"op": "rotate", "angle": 90}]),
            ("PUT", f"{base}/order", {"order": [iid]}),
            ("POST", f"{base}/documents", {"format": "pdf"}),
            ("POST", f"{base}/scans", {"source": "test:0", "options": {"resolution": 75}}),
            ("GET", f"{base}/scans", None),
            ("DELETE", f"{base}/images/{iid}", None), ("DELETE", f"{base}/images", None),
            ("DELETE", base, None)]


def assert_untouched(api: Api, sid: str, token: str, iid: str) -> None:
    """The session and its one image are as they were: nothing was edited or deleted."""
    answer = api.get(f"/api/v1/sessions/{sid}/images", token=token)
    assert answer.status == 200, answer.body
    images = answer.json()
    assert [i["id"] for i in images] == [iid]
    assert (images[0]["width"], images[0]["height"]) == (40, 30)
    assert api.get(f"/api/v1/sessions/{sid}/scans", token=token).json() == []


def test_session_endpoints_without_a_token_answer_401(service):
    api = Api(service)
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    for method, path, body in session_requests(sid, iid):
        answer = api.request(method, path, json=body)
        assert answer.status == 401, (method, path, answer.status, answer.body[:200])
        assert answer.error["code"] == "unauthorized"
        # An empty bearer is no token either.
        answer = api.request(method, path, json=body, headers={"Authorization": "Bearer "})
        assert answer.status == 401, (method, path, answer.status)
    assert event_socket(service, sid) == 401
    assert_untouched(api, sid, token, iid)


def test_a_wrong_token_answers_403(service):
    api = Api(service)
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    wrong = secrets.token_urlsafe(32)
    for method, path, body in session_requests(sid, iid):
        answer = api.request(method, path, json=body, token=wrong)
        assert answer.status == 403, (method, path, answer.status, answer.body[:200])
        assert answer.error["code"] == "forbidden"
        answer = api.request(method, f"{path}?token={wrong}", json=body)
        assert answer.status == 403, (method, path, answer.status)
        # The right token, but cut short or with something added, is wrong too.
        answer = api.request(method, path, json=body, token=token[:-1])
        assert answer.status == 403, (method, path, answer.status)
    assert event_socket(service, sid, wrong) == 403
    assert event_socket(service, sid, token + "x") == 403
    assert_untouched(api, sid, token, iid)


def test_one_session_token_does_not_open_another_session(service):
    api = Api(service)
    sid_a, token_a = api.open_session()
    sid_b, token_b = api.open_session()
    iid = import_png(api, sid_b, token_b, color="blue")
    for method, path, body in session_requests(sid_b, iid):
        answer = api.request(method, path, json=body, token=token_a)
        assert answer.status == 403, (method, path, answer.status, answer.body[:200])
        assert answer.error["code"] == "forbidden"
        assert b"\x89PNG" not in answer.body and b"%PDF" not in answer.body
        answer = api.request(method, f"{path}?token={token_a}", json=body)
        assert answer.status == 403, (method, path, answer.status)
    assert event_socket(service, sid_b, token_a) == 403
    # B's image id under A's own path is not found in A.
    for suffix in ("", "/thumbnail", "/info"):
        answer = api.get(f"/api/v1/sessions/{sid_a}/images/{iid}{suffix}", token=token_a)
        assert answer.status == 404, (suffix, answer.status, answer.body[:200])
        assert answer.error["code"] == "not_found"
    answer = api.post(f"/api/v1/sessions/{sid_a}/documents", token=token_a,
                      json={"images": [iid], "format": "pdf"})
    assert answer.status in (400, 404), (answer.status, answer.body[:200])
    assert b"%PDF" not in answer.body
    # B's own token gets B's image: the refusals above were about the token.
    answer = api.get(f"/api/v1/sessions/{sid_b}/images/{iid}", token=token_b)
    assert answer.status == 200
    with Image.open(io.BytesIO(answer.body)) as picture:
        assert picture.size == (40, 30)
        assert picture.convert("RGB").getpixel((5, 5)) == (0, 0, 255)
    assert_untouched(api, sid_b, token_b, iid)
    assert api.get(f"/api/v1/sessions/{sid_a}/images", token=token_a).json() == []


def test_the_token_may_come_as_a_query_parameter(service):
    api = Api(service)
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    answer = api.get(f"/api/v1/sessions/{sid}?token={token}")
    assert answer.status == 200 and answer.json()["id"] == sid
    answer = api.get(f"/api/v1/sessions/{sid}/images/{iid}?token={token}")
    assert answer.status == 200 and answer.body == png()
    answer = api.get(f"/api/v1/sessions/{sid}/images/{iid}/thumbnail?token={token}")
    assert answer.status == 200 and answer.body.startswith(b"\xff\xd8")
    assert event_socket(service, sid, token) == 101


def test_tokens_are_random_url_safe_and_at_least_128_bits(service):
    api = Api(service)
    opened = [api.post("/api/v1/sessions", json={}).json() for _ in range(5)]
    tokens = [o["token"] for o in opened]
    assert len(set(tokens)) == len(tokens)
    for session in opened:
        token = session["token"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", token), token
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        assert len(raw) >= 16, token
        assert token not in session["id"] and session["id"] not in token
    # Not kept or written in the clear: the buffer holds its hash, the log does not name it.
    with service.client() as client:
        for session in opened:
            meta = client.call("buffer", "session", {"session": session["id"]})["meta"]
            assert session["token"] not in json.dumps(meta)
            assert meta["gateway"]["token_sha256"] == hashlib.sha256(
                session["token"].encode()).hexdigest()
    log = (service.home / "logs" / "gateway.log").read_text(errors="replace")
    assert not [t for t in tokens if t in log]
    info = api.get(f"/api/v1/sessions/{opened[0]['id']}", token=tokens[0])
    assert tokens[0] not in info.body.decode()


def test_meta_sent_by_a_page_cannot_set_the_token_hash(service):
    api = Api(service)
    chosen = "chosen-by-the-page"
    forged = {"token_sha256": hashlib.sha256(chosen.encode()).hexdigest(), "origin": ""}
    answer = api.post("/api/v1/sessions", json={"meta": {"gateway": forged}})
    assert answer.status == 201, answer.body
    sid, token = answer.json()["id"], answer.json()["token"]
    assert api.get(f"/api/v1/sessions/{sid}", token=chosen).status == 403
    assert api.get(f"/api/v1/sessions/{sid}", token=token).status == 200


def test_a_session_is_bound_to_the_origin_that_opened_it(service):
    mine = own(service)  # http://127.0.0.1:PORT
    api = Api(service, origin=mine)
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    path = f"/api/v1/sessions/{sid}/images/{iid}"
    assert api.get(path, token=token).status == 200
    for other in (own(service, "localhost"), own(service, port=service.ports[0]), OLD_ORIGIN):
        answer = Api(service, origin=other).get(path, token=token)
        assert answer.status == 403, (other, answer.status, answer.body[:200])
        assert answer.error["code"] == "forbidden"
        assert not answer.body.startswith(b"\x89PNG")
        answer = Api(service, origin=other).request("DELETE", f"/api/v1/sessions/{sid}",
                                                    token=token)
        assert answer.status == 403, (other, answer.status)
        assert event_socket(service, sid, token, headers={"Origin": other}) == 403
    assert event_socket(service, sid, token, headers={"Origin": mine}) == 101
    # No Origin at all (scripts, <img> loads) with the token is served.
    answer = Api(service).get(path, token=token)
    assert answer.status == 200 and answer.body == png()


def test_a_session_opened_over_the_broker_cannot_be_used_over_http(service):
    with service.client() as client:
        by_client = client.call("buffer", "open_session", {}, timeout=15)["session"]
    done = service.cli("call", "buffer", "open_session", "{}", check=True)
    by_cli = json.loads(done.stdout)["session"]
    api = Api(service)
    try:
        for sid in (by_client, by_cli):
            for token in (secrets.token_urlsafe(32), "x"):
                for path in (f"/api/v1/sessions/{sid}", f"/api/v1/sessions/{sid}/images"):
                    answer = api.get(path, token=token)
                    assert answer.status == 403, (sid, path, answer.status, answer.body[:200])
                    assert answer.error["code"] == "forbidden"
                answer = api.request("DELETE", f"/api/v1/sessions/{sid}", token=token)
                assert answer.status == 403
            assert api.get(f"/api/v1/sessions/{sid}").status == 401
            assert event_socket(service, sid, secrets.token_urlsafe(32)) == 403
        assert {by_client, by_cli} <= buffer_sessions(service)  # not closed by the DELETEs
    finally:
        with service.client() as client:
            for sid in (by_client, by_cli):
                client.call("buffer", "close_session", {"session": sid}, timeout=15)


# --- limits


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
    body = json.dumps(big).encode()
    sock = connect(limited)
    try:
        sock.sendall(f"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:{limited.ports[1]}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     .encode())
        for at in range(0, len(body), 500):
            part = body[at:at + 500]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        status, _, reply = read_answer(sock)
    finally:
        sock.close()
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
    noise = secrets.token_bytes(1024 * 1024 + 1)
    sock = connect(limited)
    try:
        sock.sendall(import_headers(limited, sid, token, 0).replace(
            b"Content-Length: 0", b"Transfer-Encoding: chunked"))
        for at in range(0, len(noise), 64 * 1024):
            part = noise[at:at + 64 * 1024]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        status, _, body = read_answer(sock)
    finally:
        sock.close()
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


# --- headers and listening


def test_answers_carry_nosniff(service):
    api = Api(service)
    sid, token = api.open_session()
    iid = import_png(api, sid, token)
    answers = [api.get("/api/v1/status"), api.get("/"), api.get("/scanbridge.js"),
               api.get("/api/v1/openapi.json"), api.get("/api/v1/nothing-here"),
               api.get(f"/api/v1/sessions/{sid}"), api.get(f"/api/v1/sessions/{sid}/images"),
               api.get(f"/api/v1/sessions/{sid}/images/{iid}", token=token),
               api.get(f"/api/v1/sessions/{sid}/images/{iid}/thumbnail", token=token),
               api.get("/", headers={"Host": "evil.example"}),
               Api(service, origin=EVIL).get("/api/v1/status"),
               preflight(service, OLD_ORIGIN)]
    statuses = [a.status for a in answers]
    assert statuses == [200, 200, 200, 200, 404, 401, 401, 200, 200, 403, 403, 204]
    for answer in answers:
        assert answer.headers["X-Content-Type-Options"] == "nosniff", answer.status


def test_html_pages_carry_a_content_security_policy(service):
    for path in ("/", "/welcome.htm"):
        answer = Api(service).get(path)
        assert answer.status == 200, path
        assert answer.headers["Content-Type"].startswith("text/html")
        policy = answer.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy, policy
        assert "frame-ancestors 'none'" in policy, policy
        assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy, policy


def test_the_gateway_listens_on_loopback_only(service):
    with service.client() as client:
        urls = client.call("gateway", "listening", timeout=15)
    assert urls, urls
    for url in urls:
        assert re.fullmatch(r"https?://(127\.0\.0\.1|\[::1\]):\d+", url), url
    assert {int(url.rsplit(":", 1)[1]) for url in urls if url.startswith("http:")} == \
        set(service.ports)
    assert {int(url.rsplit(":", 1)[1]) for url in urls if url.startswith("https:")} == \
        set(service.https_ports)
    # What the kernel says: every listening socket of these ports is on a loopback address.
    loopback = {"0100007F", "00000000000000000000000001000000"}
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            next(rows)
            for row in rows:
                fields = row.split()
                address, port = fields[1].split(":")
                if fields[3] == "0A" and int(port, 16) in service.ports + service.https_ports:
                    found.append(address)
    assert found and set(found) <= loopback, found


@pytest.mark.parametrize("request_head", [
    b"DELETE /api/v1/sessions/x/images HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    b"Content-Length: r_7.*]\r\n\r\n",
    b"GET /api/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header Line\r\n\r\n",
    b"GET /api/v1/status HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
    b"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
    b"\r\nzz\r\n",
], ids=["content-length", "header-line", "version", "chunk-size"])
def test_requests_the_http_parser_refuses_get_a_json_400_and_the_connection_closes(
        service, request_head):
    sock = connect(service)
    try:
        sock.sendall(request_head)
        status, headers, body = read_answer(sock)
        assert status == 400, body
        assert headers["content-type"].startswith("application/json"), headers
        error = json.loads(body)["error"]
        assert error["code"] == "bad_request" and error["message"].startswith(
            "the request is malformed"), error
        assert closed_within(sock, WAIT) is not None, "the connection stayed open"
    finally:
        sock.close()
    assert service.get("/api/v1/status")[0] == 200  # the gateway serves on
