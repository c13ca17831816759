"""Uploads from a real browser (Debian's Chromium through Playwright): the demo's "Upload to
URL" panel and ``session.upload()`` of scanbridge.js, against the real service and a real
receiver (a small aiohttp app, tests/support/upload_browser.py, on 127.0.0.1, another
origin than the page).

The receiver's ``/in/`` prefix is allowed in user_config.ini ``[access] upload_targets``
(written before the service starts); ``/out/`` is not. The last segment of a path picks
the receiver's answer: ``reject`` 400 with a text, ``busy`` 503 with ``Retry-After: 30``,
anything else 200 with a receipt naming the file, its size and the ``customer`` field.

The demo's upload panel (element ids, in the style of the demo's others):

=========================  ==========================================================
``#upload-form``           the panel (a form; submit starts the upload)
``#upload-url``            the receiver's URL
``#upload-format``         pdf, tiff, jpeg, png or zip
``#upload-fields``         form fields, one ``name=value`` per line (# comments)
``#upload``                the submit button (disabled without pages or while uploading)
``#upload-cancel``         cancels the running upload
``#upload-progress``       <progress> 0-100 (bytes sent of the request body)
``#upload-progress-text``  what is happening ("Sent 5.1 KB of 5.1 KB", "Queued", ...)
``#upload-result``         shown at the end; ``data-state`` done or error (and
                           ``data-code`` the error's code)
``#upload-status``         the receiver's HTTP status, or the error code
``#upload-message``        a sentence: the status, or the error's message
``#upload-body``           the receiver's answer (also of a refusal)
``body[data-uploading]``   "1" while an upload runs
=========================  ==========================================================
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.support.browser import Watched, session_of
from tests.support.upload_browser import (RECEIPT, WAIT_MS, demo_with_a_page, file_part, pages_of,
                                          wait_result)
from tests.support.upload_browser import context, receiver, service  # fixtures
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


# --- the demo's panel


def test_the_demo_uploads_its_page_as_a_pdf_and_shows_the_receivers_answer(
        context, service, receiver):
    watched = demo_with_a_page(context, service)
    page = watched.page
    path = f"/in/demo-{uuid.uuid4().hex[:8]}"
    page.fill("#upload-url", receiver.url(path))
    page.select_option("#upload-format", "pdf")
    page.fill("#upload-fields", "customer=42\n\n# a comment line\nnote = signed copy\n")
    page.click("#upload")
    wait_result(page, "done")

    # The receiver got one multipart POST: the PDF of the one page, the two fields, and
    # the job's Idempotency-Key.
    [request] = receiver.at(path)
    assert request["method"] == "POST"
    assert request["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    part = file_part(request)
    assert part["name"] == "file" and part["type"] == "application/pdf", part
    assert re.fullmatch(r"scan-\d{4}-\d\d-\d\d-\d{4}\.pdf", part["filename"]), part["filename"]
    assert part["data"].startswith(b"%PDF-")
    [rect] = pages_of(part["data"])
    assert rect.width > rect.height, rect  # the 90x60 page, landscape
    fields = {p["name"]: p["data"].decode() for p in request["parts"] if not p["filename"]}
    assert fields == {"customer": "42", "note": "signed copy"}
    key = request["headers"].get("Idempotency-Key")
    assert key

    # The panel: the bar at 100, the receiver's status and its very body.
    answer = RECEIPT.fullmatch(page.inner_text("#upload-body"))
    assert answer, page.inner_text("#upload-body")
    assert answer.groups() == (part["filename"], str(len(part["data"])), "42")
    assert page.inner_text("#upload-status") == "200"
    assert "200" in page.inner_text("#upload-message")
    assert page.eval_on_selector("#upload-progress", "p => p.value") == 100
    assert page.get_attribute("#status", "class") == "ok", page.inner_text("#status")
    assert not page.is_disabled("#upload") and page.is_disabled("#upload-cancel")
    # The bar got to 100 % from the upload's own progress (bytes sent of the body's total)
    # before the job's end was shown.
    trail = page.evaluate("window.__upload")
    sent = [t for t in trail if re.fullmatch(r"Sent (\S+ \S+) of \1", t["text"])]
    assert sent and sent[0]["value"] == 100, trail
    assert trail.index(sent[0]) < len(trail) - 1, trail  # then "Sent scan-….pdf in 1 …"

    # The service's record of the job says the same.
    sid, token = session_of(page)
    jobs = Api(service).get(f"/api/v1/sessions/{sid}/uploads", token=token).json()
    assert [(j["state"], j["result"]["status"], j["idempotency_key"]) for j in jobs] == \
        [("done", 200, key)], jobs
    assert jobs[0]["result"]["body"] == page.inner_text("#upload-body")
    assert watched.errors == []


def test_the_demo_shows_why_an_upload_was_refused(context, service, receiver):
    watched = demo_with_a_page(context, service)
    page = watched.page
    posts = []
    page.on("request", lambda r: posts.append(r.url)
            if r.method == "POST" and r.url.endswith("/uploads") else None)

    # Mistakes in the form are shown before anything is sent.
    page.click("#upload")
    wait_result(page, "error")
    assert page.inner_text("#upload-status") == "invalid_argument"
    assert "URL" in page.inner_text("#upload-message")
    page.fill("#upload-url", receiver.url("/in/never"))
    page.fill("#upload-fields", "customer=42\njust words\n")
    page.click("#upload")
    page.wait_for_function("() => document.getElementById('upload-message').textContent"
                           ".includes('line 2')", timeout=WAIT_MS)
    assert page.inner_text("#upload-status") == "invalid_argument"
    assert posts == [] and receiver.at("/in/never") == []
    page.fill("#upload-fields", "")

    # A target that is neither the page's origin nor allowed: the service answers 403 and
    # the panel says where to allow it; no request reaches the receiver.
    denied = f"/out/{uuid.uuid4().hex[:8]}"
    page.fill("#upload-url", receiver.url(denied))
    with page.expect_response(lambda r: r.request.method == "POST"
                              and r.url.endswith("/uploads")) as refused:
        page.click("#upload")
    assert refused.value.status == 403
    wait_result(page, "error")
    assert page.inner_text("#upload-status") == "upload_target_not_allowed"
    assert page.get_attribute("#upload-result", "data-code") == "upload_target_not_allowed"
    message = page.inner_text("#upload-message")
    assert f"http://127.0.0.1:{receiver.port}" in message, message
    assert "user_config.ini [access] upload_targets" in message, message
    assert page.get_attribute("#status", "data-code") == "upload_target_not_allowed"
    assert page.get_attribute("#status", "class") == "error"
    assert page.inner_text("#upload-progress-text") == "Not sent."
    assert not page.is_disabled("#upload")
    assert receiver.at(denied) == []

    # A receiver that refuses (400): not retried; its answer is shown with the error.
    rejected = f"/in/{uuid.uuid4().hex[:8]}/reject"
    page.fill("#upload-url", receiver.url(rejected))
    page.select_option("#upload-format", "png")
    page.click("#upload")
    wait_result(page, "error")
    assert page.inner_text("#upload-status") == "upload_rejected"
    assert "400" in page.inner_text("#upload-message")
    assert page.inner_text("#upload-body") == "refused: the customer field is missing"
    assert page.inner_text("#upload-progress-text") == "Failed after 1 attempt(s)."
    [request] = receiver.at(rejected)
    assert file_part(request)["type"] == "image/png"

    # A busy receiver (503, Retry-After: 30): the panel says when it tries again, and
    # Cancel ends the job while it waits; the receiver saw one attempt.
    busy = f"/in/{uuid.uuid4().hex[:8]}/busy"
    page.fill("#upload-url", receiver.url(busy))
    page.click("#upload")
    page.wait_for_function("() => /^Attempt 1 failed \\(the receiver answered 503\\); "
                           "trying again in (29|30)\\.\\d s/.test(document.getElementById("
                           "'upload-progress-text').textContent)", timeout=WAIT_MS)
    assert page.get_attribute("body", "data-uploading") == "1"
    assert page.is_disabled("#upload")
    page.click("#upload-cancel")
    wait_result(page, "error")
    assert page.inner_text("#upload-status") == "cancelled"
    assert page.inner_text("#upload-progress-text") == "Cancelled."
    assert len(receiver.at(busy)) == 1
    sid, token = session_of(page)
    jobs = Api(service).get(f"/api/v1/sessions/{sid}/uploads", token=token).json()
    assert [(j["url"].removeprefix(receiver.url("")), j["state"]) for j in jobs] == \
        [(rejected, "failed"), (busy, "cancelled")], jobs
    # The browser logs the 403 answer itself; nothing else went wrong.
    assert [e for e in watched.errors if "403" not in e] == [], watched.errors


# --- scanbridge.js from a page script

SCRIPT = """
async ({ok, reject, busy, denied}) => {
  const {connect, ScanbridgeError, UploadJob} = await import("/scanbridge.js");
  const wait = async (check, what) => {
    for (const end = Date.now() + 20000; Date.now() < end;) {
      if (check()) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const caught = async (job) => {
    try {
      await job.done;
      return {resolved: true};
    } catch (e) {
      return {isError: e instanceof ScanbridgeError, code: e.code, status: e.status,
              message: e.message, details: e.details, state: job.state,
              same: job.error === e};
    }
  };
  const page = async (session) => {
    const canvas = new OffscreenCanvas(120, 80);
    const paint = canvas.getContext("2d");
    paint.fillStyle = "#c00";
    paint.fillRect(0, 0, 120, 80);
    const [image] = await session.import(await canvas.convertToBlob({type: "image/png"}));
    return image;
  };
  const out = {};
  const session = await connect({url: location.origin, reuse: false});
  const image = await page(session);
  await wait(() => session.eventsConnected, "the event socket");
  const topics = [];
  session.on("upload.*", (event) => topics.push(event.topic));

  // A PDF to an allowed receiver, learnt from events.
  const calls = [];
  const job = session.upload({url: ok, images: [image.id], format: "pdf",
    fields: {customer: "42"}, headers: {"X-Customer": "42"}, filename: "contract",
    fieldName: "document", onProgress: (p) => calls.push({...p, state: job.state})});
  out.at_once = {instance: job instanceof UploadJob, state: job.state, id: job.id};
  const record = await job.done;
  out.ok = {record, state: job.state, result: job.result, progress: job.progress, calls,
            id: job.id, error: job.error};
  out.topics = topics;

  // Refused by the receiver; and a target that is not allowed.
  const rejected = session.upload({url: reject, format: "png"});
  out.rejected = await caught(rejected);
  const refused = session.upload({url: denied});
  out.denied = await caught(refused);
  out.denied.started = await refused.started.then(() => "resolved", (e) => e.code);

  // A 503 puts the job back in the queue for 30 s (Retry-After): cancel it there.
  const retries = [];
  const waiting = session.upload({url: busy, onRetry: (r) => retries.push({...r,
    state: waiting.state})});
  await wait(() => retries.length > 0, "onRetry of the busy upload");
  out.retry = {calls: retries, attempts: waiting.record.attempts,
               next: waiting.record.next_attempt - Date.now() / 1000};
  const cancelled = await waiting.cancel();
  out.cancelled = {...await caught(waiting), record: cancelled.state};
  out.list = (await session.uploads()).map((u) => ({job: u.job, state: u.state,
    status: u.result?.status ?? null, code: u.error?.code ?? null}));
  out.ids = {ok: job.id, rejected: rejected.id, denied: refused.id, busy: waiting.id};

  // Without the event socket the job polls, and still ends.
  const quiet = await connect({url: location.origin, reuse: false, events: false,
                               storageKey: "quiet"});
  await page(quiet);
  const polled = [];
  const polling = quiet.upload({url: ok, format: "jpeg", onProgress: (p) => polled.push(p)});
  const end = await polling.done;
  out.polled = {state: end.state, status: end.result.status, calls: polled,
                live: quiet.eventsConnected};
  const quietRetries = [];
  const stalled = quiet.upload({url: busy, format: "png", onRetry: (r) => quietRetries.push(r)});
  await wait(() => quietRetries.length > 0, "onRetry from a poll");
  out.polledRetry = {calls: quietRetries, cancel: (await stalled.cancel()).state,
                     ...await caught(stalled)};
  await quiet.close();
  await session.close();
  return out;
}
"""


def test_session_upload_from_a_page_script(context, service, receiver):
    watched = Watched(context)
    page = watched.page
    page.goto(service.url("/"))
    run = uuid.uuid4().hex[:8]
    paths = {"ok": f"/in/{run}/ok", "reject": f"/in/{run}/reject",
             "busy": f"/in/{run}/busy", "denied": f"/out/{run}/ok"}
    out = page.evaluate(SCRIPT, {name: receiver.url(path) for name, path in paths.items()})

    # At once: an UploadJob, starting, no id yet.
    assert out["at_once"] == {"instance": True, "state": "starting", "id": None}

    # Done: the receiver's answer, progress called from events, then 100 %.
    ok = out["ok"]
    assert ok["state"] == "done" and ok["error"] is None
    assert ok["record"]["state"] == "done" and ok["record"]["job"] == ok["id"]
    assert ok["result"]["status"] == 200 and ok["record"]["result"] == ok["result"]
    assert ok["calls"], "onProgress was never called"
    assert ok["calls"][-1]["percent"] == 100 and ok["progress"]["percent"] == 100
    total = ok["calls"][-1]["total"]
    assert all(c["total"] == total and 0 <= c["sent"] <= total for c in ok["calls"]), ok["calls"]
    assert any(c["attempt"] == 1 and c["state"] == "running" for c in ok["calls"]), ok["calls"]
    # The file's last chunk is reported before the multipart's closing boundary is sent: a
    # part-way call can only come from an upload.progress event.
    assert any(0 < c["percent"] < 100 for c in ok["calls"]), ok["calls"]
    assert {"upload.queued", "upload.progress", "upload.done"} <= set(out["topics"])
    [request] = [r for r in receiver.at(paths["ok"])
                 if r["headers"].get("Idempotency-Key") == ok["record"]["idempotency_key"]]
    assert request["headers"]["X-Customer"] == "42"
    assert total == int(request["headers"]["Content-Length"])
    part = file_part(request)
    assert (part["name"], part["filename"], part["type"]) == \
        ("document", "contract.pdf", "application/pdf")
    assert len(pages_of(part["data"])) == 1
    fields = {p["name"]: p["data"].decode() for p in request["parts"] if not p["filename"]}
    assert fields == {"customer": "42"}
    assert ok["result"]["body"] == \
        f"receipt {receiver.requests.index(request) + 1}: stored contract.pdf " \
        f"({len(part['data'])} bytes) for customer 42"

    # Refused by the receiver: upload_rejected, with its answer; sent once only.
    rejected = out["rejected"]
    assert rejected["isError"] and rejected["same"], rejected
    assert (rejected["code"], rejected["state"], rejected["status"]) == \
        ("upload_rejected", "failed", 0), rejected
    assert rejected["details"]["result"] == \
        {"status": 400, "body": "refused: the customer field is missing"}, rejected
    assert rejected["details"]["status"] == 400 and rejected["details"]["attempts"] == 1
    assert len(receiver.at(paths["reject"])) == 1

    # Not allowed: the POST's 403, the message says where to allow it; nothing was sent.
    denied = out["denied"]
    assert (denied["code"], denied["status"], denied["state"], denied["started"]) == \
        ("upload_target_not_allowed", 403, "failed", "upload_target_not_allowed"), denied
    assert "user_config.ini [access] upload_targets" in denied["message"], denied
    assert out["ids"]["denied"] is None
    assert receiver.at(paths["denied"]) == []

    # The busy one: a retry announced once (the receiver's 503, next attempt in ~30 s),
    # then cancelled while it waited; the receiver saw it once.
    [retry] = out["retry"]["calls"]
    assert (retry["attempt"], retry["state"], out["retry"]["attempts"]) == (1, "queued", 1), out
    assert retry["error"] == {"code": "upload_failed", "message": "the receiver answered 503",
                              "status": 503}, retry
    assert 29 <= retry["delay"] <= 30.5, retry
    assert 20 < out["retry"]["next"] <= 31, out["retry"]
    cancelled = out["cancelled"]
    assert (cancelled["code"], cancelled["state"], cancelled["record"]) == \
        ("cancelled", "cancelled", "cancelled"), cancelled

    # uploads(): the three jobs the service took, oldest first, as they ended.
    ids = out["ids"]
    assert out["list"] == [
        {"job": ids["ok"], "state": "done", "status": 200, "code": None},
        {"job": ids["rejected"], "state": "failed", "status": 400, "code": "upload_rejected"},
        {"job": ids["busy"], "state": "cancelled", "status": None, "code": "cancelled"},
    ], out["list"]

    # Polling without events: done, and onProgress got the end at least.
    polled = out["polled"]
    assert polled["live"] is False
    assert (polled["state"], polled["status"]) == ("done", 200), polled
    assert polled["calls"] and polled["calls"][-1]["percent"] == 100, polled
    jpegs = [file_part(r) for r in receiver.at(paths["ok"]) if file_part(r)["type"] ==
             "image/jpeg"]
    assert len(jpegs) == 1 and jpegs[0]["data"].startswith(b"\xff\xd8"), jpegs
    # ... and learns of a retry from a poll too; cancelled there.
    retried = out["polledRetry"]
    assert [c["attempt"] for c in retried["calls"]] == [1], retried
    assert retried["calls"][0]["error"]["status"] == 503 and \
        0 < retried["calls"][0]["delay"] <= 30.5, retried
    assert (retried["cancel"], retried["code"], retried["state"]) == \
        ("cancelled", "cancelled", "cancelled"), retried
    assert len(receiver.at(paths["busy"])) == 2  # one attempt of each busy job
    assert [e for e in watched.errors if "403" not in e] == [], watched.errors
