"""Crash safety of the uploader: kill -9 of the uploader in a loop while 50 jobs are
delivered (each document stored exactly once by its key, none missing), a restart that
removes the folders a kill left behind, and kill -9 of the whole service mid-transfer
(delivered after the restart, with the same key).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pymupdf
import pytest

from tests.support.receiver import stall, store
from tests.support.service import Service
from tests.support.stack import poll_for
from tests.support.uploader import (FINAL, Session, assert_files_removed, fresh, job_folder,
                                    job_state, noise_jpeg)
from tests.support.uploader import big_pages, rx, svc_b  # fixtures

pytestmark = pytest.mark.timeout(120)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in state


def test_kill_9_of_the_uploader_during_50_deliveries(svc_b, rx):
    page = noise_jpeg(200, 150, 100)
    path = fresh("crash")
    rx.on(path, then=store(delay=0.2))  # stored, then the answer comes 0.2 s later
    with svc_b.client() as client:
        sid = client.call("buffer", "open_session", {})["session"]
        client.call("buffer", "add", {"session": sid}, blobs=[page])
        rx.hold()
        try:
            jobs = [client.call("uploader", "submit", {"session": sid, "url": rx.url(path),
                                                       "title": f"doc {n}"})
                    for n in range(50)]
        finally:
            rx.release()
        keys = {j["idempotency_key"] for j in jobs}
        assert len(keys) == 50
        kills = 0
        pid = svc_b.pid("uploader")

        def delivered() -> int:
            return len([r for r in rx.documents.values() if r.path == path])
        for _ in range(5):
            time.sleep(0.5)
            # Mid-transfer: a request is being handled. A restarted uploader may take
            # seconds to deliver again on a loaded machine: wait for that, or for the end.
            rx.wait_for(lambda: rx.in_progress(path) or delivered() >= 50, 60,
                        "a request in progress")
            if delivered() >= 50:
                break
            kill(pid)
            kills += 1
            pid = svc_b.wait_running("uploader", other_than=pid, timeout=30)
        assert kills >= 3, f"only {kills} kills landed: the deliveries ended too soon"

        def all_final():
            states = [job_state(client, j["job"]) for j in jobs]
            return all(s and s["state"] in FINAL for s in states) and states
        states = poll_for(all_final, 90, "all 50 jobs to end", every=0.5)
    assert [s["state"] for s in states] == ["done"] * 50, \
        [(s["job"], s["state"], s.get("error")) for s in states if s["state"] != "done"]
    stored = {k: r for k, r in rx.documents.items() if r.path == path}
    assert set(stored) == keys, f"missing {len(keys - set(stored))}, " \
                                f"unknown {len(set(stored) - keys)}"
    for number, (job, state) in enumerate(zip(jobs, states, strict=True)):
        document = stored[job["idempotency_key"]]
        assert document.headers["X-Scanbridge-Job"] == job["job"]
        (part,) = document.files
        assert part.size == job["files"][0]["bytes"]
        with pymupdf.open(stream=part.data, filetype="pdf") as doc:
            assert doc.page_count == 1
            assert doc.metadata["title"] == f"doc {number}"
        assert state["result"]["status"] == 200
    requests = rx.requests_to(path)
    resent = [r for r in requests if r.duplicate or not r.complete or r.status is None]
    assert len(requests) > 50 and resent, "no request was cut by a kill"
    # A kill between a job's end and its folder's removal leaves the folder: the restart
    # after that kill removes it (test_a_restart_removes_what_a_kill_left_behind).
    poll_for(lambda: not job_folders(svc_b), 10, "every job folder to be removed")


def job_folders(svc: Service) -> list[Path]:
    return [p for p in (svc.home / "upload").iterdir() if p.is_dir()]


def test_a_restart_removes_what_a_kill_left_behind(svc_b, rx):
    """The uploader is killed (-9) just after a job ended, before it removed the job's
    folder, and after the buffer wrote a folder for a job that no longer exists: the
    restart removes both, and a job still being delivered keeps its document."""
    session = Session(svc_b)
    session.add(noise_jpeg(80, 60, 101))
    ended = session.wait(session.upload(url=rx.url(fresh("ended")))["job"])
    assert ended["state"] == "done", ended
    assert_files_removed(svc_b, ended["job"])
    held_path = fresh("held")
    rx.on(held_path, then=stall(60))
    held = session.upload(url=rx.url(held_path))["job"]
    rx.wait_for(lambda: rx.in_progress(held_path), 10, "the held job's attempt")
    held_files = {p.name: p.read_bytes() for p in job_folder(svc_b, held).iterdir()}
    assert held_files
    pid = svc_b.pid("uploader")
    os.kill(pid, signal.SIGSTOP)  # frozen where a kill -9 would have caught it
    try:
        leftovers = [job_folder(svc_b, ended["job"]), job_folder(svc_b, os.urandom(16).hex())]
        for folder in leftovers:
            folder.mkdir(mode=0o700)
            (folder / "scan.pdf").write_bytes(b"%PDF-1.4 left by a crash")
    finally:
        kill(pid)
    svc_b.wait_running("uploader", other_than=pid, timeout=30)
    poll_for(lambda: not any(f.exists() for f in leftovers), 10,
             "the restart to remove the ended job's folder and the orphan")
    assert session.job(held)["state"] in ("queued", "running")
    assert {p.name: p.read_bytes() for p in job_folder(svc_b, held).iterdir()} == held_files
    assert session.job(ended["job"])["state"] == "done"  # the record stays for job_keep
    assert session.cancel(held).json()["state"] == "cancelled"
    assert_files_removed(svc_b, held)


def test_kill_9_of_the_whole_service_mid_transfer(svc_b, rx, big_pages):
    path = fresh("blackout")
    rx.on(path, stall(60, read=300_000))  # the first attempt hangs mid-body
    with svc_b.client() as client:
        sid = client.call("buffer", "open_session", {})["session"]
        client.call("buffer", "add", {"session": sid}, blobs=[big_pages[0]])
        client.call("buffer", "add", {"session": sid}, blobs=[big_pages[1]])
        job = client.call("uploader", "submit", {"session": sid, "url": rx.url(path)})
    rx.wait_for(lambda: rx.requests_to(path) and rx.requests_to(path)[0].size >= 300_000,
                10, "the transfer to be under way")
    supervisord = int((svc_b.home / "run" / "supervisord.pid").read_text())
    pids = [p["pid"] for p in svc_b.processes().values() if p["pid"]]
    for pid in [supervisord, *pids]:
        kill(pid)
    poll_for(lambda: all(gone(p) for p in [supervisord, *pids]), 10, "every process to die")
    folder = job_folder(svc_b, job["job"])
    assert [p.stat().st_size for p in folder.iterdir()] == [job["files"][0]["bytes"]]
    svc_b.start()
    with svc_b.client() as client:
        final = poll_for(lambda: (s := job_state(client, job["job"])) and
                         s["state"] in FINAL and s, 30, "the job after the restart")
    assert final["state"] == "done" and final["attempts"] == 2, final
    cut, stored = rx.requests_to(path)
    assert not cut.complete and stored.stored
    assert cut.key == stored.key == job["idempotency_key"]
    with pymupdf.open(stream=stored.files[0].data, filetype="pdf") as doc:
        assert [doc.extract_image(doc[n].get_images()[0][0])["image"] for n in (0, 1)] == \
            big_pages
    assert_files_removed(svc_b, job["job"])
