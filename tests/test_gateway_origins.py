"""The gateway's defences by host and origin, against the real service over HTTP.

The ``Host`` check (DNS rebinding: only loopback names are answered), the ``Origin``
allowlist (403 naming ``scanbridge allow ORIGIN``, the refusal logged; the service's own
pages pass; ``scanbridge allow`` and edits of the ini files take effect without a restart;
an invalid edit keeps the previous list), CORS and Private Network Access answers (only for
allowed origins), the ``nosniff`` and CSP headers, and loopback-only listening.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.support.gateway_security import (CORS_EXPOSED, EVIL, OLD_ORIGIN, WAIT, buffer_sessions,
                                            closed_within, connect, cors_names, event_socket,
                                            import_png, own)
from tests.support.gateway_security import service  # fixtures
from tests.support.service import Service
from tests.support.stack import poll_for
from tests.support.web import Answer, Api, read_answer

pytestmark = pytest.mark.timeout(120)


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
