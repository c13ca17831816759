"""The gateway's session tokens, against the real service over HTTP and WebSocket: 401
without, 403 with a wrong one or another session's, at least 128 random bits, bound to
the origin that opened the session, sessions opened over the broker unusable over HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import secrets

import pytest
from PIL import Image

from tests.support.gateway_security import (OLD_ORIGIN, buffer_sessions, event_socket, import_png,
                                            own)
from tests.support.gateway_security import service  # fixtures
from tests.support.images import png
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


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
