"""OCR jobs and their refusals, against the real service: languages and refused ones;
blank, tiny, non-image and too-large pages (a second service with ``[limits]
max_image_megapixels = 1``); refused job bodies, the token and another session's job;
progress, done and cancelled events on the session WebSocket, the job list and cancel;
and a worker killed mid-page, whose page the other worker reads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import xml.etree.ElementTree as ET

import pytest
from PIL import Image

from broker.protocol import Error
from tests.support.events import ws_events
from tests.support.ocr import (ENGLISH, ENGLISH_SERIF, GERMAN, Session, TURNED, V1, WAIT, WORKERS,
                               a4_page, assert_error, assert_read, encoded, of_job, render, until)
from tests.support.ocr import pages, service, session  # fixtures
from tests.support.service import Service
from tests.support.stack import poll_for, wait_service
from tests.support.web import Api

pytestmark = pytest.mark.timeout(120)


# --- languages


def test_languages_are_listed_and_an_unknown_one_is_refused_at_post(session, api):
    answer = api.get(f"{V1}/ocr/languages", token=session.token)
    assert answer.status == 200, answer.body
    listed = answer.json()
    assert {"eng", "deu", "fra"} <= set(listed["installed"]), listed
    assert listed["default"] == "eng", listed
    assert listed["tesseract"].split(".")[0].isdigit(), listed

    session.upload(encoded(render(GERMAN[:2]).image, "PNG"))
    error = assert_error(session.request("POST", "/ocr", json={"lang": "xx"}), 422,
                         "invalid_option")
    assert "xx" in error["message"], error
    assert_error(session.request("POST", "/ocr", json={"lang": ["deu", "xx"]}), 422,
                 "invalid_option")
    assert_error(session.request("POST", "/ocr", json={"lang": 7}), 400, "invalid_argument")
    assert session.request("GET", "/ocr").json() == []  # no job was made

    result = session.run(lang=["deu", "eng"])
    assert result["lang"] == "deu+eng", result
    assert_read("\n".join(GERMAN[:2]), result["text"])
    assert session.run(lang="fra+eng")["lang"] == "fra+eng"


# --- bad input


def assert_empty(read: dict) -> None:
    assert read["text"].strip() == "" and read["words"] == [], read
    assert read["rotation"] == 0, read


def test_a_blank_page_gives_empty_text_not_an_error(session, client):
    blank = encoded(Image.new("L", (1240, 600), 255), "PNG")
    assert_empty(client.call("ocr", "page", {"hocr": True}, blobs=[blank], timeout=WAIT))
    session.upload(blank)
    result = session.run(output=["words", "hocr"])
    (read,) = result["pages"]
    assert_empty(read)
    assert read["confidence"] is None, read
    root = ET.fromstring(session.file(result, "hocr").body)
    assert [e.get("id") for e in root.iter() if e.get("class") == "ocr_page"] == ["page_1"]
    assert not [e for e in root.iter() if e.get("class") == "ocrx_word"]


def test_a_tiny_image_gives_empty_text_not_an_error(session, pages):
    tiny = Image.new("RGB", (10, 10), "white")
    tiny.putpixel((5, 5), (0, 0, 0))
    session.upload(encoded(pages["english"].image, "PNG"))
    small = session.upload(encoded(tiny, "JPEG"), "image/jpeg")
    result = session.run(output=["words", "hocr"])
    read = result["pages"][1]
    assert read["image"] == small and (read["width"], read["height"]) == (10, 10), read
    assert_empty(read)
    assert read["confidence"] is None, read
    assert_read(pages["english"].text, result["pages"][0]["text"])
    root = ET.fromstring(session.file(result, "hocr").body)
    ocr_pages = [e for e in root.iter() if e.get("class") == "ocr_page"]
    assert [e.get("id") for e in ocr_pages] == ["page_1", "page_2"]
    assert ocr_pages[1].get("title").startswith("bbox 0 0 10 10"), ocr_pages[1].get("title")
    assert not [e for e in ocr_pages[1].iter() if e.get("class") == "ocrx_word"]


def test_ocr_page_refuses_a_non_image_and_bad_arguments(client, pages):
    with pytest.raises(Error) as caught:
        client.call("ocr", "page", {}, blobs=[b"%PDF-1.4 not really an image"], timeout=WAIT)
    assert caught.value.code == "invalid_image", caught.value
    data = encoded(pages["english"].image)
    for args, blobs, code in (({"lang": "xx"}, [data], "invalid_option"),
                              ({}, [data, data], "invalid_argument"),
                              ({}, [], "invalid_argument"),
                              ({"rotate": "yes"}, [data], "invalid_argument"),
                              ({"index": -1}, [data], "invalid_argument")):
        with pytest.raises(Error) as caught:
            client.call("ocr", "page", args, blobs=blobs, timeout=WAIT)
        assert caught.value.code == code, (args, len(blobs), caught.value)


def test_an_image_over_the_pixel_limit_is_too_large(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("home"),
                  extra_ini="[limits]\nmax_image_megapixels = 1\n")
    svc.start()
    try:
        with svc.client() as client:
            wait_service(client, "ocr", 1, timeout=30)
            big = encoded(Image.new("L", (1200, 1000), 255), "PNG")  # 1.2 MP
            with pytest.raises(Error) as caught:
                client.call("ocr", "page", {}, blobs=[big], timeout=WAIT)
            assert caught.value.code == "too_large", caught.value
            # Within the limit the same service reads.
            fits = render(ENGLISH[:2], size=(1000, 1000))
            result = client.call("ocr", "page", {}, blobs=[encoded(fits.image)], timeout=WAIT)
            assert_read(fits.text, result["text"])
        # Through the gateway: the import is refused, or the job fails, with too_large.
        session = Session(Api(svc))
        answer = session.request("POST", "/images", data=big,
                                 headers={"Content-Type": "image/png"})
        if answer.status == 413:
            assert_error(answer, 413, "too_large")
        else:
            assert answer.status == 201, answer.body
            view = session.wait(session.start()["job"])
            assert view["state"] == "failed" and view["error"]["code"] == "too_large", view
    finally:
        svc.stop()


def test_bad_job_bodies_are_refused_with_json_errors(session):
    assert_error(session.request("POST", "/ocr", json={}), 409, "conflict")  # no pages yet
    session.upload(encoded(render(ENGLISH[:1]).image))
    for body, status, code in (({"output": "doc"}, 400, "invalid_argument"),
                               ({"output": ["text", "doc"]}, 400, "invalid_argument"),
                               ({"output": []}, 400, "invalid_argument"),
                               ({"rotate": "yes"}, 400, "invalid_argument"),
                               ({"timeout": -1}, 400, "invalid_argument"),
                               ({"timeout": "60"}, 400, "invalid_argument"),
                               ({"images": "all"}, 400, "invalid_argument"),
                               ({"images": [1]}, 400, "invalid_argument"),
                               ({"images": ["nosuchimage"]}, 404, "not_found"),
                               ({"colour": True}, 400, "invalid_argument")):
        assert_error(session.request("POST", "/ocr", json=body), status, code)
    answer = session.request("POST", "/ocr", data=b"[1, 2]",
                             headers={"Content-Type": "application/json"})
    assert_error(answer, 400)
    assert_error(session.request("POST", "/ocr", data=b"{not json",
                                 headers={"Content-Type": "application/json"}), 400)
    assert session.request("GET", "/ocr").json() == []
    assert_error(session.request("GET", "/ocr/nosuchjob"), 404, "not_found")
    assert_error(session.request("DELETE", "/ocr/nosuchjob"), 404, "not_found")


def test_the_token_is_needed_and_another_sessions_job_is_not_found(session, api, pages):
    session.upload(encoded(pages["english"].image))
    job = session.start()["job"]
    for method, sub in (("POST", "/ocr"), ("GET", "/ocr"), ("GET", f"/ocr/{job}"),
                        ("DELETE", f"/ocr/{job}"), ("GET", f"/ocr/{job}/text")):
        assert_error(session.request(method, sub, token=None), 401, "unauthorized")
    other = Session(api)
    try:
        assert_error(session.request("GET", f"/ocr/{job}", token=other.token), 403)
        for method, sub in (("GET", f"/ocr/{job}"), ("DELETE", f"/ocr/{job}"),
                            ("GET", f"/ocr/{job}/text")):
            assert_error(other.request(method, sub), 404, "not_found")
        assert other.request("GET", "/ocr").json() == []
    finally:
        other.request("DELETE")
    view = session.wait(job)
    assert view["state"] == "done", view  # untouched by the other session's DELETE
    assert_read(pages["english"].text, view["result"]["text"])
    assert_error(session.request("GET", f"/ocr/{job}/hocr"), 404, "not_found")  # not asked
    assert_error(session.request("GET", f"/ocr/{job}/words"), 404, "not_found")


# --- jobs: events, list, cancel


def test_progress_events_count_the_pages_then_done_and_the_list_shows_the_job(service,
                                                                             session):
    ids = [session.upload(encoded(render([line, "page number " + str(n)]).image))
           for n, line in enumerate(ENGLISH[:3])]

    async def test():
        http, ws = await ws_events(service, session, WAIT)
        try:
            job = (await asyncio.to_thread(session.start))["job"]
            got = of_job(await until(ws, lambda m: m["topic"] in ("ocr.done", "ocr.failed")
                                     and m["data"]["job"] == job), job)
        finally:
            await ws.close()
            await http.close()
        return job, got

    job, got = asyncio.run(test())
    topics = [m["topic"] for m in got]
    assert topics == ["ocr.progress"] * 3 + ["ocr.done"], got
    progress = [m["data"] for m in got[:3]]
    assert [p["done"] for p in progress] == [1, 2, 3], progress
    assert all(p["total"] == 3 and p["kind"] == "ocr" for p in progress), progress
    assert sorted((p["index"], p["image"]) for p in progress) == list(enumerate(ids))
    assert got[3]["data"]["job"] == job and "error" not in got[3]["data"], got[3]
    seqs = [m["seq"] for m in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4, seqs

    listed = session.request("GET", "/ocr").json()
    assert [v["job"] for v in listed] == [job], listed
    assert listed[0]["state"] == "done" and listed[0]["progress"] == {"done": 3, "total": 3}
    assert len(listed[0]["result"]["pages"]) == 3


def test_deleting_a_running_job_cancels_it(service, session):
    # 8 pages of 12 lines each: ~0.3 s a page, 4 in flight over 2 workers.
    lines = (ENGLISH + ENGLISH_SERIF + TURNED)[:12]
    ids = [session.upload(encoded(render([f"Page {number + 1}", *lines]).image, "JPEG"),
                          "image/jpeg") for number in range(8)]

    async def test():
        http, ws = await ws_events(service, session, WAIT)
        try:
            job = (await asyncio.to_thread(session.start))["job"]
            answer = await asyncio.to_thread(session.request, "DELETE", f"/ocr/{job}")
            got = of_job(await until(ws, lambda m: m["topic"] in (
                "ocr.done", "ocr.failed", "ocr.cancelled") and m["data"]["job"] == job), job)
        finally:
            await ws.close()
            await http.close()
        return job, answer, got

    job, answer, got = asyncio.run(test())
    assert answer.status == 200, answer.body
    view = answer.json()
    assert view["state"] == "cancelled", view
    assert view["progress"]["total"] == 8 and view["progress"]["done"] < 8, view
    assert "result" not in view and view["finished"], view
    assert got[-1]["topic"] == "ocr.cancelled", got
    assert all(m["topic"] == "ocr.progress" for m in got[:-1]), got
    assert len(got) - 1 == view["progress"]["done"], (got, view)
    assert session.job(job)["state"] == "cancelled"
    for name in ("text", "pdf"):
        assert_error(session.request("GET", f"/ocr/{job}/{name}"), 409, "conflict")
    listed = session.request("GET", "/ocr").json()
    assert [(v["job"], v["state"]) for v in listed] == [(job, "cancelled")]
    # Cancelling an ended job changes nothing.
    again = session.request("DELETE", f"/ocr/{job}")
    assert again.status == 200 and again.json()["state"] == "cancelled", again.body
    # The workers are free again: the next job runs.
    assert "Page 1" in session.run(images=ids[:1])["text"]


# --- a worker dies


def test_a_page_whose_worker_is_killed_is_read_by_the_other_worker(service, client, session):
    page = a4_page()
    session.upload(encoded(page.image, "PNG"))
    seen = {name: len(service.log_records(name)) for name in WORKERS}
    job = session.start()["job"]

    def started():
        for name in WORKERS:
            new = service.log_records(name)[seen[name]:]
            for record in new:
                if record.get("msg") == "page started":
                    return name, record["pid"]
        return None
    name, killed = poll_for(started, 20, "a worker to start the page", every=0.02)
    assert killed == service.processes()[name]["pid"]
    os.kill(killed, signal.SIGKILL)

    view = session.wait(job)
    assert view["state"] == "done", view
    (read,) = view["result"]["pages"]
    assert read["worker"]["pid"] != killed, read["worker"]
    assert_read(page.text, read["text"])
    finished = [r for r in service.log_records(name)[seen[name]:]
                if r.get("msg") == "page done" and r["pid"] == killed]
    assert finished == [], finished  # the killed worker never finished it

    # supervisord starts the killed worker again, and it joins the broker.
    restarted = service.wait_running(name, other_than=killed, timeout=30)
    assert restarted != killed
    wait_service(client, "ocr", len(WORKERS), timeout=30)
    pids = {w.get("pid") for w in client.call("broker", "services", timeout=5)["services"]
            ["ocr"]["workers"]}
    assert killed not in pids, pids
