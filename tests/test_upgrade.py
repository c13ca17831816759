"""Upgrades keep state: a home written by the previous release, run by this one.

The previous release is run itself, not imitated: its tree comes out of the git history
(``git archive`` of the commit in ``RELEASES``, so nothing is registered in the repository)
and runs with this venv's Python, ``PYTHONPATH`` pointing at it (0.1.0's CLI is
``python -m broker.cli``). Through its gateway, as a page would, a session gets three pages,
edits (an edit history) and a new page order, and an upload to a receiver that answers
503, so the job waits in the queue; the old service stops. This code then starts on the
same home: every page, its bytes, its edit history (``GET .../images/{id}/info``), the
order and the session token are as they were, the job is still queued and is delivered,
once, when the receiver accepts; the databases were stamped version 1 and nothing else of
them changed. The ini files also carry lines this release does not use (the commercial
service's keys, a section a later release dropped): the service starts, and says so.

A database of a newer release is refused: the actor logs ``start refused`` and exits,
the file is left as it was, ``scanbridge doctor`` says what happened and ``scanbridge
start`` does not start the service.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pymupdf
import pytest

from actors.buffer.store import SCHEMA as BUFFER
from actors.buffer.store import Store
from actors.uploader.jobs import UploadJobs
from broker.actor import EXIT_REFUSED
from tests.support.images import png
from tests.support.receiver import Receiver, answer, store
from tests.support.service import Service
from tests.support.stack import ROOT, poll_for, write_ini
from tests.support.web import Api, WebSession

pytestmark = pytest.mark.timeout(240)

# Each release a home may be upgraded from: its version and the commit that is it (no tags
# are kept; 9cebb2e is 0.1.0 as installed before the installable packages came).
RELEASES = {"0.1.0": "9cebb2e77f939360f9f8356092677b58fbdc2e83"}
APP = "https://app.example"
PATH = "/in/scans"
UPLOADER = ("[uploader]\nbackoff_first = 0.2\nbackoff_max = 1\nmax_attempts = 1000\n"
            "[gateway]\nsession_close_delay = 0\n")  # the session outlives its last socket
# What an older file may hold that this release does not use: the commercial service's
# keys above the sections, and a section a later release dropped.
FOREIGN_TOP = "Server=127.0.0.1\nLogLevel=14\n"
FOREIGN_END = "[retired]\nold_key = 1\n"


def old_tree(where: Path, release: str) -> Path:
    commit = RELEASES[release]
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True)
    if archive.returncode != 0:
        raise AssertionError(f"the tree of {release} ({commit[:7]}) is not in the git "
                             f"history (a shallow clone? git fetch --unshallow): "
                             f"{archive.stderr.decode().strip()}")
    tree = where / f"scanbridge-{release}"
    tree.mkdir()
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def old_cli(service: Service, tree: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "broker.cli", *args], cwd=tree, text=True,
                          env={**service.env, "PYTHONPATH": str(tree)}, capture_output=True,
                          timeout=90)
    assert done.returncode == 0, f"0.1.0's broker.cli {args}: {done.stderr}{done.stdout}"
    return done


def shape(path: Path) -> list[tuple]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        return db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master "
                          "ORDER BY type, name").fetchall()


def user_version(path: Path) -> int:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        return db.execute("PRAGMA user_version").fetchone()[0]


@dataclass
class Before:
    """What the old release showed of the home before it stopped."""
    session: WebSession
    images: list[dict]  # GET .../images
    infos: dict[str, dict]  # image id -> GET .../images/{id}/info
    files: dict[str, bytes]  # image id -> GET .../images/{id}
    job: dict  # the queued upload
    shapes: dict[str, list]  # database file name -> its tables and indexes
    start_stderr: str = ""  # what this code's ``scanbridge start`` then said


@pytest.fixture(scope="module")
def rx():
    with Receiver() as receiver:
        receiver.on(PATH, then=answer(503))  # down for now: the upload must wait
        yield receiver


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory, rx):
    """A home written by 0.1.0 (pages, edits, a queued upload), then started by this code;
    yields (service, Before)."""
    service = Service(tmp_path_factory.mktemp("home"), extra_ini=UPLOADER)
    write_ini(service.home, "user_config.ini",
              f"[access]\nallowed_origins = {APP}\nupload_targets = {rx.url('/')}\n")
    tree = old_tree(tmp_path_factory.mktemp("releases"), "0.1.0")
    old_cli(service, tree, "start")
    try:
        before = fill(service, rx)
    finally:
        old_cli(service, tree, "stop")
    databases = {"index.sqlite": service.home / "cache" / "buffer" / "index.sqlite",
                 "jobs.db": service.home / "upload" / "jobs.db"}
    assert {name: user_version(path) for name, path in databases.items()} == {
        "index.sqlite": 0, "jobs.db": 0}  # 0.1.0 stamped no version
    before.shapes = {name: shape(path) for name, path in databases.items()}
    ini = service.home / "ini" / "DSConfiguration.ini"
    ini.write_text(FOREIGN_TOP + ini.read_text() + FOREIGN_END)
    started = service.cli("start")
    before.start_stderr = started.stderr
    try:  # a failed start may leave supervisord running with some programs: stop it too
        assert started.returncode == 0, started.stderr + started.stdout
        yield service, before
    finally:
        service.stop()


def fill(service: Service, rx: Receiver) -> Before:
    """Pages, edits, an order and a queued upload, through 0.1.0's gateway."""
    session = WebSession(Api(service, origin=APP))
    ids = [session.upload(png(60 + 10 * n, 40, color)) for n, color in
           enumerate(("red", "green", "blue"))]
    for image, ops in ((ids[0], [{"op": "rotate", "angle": 90}]),
                       (ids[0], [{"op": "invert"}]),
                       (ids[2], [{"op": "crop", "left": 5, "top": 5, "right": 45, "bottom": 25}])):
        edited = session.post(f"/images/{image}/ops", json=ops)
        assert edited.status == 200, edited.body
    order = [ids[2], ids[0], ids[1]]
    assert session.put("/order", json={"order": order}).status == 200
    queued = session.post("/uploads", json={"url": rx.url(PATH), "format": "pdf"})
    assert queued.status == 202, queued.body
    job = queued.json()["job"]
    rx.wait_for(lambda: len(rx.requests_to(PATH)) >= 2, 30, "two refused attempts")
    images = session.get("/images").json()
    assert [i["id"] for i in images] == order
    return Before(session=session, images=images,
                  infos={i: session.get(f"/images/{i}/info").json() for i in ids},
                  files={i: session.get(f"/images/{i}").body for i in ids},
                  job=session.get(f"/uploads/{job}").json(), shapes={})


