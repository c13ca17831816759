"""The uploader is not an open proxy: targets neither on the session's origin nor in
``upload_targets`` are refused with 403 before any request leaves, through the gateway and
the broker; the session's own origin needs no allowlist; edits of user_config.ini apply
without a restart; no path (dot segments in any encoding, encoded separators, ``;``
parameters) leaves an allowed prefix, and an ``upload_targets`` entry that escapes its own
path is refused. Bad headers, fields and URLs are 400, and what HTTP cannot carry never
wedges a job.
"""

from __future__ import annotations

import time

import pytest

from broker import config as configlib
from broker.protocol import Error
from tests.support.receiver import redirect
from tests.support.stack import poll_for
from tests.support.uploader import (APP, FINAL, MAX_ATTEMPTS, V1, Session, assert_error,
                                    assert_nothing_arrives, fresh, noise_jpeg, upload_targets)
from tests.support.uploader import other, rx, spare, svc  # fixtures
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


def test_disallowed_target_is_refused_before_anything_leaves(svc, rx, other):
    folders = set((svc.home / "upload").glob("*/"))
    session = Session(svc, origin=APP)  # a page of an allowed origin
    session.add(noise_jpeg(80, 60, 80))
    refused = session.post(url=other.url("/in"), format="pdf")
    error = assert_error(refused, 403, "upload_target_not_allowed")
    assert other.origin in error["message"]
    # The page cannot claim another origin for its session.
    smuggled = session.post(url=other.url("/in"), origin=other.origin)
    assert smuggled.status == 400, smuggled.body
    listed = session.api.get(session.base, token=session.token)
    assert listed.status == 200 and listed.json() == []
    # Through the broker, with or without an origin.
    with svc.client() as client:
        for origin in (None, APP, "http://127.0.0.1:1"):
            with pytest.raises(Error) as caught:
                client.call("uploader", "submit", {"session": session.sid,
                                                   "url": other.url("/in"), "origin": origin})
            assert caught.value.code == "upload_target_not_allowed"
    assert_nothing_arrives(other)
    assert set((svc.home / "upload").glob("*/")) <= folders, "a refused job left files"


def test_the_sessions_own_origin_needs_no_allowlist(svc, other, spare):
    before = len(spare.requests)
    svc.cli("allow", spare.origin, check=True)  # the receiver's origin is the page's origin

    def opened():
        reply = Api(svc, origin=spare.origin).post(f"{V1}/sessions", json={})
        return reply.status == 201
    poll_for(opened, 10, f"the gateway to allow {spare.origin}")
    session = Session(svc, origin=spare.origin)
    session.add(noise_jpeg(80, 60, 81))
    path = fresh("own")
    job = session.wait(session.upload(url=spare.url(path))["job"])
    assert job["state"] == "done", job
    (request,) = spare.requests_to(path)
    assert request.stored and request.key == job["idempotency_key"]
    # Only its own origin: another one is still refused.
    assert_error(session.post(url=other.url("/x")), 403, "upload_target_not_allowed")
    # And a page of another origin may not upload to it.
    stranger = Session(svc, origin=APP)
    stranger.add(noise_jpeg(80, 60, 82))
    assert_error(stranger.post(url=spare.url(fresh("own"))), 403, "upload_target_not_allowed")
    assert len(spare.requests) == before + 1
    assert_nothing_arrives(other)


def test_upload_targets_edits_apply_without_restart(svc, spare):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 83))
    path = fresh("late")
    before = len(spare.requests)
    assert_error(session.post(url=spare.url(path)), 403, "upload_target_not_allowed")
    pid = svc.pid("uploader")
    with upload_targets(svc, spare.url("/t0/")):  # the origin, but not this path
        assert_error(session.post(url=spare.url(path)), 403, "upload_target_not_allowed")
    with upload_targets(svc, spare.url("/")):
        job = session.wait(session.upload(url=spare.url(path))["job"])
        assert job["state"] == "done", job
    assert_error(session.post(url=spare.url(path)), 403, "upload_target_not_allowed")
    assert svc.pid("uploader") == pid
    assert [r.path for r in spare.requests[before:]] == [path]


# Paths under /ok/ as written that a receiver could resolve out of it: dot segments in
# every encoding (also double, overlong UTF-8, IIS's %u, full-width dots and after Tomcat's
# ;parameters), encoded separators and backslashes.
ESCAPES = ["/ok/../private", "/ok/./../private", "/ok/%2e%2e/private", "/ok/%2E%2E/private",
           "/ok/%2E./private", "/ok/.%2e/private", "/ok/..;/private", "/ok/..;x=1/private",
           "/ok/.;/../private", "/ok/..%5cprivate", "/ok/..%5Cprivate", "/ok/a%2f..%2f..%2fprivate",
           "/ok/%2e%2e%2fprivate", "/ok/..\\private", "/ok/%252e%252e/private",
           "/ok/%25252e%25252e/private", "/ok/%255cprivate/x", "/ok/%c0%ae%c0%ae/private",
           "/ok/%u002e%u002e/private", "/ok/%EF%BC%8E%EF%BC%8E/private"]


