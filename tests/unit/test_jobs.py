"""The job layer (common/jobs.py, common/sqlite.py) on SQLite files in tmp_path: a job's
life, who may see it, what a restarted actor finds unfinished and what it publishes about
it, what is forgotten when, the one opener's settings, and the states the JS client names.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import actors
from actors.uploader.jobs import UploadJobs
from broker.protocol import Error
from common import jobs
from common.jobs import FINAL_STATES, PUBLIC_STATES, JobOperations, JobState, ScanJobs
from common.sqlite import BUSY_TIMEOUT, connect


@pytest.fixture
def store(tmp_path):
    store = ScanJobs(tmp_path / "scanner")
    try:
        yield store
    finally:
        store.close()


def code_of(call, *args) -> str:
    with pytest.raises(Error) as caught:
        call(*args)
    return caught.value.code


def test_a_job_runs_gets_its_pages_and_ends_with_its_error(store):
    store.create("j1", "s1", "test:0", {"resolution": 150})
    job = store.find("j1")
    assert (job["state"], job["pages"], job["images"], job["error"]) == ("running", 0, [],
                                                                       None)
    assert job["request"] == {"resolution": 150} and job["created"] == job["updated"]
    store.page("j1", ["i1", "i2"])
    assert (store.find("j1")["pages"], store.find("j1")["images"]) == (2, ["i1", "i2"])
    store.finish("j1", "failed", {"code": "jammed", "message": "paper jam"})
    job = store.find("j1", "s1")
    assert (job["state"], job["error"], job["pages"]) == (
        "failed", {"code": "jammed", "message": "paper jam"}, 2)
    assert job["updated"] >= job["created"]


def test_a_job_of_another_session_is_not_found_and_a_non_string_id_is_invalid(store):
    store.create("j1", "s1", "test:0", {})
    assert code_of(store.find, "j1", "s2") == "not_found"
    assert code_of(store.find, "nope") == "not_found"
    for bad in (None, 1, ["j1"], b"j1"):
        assert code_of(store.find, bad) == "invalid_argument"


def test_a_session_lists_its_own_jobs_oldest_first(store, monkeypatch):
    clock = iter([100.0, 200.0, 300.0])
    monkeypatch.setattr(jobs.time, "time", lambda: next(clock))
    store.create("late", "s1", "test:0", {})
    store.create("other", "s2", "test:0", {})
    store.create("later", "s1", "test:1", {})
    assert [j["job"] for j in store.of_session("s1")] == ["late", "later"]
    assert store.of_session("s3") == []


def test_a_reopened_table_knows_the_jobs_a_dead_process_left_unfinished(tmp_path):
    first = ScanJobs(tmp_path / "camera")
    first.create("done", "s1", "cam:desk", {})
    first.finish("done", "done")
    first.create("cut", "s1", "cam:desk", {})
    first.page("cut", ["i1"])
    first.create("queued", "s1", "cam:desk", {})
    first.finish("queued", "queued")
    # No close(): the process was killed; what was written must be on disk.
    second = ScanJobs(tmp_path / "camera")
    try:
        assert sorted((j["job"], j["state"], j["pages"]) for j in second.orphans()) == [
            ("cut", "running", 1), ("queued", "queued", 0)]
        second.finish("cut", "failed", {"code": "actor_died"})
        assert [j["job"] for j in second.orphans()] == ["queued"]
    finally:
        second.close()
        first.close()


def test_prune_forgets_finished_jobs_after_the_keep_time_and_never_active_ones(store,
                                                                             monkeypatch):
    now = time.time()
    monkeypatch.setattr(jobs.time, "time", lambda: now)
    for job, state in (("old-done", "done"), ("old-failed", "failed"),
                       ("old-running", "running"), ("old-queued", "queued")):
        store.create(job, "s1", "test:0", {})
        store.finish(job, state)
    now += jobs.KEEP_SECONDS - 1
    store.create("new-done", "s1", "test:0", {})
    store.finish("new-done", "done")
    store.prune()
    assert len(store.of_session("s1")) == 5  # nothing is past the keep time yet
    now += 2
    store.prune()
    assert sorted(j["job"] for j in store.of_session("s1")) == [
        "new-done", "old-queued", "old-running"]


def test_the_table_is_a_sqlite_file_in_the_actor_s_folder_made_if_missing(tmp_path):
    folder = tmp_path / "cache" / "scanner"
    store = ScanJobs(folder)
    store.create("j1", "s1", "test:0", {})
    store.close()
    with sqlite3.connect(folder / "jobs.db") as db:
        assert db.execute("SELECT id, state FROM jobs").fetchall() == [("j1", "running")]


# --- the one SQLite opener (common/sqlite.py)

@pytest.mark.parametrize("durable, synchronous", [(True, 2), (False, 1)])
def test_the_opener_sets_wal_the_durability_asked_a_busy_timeout_and_named_rows(
        tmp_path, durable, synchronous):
    db = connect(tmp_path / "x.db", durable=durable)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == synchronous  # FULL | NORMAL
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] == BUSY_TIMEOUT * 1000
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 0
        assert db.isolation_level is None  # autocommit: a write is on disk when it returns
        row = db.execute("SELECT 1 AS one, 2 AS two").fetchone()
        assert (row["one"], row["two"]) == (1, 2) and tuple(row) == (1, 2)
    finally:
        db.close()


def test_a_shared_connection_crosses_threads_and_a_per_thread_one_does_not(tmp_path):
    shared = connect(tmp_path / "x.db", durable=True)
    own = connect(tmp_path / "x.db", durable=True, shared=False, foreign_keys=True)
    outcomes = []

    def use() -> None:
        for db in (shared, own):
            try:
                outcomes.append(db.execute("SELECT 1").fetchone()[0])
            except sqlite3.ProgrammingError:
                outcomes.append("refused")
    thread = threading.Thread(target=use)
    thread.start()
    thread.join()
    assert outcomes == [1, "refused"]
    assert own.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    shared.close()
    own.close()


def test_the_tables_keep_their_durability(tmp_path):
    scans, uploads = ScanJobs(tmp_path / "scanner"), UploadJobs(tmp_path / "upload")
    try:
        assert scans.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert uploads.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        scans.close()
        uploads.close()


# --- states

def test_the_js_client_names_the_states_the_service_answers():
    text = (Path(actors.__file__).parent / "gateway/static/scanbridge/states.js").read_text()
    table = re.search(r"JobState = Object\.freeze\(\{(.*?)\}\)", text, re.S)[1]
    named = dict(re.findall(r"(\w+): \"(\w+)\"", table))
    assert named == {state.name: state.value for state in PUBLIC_STATES}
    final = re.search(r"FINAL_STATES = Object\.freeze\(\[(.*?)\]\)", text, re.S)[1]
    assert {JobState[name] for name in re.findall(r"JobState\.(\w+)", final)} == FINAL_STATES
    assert set(PUBLIC_STATES) == set(JobState) - {JobState.PREPARING}


# --- job, jobs, cancel and orphans (JobOperations)

class Actor(JobOperations):
    """What JobOperations needs of an actor: its table and publish."""

    def __init__(self, table):
        self.job_table = table
        self.events: list[tuple[str, dict]] = []
        self.cancelled: list[str] = []

    def publish(self, topic: str, body: dict) -> None:
        self.events.append((topic, body))

    def job_cancel(self, record: dict) -> dict:
        self.cancelled.append(record["job"])
        self.job_table.finish(record["job"], JobState.CANCELLED)
        return self.job_table.find(record["job"])


def test_orphans_end_failed_with_actor_died_and_each_publishes_its_kind_s_error(tmp_path):
    first = ScanJobs(tmp_path / "camera")
    first.create("cut", "s1", "camera:desk", {})
    first.page("cut", ["i1"])
    first.create("ended", "s1", "camera:desk", {})
    first.finish("ended", JobState.DONE)
    # No close(): the process was killed.
    actor = Actor(ScanJobs(tmp_path / "camera"))
    try:
        ended = actor.fail_orphans("stopped after {pages} page(s)")
        error = {"code": "actor_died", "message": "stopped after 1 page(s)"}
        assert [(r["job"], r["state"]) for r in ended] == [("cut", "failed")]
        assert actor.events == [("scan.error", {
            "session": "s1", "job": "cut", "state": "failed", "pages": 1, "images": ["i1"],
            "error": error, "code": "actor_died", "message": "stopped after 1 page(s)"})]
        assert actor.job_table.find("cut")["error"] == error
        assert actor.job_table.orphans() == [] and actor.fail_orphans("again") == []
        assert actor.job_table.find("ended")["state"] == "done"
    finally:
        actor.job_table.close()
        first.close()


def test_job_jobs_and_cancel_answer_a_session_s_own_jobs_and_cancel_only_unfinished_ones(
        store):
    actor = Actor(store)
    store.create("j1", "s1", "test:0", {})
    store.create("j2", "s1", "test:0", {})
    store.finish("j2", JobState.FAILED, {"code": "jammed", "message": "paper jam"})
    store.create("j3", "s2", "test:0", {})
    assert actor.job("j1", "s1")["state"] == "running"
    assert [j["job"] for j in actor.jobs("s1")] == ["j1", "j2"]
    assert code_of(actor.job, "j3", "s1") == "not_found"
    assert code_of(actor.cancel, "j3", "s1") == "not_found"
    assert actor.cancel("j2", "s1")["state"] == "failed"  # ended already: answered as it is
    assert actor.cancel("j1")["state"] == "cancelled"
    assert actor.cancelled == ["j1"]


def test_an_upload_being_prepared_is_not_found_and_a_restart_queues_running_ones_again(
        tmp_path):
    table = UploadJobs(tmp_path / "upload")
    try:
        table.create("u1", "s1", {"url": "https://x/"}, key="k1")
        assert code_of(table.find, "u1") == "not_found" and table.of_session("s1") == []
        assert table.missing("u1").message == "no upload job 'u1' in this session"
        table.queue("u1", [{"path": "/f", "name": "f", "media_type": "x", "bytes": 3}])
        assert table.find("u1", "s1")["total"] == 3
        assert table.take(time.time())["state"] == "running"
        assert not table.finish("u1", JobState.DONE, only_from=(JobState.QUEUED,))
        table.create("u2", "s1", {"url": "https://x/"}, key="k2")
        assert table.recover() == (["u2"], 1)
        assert [(j["id"], j["state"]) for j in table.of_session("s1")] == [("u1", "queued")]
        assert table.finish("u1", JobState.DONE, result={"status": 200})
        done = table.find("u1")
        assert (done["state"], done["result"]) == ("done", {"status": 200})
        assert done["finished"] is not None and table.unfinished() == set()
    finally:
        table.close()
