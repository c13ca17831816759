"""The job table (common/jobs.py) on a SQLite file in tmp_path: a job's life, who may see
it, what a restarted actor finds unfinished, and what is forgotten when.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from broker.protocol import Error
from common import jobs
from common.jobs import JobStore


@pytest.fixture
def store(tmp_path):
    store = JobStore(tmp_path / "scanner")
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
    job = store.get("j1")
    assert (job["state"], job["pages"], job["images"], job["error"]) == ("running", 0, [],
                                                                       None)
    assert job["request"] == {"resolution": 150} and job["created"] == job["updated"]
    store.page("j1", ["i1", "i2"])
    assert (store.get("j1")["pages"], store.get("j1")["images"]) == (2, ["i1", "i2"])
    store.finish("j1", "failed", {"code": "jammed", "message": "paper jam"})
    job = store.get("j1", "s1")
    assert (job["state"], job["error"], job["pages"]) == (
        "failed", {"code": "jammed", "message": "paper jam"}, 2)
    assert job["updated"] >= job["created"]


def test_a_job_of_another_session_is_not_found_and_a_non_string_id_is_invalid(store):
    store.create("j1", "s1", "test:0", {})
    assert code_of(store.get, "j1", "s2") == "not_found"
    assert code_of(store.get, "nope") == "not_found"
    for bad in (None, 1, ["j1"], b"j1"):
        assert code_of(store.get, bad) == "invalid_argument"


def test_a_session_lists_its_own_jobs_oldest_first(store, monkeypatch):
    clock = iter([100.0, 200.0, 300.0])
    monkeypatch.setattr(jobs.time, "time", lambda: next(clock))
    store.create("late", "s1", "test:0", {})
    store.create("other", "s2", "test:0", {})
    store.create("later", "s1", "test:1", {})
    assert [j["job"] for j in store.of_session("s1")] == ["late", "later"]
    assert store.of_session("s3") == []


def test_a_reopened_table_knows_the_jobs_a_dead_process_left_unfinished(tmp_path):
    first = JobStore(tmp_path / "camera")
    first.create("done", "s1", "cam:desk", {})
    first.finish("done", "done")
    first.create("cut", "s1", "cam:desk", {})
    first.page("cut", ["i1"])
    first.create("queued", "s1", "cam:desk", {})
    first.finish("queued", "queued")
    # No close(): the process was killed; what was written must be on disk.
    second = JobStore(tmp_path / "camera")
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
    store = JobStore(folder)
    store.create("j1", "s1", "test:0", {})
    store.close()
    with sqlite3.connect(folder / "jobs.db") as db:
        assert db.execute("SELECT id, state FROM jobs").fetchall() == [("j1", "running")]