def test_a_target_path_prefix_cannot_be_escaped(svc, spare):
    """upload_targets = ORIGIN/ok/: no path may lead a receiver out of /ok/ (receivers
    resolve dot segments: /ok/../private is /private; Tomcat reads ..;/ as ../, IIS
    \\ and %5c as /), not even a redirect from inside it."""
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 84))
    before = len(spare.requests)
    bounce = "/ok/bounce"
    spare.on(bounce, then=redirect("..;/private"))
    with upload_targets(svc, spare.url("/ok/")):
        for fine in ("/ok/doc", "/ok/a/b.pdf", "/ok/v;rev=2/c.pdf", "/ok/...x/100%25.pdf"):
            job = session.wait(session.upload(url=spare.url(fine))["job"])
            assert job["state"] == "done", job
        assert_error(session.post(url=spare.url("/okay")), 403, "upload_target_not_allowed")
        for escape in ESCAPES:
            error = assert_error(session.post(url=spare.url(escape)), 403,
                                 "upload_target_not_allowed")
            assert "outside the allowed folder" in error["message"], (escape, error)
        job = session.wait(session.upload(url=spare.url(bounce))["job"])
        assert job["state"] == "failed", job
        assert job["error"]["code"] == "upload_redirect_refused", job
    # The page's own origin allows every path there, but none of these either.
    own = Session(svc, origin=APP)
    own.add(noise_jpeg(80, 60, 85))
    for escape in ("/ok/..;/private", "/ok/..%5cprivate"):
        assert_error(own.post(url=APP + escape), 403, "upload_target_not_allowed")
    time.sleep(0.5)
    assert [r.path for r in spare.requests[before:]] == [
        "/ok/doc", "/ok/a/b.pdf", "/ok/v;rev=2/c.pdf", "/ok/...x/100%.pdf", bounce]


@pytest.mark.parametrize("entry", ["/ok/../", "/ok/..;/", "/ok/%2e%2e/", "/ok/a%2fb/",
                                   "/ok/..%5c"])
def test_an_upload_targets_entry_that_escapes_its_own_path_is_refused(svc, spare, entry):
    """Such an entry in user_config.ini is a configuration error (the previous list stays
    in force, and start-up would fail on it)."""
    with pytest.raises(ValueError, match="the path has"):
        configlib.parse_upload_target(spare.url(entry))
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 86))
    with upload_targets(svc, spare.url(entry)):
        reply = session.post(url=spare.url("/private"))
        assert_error(reply, 403, "upload_target_not_allowed")
    assert not spare.requests_to("/private")


BAD_REQUESTS = [
    {"headers": {"Content-Length": "1"}},
    {"headers": {"content-type": "text/plain"}},
    {"headers": {"Transfer-Encoding": "chunked"}},
    {"headers": {"Host": "evil.example"}},
    {"headers": {"Idempotency-Key": "mine"}},
    {"headers": {"X-Split": "a\r\nX-Injected: 1"}},
    {"headers": {"X-Split": "a\nb"}},
    {"headers": {"X-Bad\r\nName": "a"}},
    {"headers": {"Bad Name": "a"}},
    {"headers": {"X-Number": 5}},
    {"headers": ["X-A", "b"]},
    {"fields": {"n": 1}},
    {"fields": {'a"b': "x"}},
    {"fields": {"a\r\nContent-Type: x": "y"}},
    {"fields": "a=b"},
    {"fields": {f"f{n}": "x" for n in range(101)}},
    {"fields": {"big": "x" * (64 * 1024 + 1)}},
    {"filename": "../../etc/passwd"},
    {"filename": 'a"b.pdf'},
    {"filename": "a\r\nb.pdf"},
    {"field_name": 'fi"le'},
    {"auth": {"user": "a:b", "password": "x"}},
    {"auth": "user:password"},
    {"method": "GET"},
    {"format": "gif"},
    {"page_format": "tiff", "format": "zip"},
]


def test_bad_headers_and_fields_are_400(svc, rx):
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 85))
    path = fresh("bad")
    for extra in BAD_REQUESTS:
        reply = session.post(url=rx.url(path), **extra)
        assert reply.status == 400, (extra, reply.status, reply.body[:300])
        assert reply.json()["error"]["code"] == "invalid_argument", (extra, reply.body)
    for url in ("ftp://127.0.0.1/x", rx.url(path).replace("http://", "http://u:p@"),
                rx.url(path) + "#frag", "not a url", rx.url(path) + "\r\nX: y"):
        reply = session.post(url=url)
        assert reply.status == 400, (url, reply.status, reply.body[:300])
    time.sleep(0.3)
    assert rx.requests_to(path) == []
    assert session.api.get(session.base, token=session.token).json() == []


@pytest.mark.parametrize("extra", [{"headers": {"X-Currency": "€"}}, {"path": "/é"},
                                   {"path": "/q?name=é"}],
                         ids=["header-value", "url-path", "url-query"])
def test_what_http_cannot_carry_does_not_wedge_a_job(svc, rx, extra):
    """A header value beyond Latin-1 or a URL with raw non-ASCII: refused at once (400),
    or sent (the URL percent-encoded) -- never a job that crashes on every attempt."""
    session = Session(svc)
    session.add(noise_jpeg(80, 60, 86))
    path = fresh("enc")
    url = rx.url(path + extra.get("path", ""))
    reply = session.post(url=url, headers=extra.get("headers", {}))
    if reply.status != 202:
        assert_error(reply, 400, "invalid_argument")
        return
    job = reply.json()
    try:
        final = poll_for(lambda: (state := session.job(job["job"]))["state"] in FINAL and state,
                         5, "the job to end")
    except AssertionError:
        state = session.job(job["job"])
        session.cancel(job["job"])
        raise AssertionError(f"accepted, then stuck: {state['state']} after "
                             f"{state['attempts']} attempts (max {MAX_ATTEMPTS}), error "
                             f"{state.get('error')}") from None
    assert final["state"] == "done", final
    (request,) = [r for r in rx.requests if r.key == job["idempotency_key"]]
    if "headers" in extra:
        assert request.headers["X-Currency"] == "€"
    else:
        assert request.path.startswith(path)