def test_every_page_its_bytes_its_edit_history_and_the_order_are_kept(upgraded):
    service, before = upgraded
    session = WebSession(Api(service, origin=APP), before.session.id, before.session.token)
    assert session.get("/images").json() == before.images
    histories = {i: info["history"] for i, info in before.infos.items()}
    assert [len(h) for h in histories.values()] == [3, 1, 2]  # the edits made under 0.1.0
    assert histories[before.images[1]["id"]][1]["edit"] == [{"op": "rotate", "angle": 90}]
    for image, info in before.infos.items():
        assert session.get(f"/images/{image}/info").json() == info
        assert session.get(f"/images/{image}").body == before.files[image]


def test_the_queued_upload_is_delivered_once_when_the_receiver_accepts(upgraded, rx):
    service, before = upgraded
    session = WebSession(Api(service, origin=APP), before.session.id, before.session.token)
    job = before.job["job"]
    assert before.job["state"] in ("queued", "running") and before.job["attempts"] >= 1
    waiting = session.get(f"/uploads/{job}").json()
    assert waiting["state"] in ("queued", "running"), waiting
    rx.on(PATH, then=store())
    done = poll_for(lambda: (state := session.get(f"/uploads/{job}").json())["state"]
                    not in ("queued", "running") and state, 30, "the upload to end")
    assert done["state"] == "done" and done["result"]["status"] == 200, done
    key = before.job["idempotency_key"]
    assert [r.key for r in rx.requests_to(PATH) if r.stored] == [key]  # once
    (part,) = rx.documents[key].files
    with pymupdf.open(stream=part.data, filetype="pdf") as pdf:
        assert pdf.page_count == 3


def test_the_databases_were_stamped_version_1_and_nothing_else_changed(upgraded, tmp_path):
    service, before = upgraded
    files = {"index.sqlite": service.home / "cache" / "buffer" / "index.sqlite",
             "jobs.db": service.home / "upload" / "jobs.db"}
    assert {name: (user_version(path), shape(path)) for name, path in files.items()} == {
        name: (1, before.shapes[name]) for name in files}
    Store(tmp_path / "buffer", 1 << 30).close()  # what this code makes in a new home
    UploadJobs(tmp_path / "upload").close()
    assert shape(tmp_path / "buffer" / "index.sqlite") == before.shapes["index.sqlite"]
    assert shape(tmp_path / "upload" / "jobs.db") == before.shapes["jobs.db"]
    doctor = service.cli("doctor").stdout
    assert f"ok    {files['index.sqlite']}: schema version 1" in doctor, doctor


def test_lines_this_release_does_not_use_start_with_a_warning(upgraded):
    service, before = upgraded
    ini = service.home / "ini" / "DSConfiguration.ini"
    said = [line for line in before.start_stderr.splitlines() if "warning" in line]
    assert said == [
        f"scanbridge: warning: {ini}:1: Server: a setting of the commercial service's "
        "DSConfiguration.ini, not used by Scanbridge ([network] bind sets the addresses "
        "Scanbridge listens on)",
        f"scanbridge: warning: {ini}:2: LogLevel: a setting of the commercial service's "
        "DSConfiguration.ini, not used by Scanbridge ([log] level sets how much Scanbridge "
        "logs)",
        f"scanbridge: warning: {ini}:{len(ini.read_text().splitlines()) - 1}: [retired]: "
        "unknown section, not used (its keys neither; this file has [ports], [gateway], "
        "[certhelper], [uploader], [barcode], [ocr], [camera], [network], [log], "
        "[heartbeat], [broker], [monitor], [ondemand], [limits], [buffer], [scanner])"]
    for program in ("broker", "buffer", "uploader"):
        logged = [r for r in service.log_records(program)
                  if r["msg"] == "configuration line not used"]
        assert [(r["level"], r["line"], r["key"]) for r in logged][-3:] == [
            ("warning", 1, "Server"), ("warning", 2, "LogLevel"),
            ("warning", len(ini.read_text().splitlines()) - 1, "[retired]")], program
    doctor = service.cli("doctor").stdout
    assert f"warn  configuration: {ini}:2: LogLevel: a setting of the commercial" in doctor


# --- a database of a newer release

def test_a_buffer_index_of_a_newer_release_is_refused_and_left_as_it_was(tmp_path):
    service = Service(tmp_path / "home")  # not started: its ini files (free ports) only
    index = service.home / "cache" / "buffer" / "index.sqlite"
    Store(index.parent, 1 << 30).close()
    db = sqlite3.connect(index)
    db.executescript(f"PRAGMA user_version = {BUFFER.version + 1}; "
                     "CREATE TABLE kept_by_a_later_release (x);")
    db.close()  # the last connection: its WAL is written into the file and removed
    before = {p.name: p.read_bytes() for p in index.parent.glob("index.sqlite*")}
    assert list(before) == ["index.sqlite"]
    done = subprocess.run([sys.executable, "-m", "actors.buffer"], env=service.env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_REFUSED, done.stderr
    (record,) = [json.loads(line) for line in done.stderr.splitlines()
                 if '"start refused"' in line]
    assert (record["level"], record["code"]) == ("error", "schema_too_new")
    assert record["reason"] == (
        f"{index}: the buffer's index is at schema version 2, newer than this Scanbridge "
        "knows (1): it was written by a newer release and is left untouched; install that "
        "release again (a downgrade would lose its data)")
    assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in index.parent.glob("index.sqlite*")} == before
    doctor = service.cli("doctor")
    assert doctor.returncode == 1
    assert (f"FAIL  {index}: the buffer's index is at schema version 2, written by a newer "
            "Scanbridge than this one (it knows 1): the buffer does not start, and the file "
            "is left as it is") in doctor.stdout, doctor.stdout
    assert "fix: install that newer release again; a downgrade would lose its data" \
        in doctor.stdout
    # scanbridge start (and run) check first: nothing starts, rather than a service
    # without its buffer that says it started.
    started = service.cli("start")
    assert (started.returncode, started.stderr) == (
        65, f"scanbridge: {record['reason']} (see: scanbridge doctor)\n")
    assert not (service.home / "run" / "supervisord.pid").exists()
    assert {p.name: p.read_bytes() for p in index.parent.glob("index.sqlite*")} == before
