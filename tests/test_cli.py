"""`scanbridge` driven like an operator would, against the real service in a temp home.

One started service (``shared``) serves every test that only looks; tests that restart or
kill programs use ``scratch``; start/stop (``lifecycle``) and failures to start get their
own homes. Every service is stopped in a ``finally``: ``shared`` and ``scratch`` by
``stop_later``, which runs `scanbridge stop` in the background (supervisord takes about a
second per program) and waits for it, checking the exit status, when the session ends.

``doctor`` runs ``scanimage -L``, which can take seconds to probe network scanners; the
homes here get an empty ``ini/sane.d`` (doctor's SANE_CONFIG_DIR) so it answers at once.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker import __version__, supervision
from broker.config import Home, load
from tests.support.service import SCANBRIDGE, Service
from tests.support.stack import ROOT, env_for, free_port, poll_for, write_ini

# Always running; the scanner runs on demand.
PROGRAMS = ("barcode", "broker", "buffer", "certhelper", "gateway", "monitor", "ocr_00",
            "uploader")  # the test services run one OCR worker


def listed(program: str) -> str:
    """How supervisorctl and `scanbridge status` name it: group:name for OCR workers."""
    return f"ocr:{program}" if program.startswith("ocr_") else program
BAD_PORTS = "[ports]\nhttp = 18622, abc\n"
BAD_PORTS_REASON = "2: http: 'abc' is not a whole number"


def quiet_sane(home: Path) -> None:
    (home / "ini" / "sane.d").mkdir(parents=True, exist_ok=True)


def scanbridge(home: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`scanbridge ARGS` for a home that needs no Service (it may not even exist)."""
    return subprocess.run([*SCANBRIDGE, *args], env=env_for(home), cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout)


def one_line(stderr: str) -> str:
    """The single stderr line of a failed command (no traceback)."""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, f"not one line: {stderr!r}"
    assert "Traceback" not in stderr
    return stderr.rstrip("\n")


def api_status(service: Service) -> dict:
    status, _, body = service.get("/api/v1/status")
    return json.loads(body) if status == 200 else {}


def all_running(service: Service) -> bool:
    infos = service.processes()
    return all(infos.get(p, {}).get("statename") == "RUNNING" for p in PROGRAMS)


def actors_reported(service: Service) -> bool:
    actors = api_status(service).get("actors", {})
    return all(actors.get(listed(p), {}).get("state") == "RUNNING" for p in PROGRAMS)


@pytest.fixture(scope="session")
def stop_later():
    """Stops services in the background (each takes seconds); waits for all at the end."""
    stopping: list[tuple[Service, subprocess.Popen]] = []

    def stop(service: Service) -> None:
        stopping.append((service, subprocess.Popen(
            [*SCANBRIDGE, "stop"], env=service.env, cwd=ROOT, text=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))

    yield stop
    failed = []
    for service, proc in stopping:
        _, err = proc.communicate(timeout=60)
        if proc.returncode not in (0, 3):  # 3: it was not running any more
            failed.append(f"{service.home}: {err}")
    assert not failed, f"scanbridge stop failed: {failed}"


@contextmanager
def started(home: Path, stop_later):
    service = Service(home)
    quiet_sane(home)
    try:
        service.start()
        poll_for(lambda: actors_reported(service), 15, "all actors reported RUNNING")
        yield service
    finally:
        stop_later(service)


@pytest.fixture(scope="module")
def shared(tmp_path_factory, stop_later):
    """A running service that the tests using it do not disturb."""
    with started(tmp_path_factory.mktemp("shared"), stop_later) as service:
        yield service


@pytest.fixture(scope="module")
def scratch_service(tmp_path_factory, stop_later):
    with started(tmp_path_factory.mktemp("scratch"), stop_later) as service:
        yield service


@pytest.fixture
def scratch(scratch_service):
    """A running service that the test may restart and kill programs of."""
    poll_for(lambda: all_running(scratch_service), 30, "all programs RUNNING")
    yield scratch_service
    poll_for(lambda: all_running(scratch_service), 30, "all programs RUNNING again")


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """An operator's session in a fresh home; each step's CompletedProcess by name."""
    service = Service(tmp_path_factory.mktemp("lifecycle"))
    steps = {}
    try:
        for step in ("start", "status", "start again", "stop", "status after stop"):
            steps[step] = service.cli(step.split()[0])
    finally:
        service.stop()
    return service, steps


@contextmanager
def occupied_port():
    """A port another program listens on: it accepts and closes every connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = listener.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        listener.close()


# --- start, status, stop

def test_start_exits_0_and_names_the_welcome_page(lifecycle):
    service, steps = lifecycle
    done = steps["start"]
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Scanbridge started; welcome page: " \
                          f"http://127.0.0.1:{service.ports[1]}/, " \
                          f"https://127.0.0.1:{service.https_ports[1]}/\n"


def test_status_lists_broker_gateway_and_monitor_running(lifecycle):
    done = lifecycle[1]["status"]
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["PROGRAM", "STATE", "PID", "UPTIME", "RUNS"]
    for program in PROGRAMS:
        assert re.search(rf"^{listed(program)}\s+RUNNING\s+\d+\s+\d\d:\d\d:\d\d\s+always$",
                         done.stdout, re.M), done.stdout


def test_start_while_running_exits_1_saying_already_running(lifecycle):
    done = lifecycle[1]["start again"]
    assert done.returncode == 1
    assert "already running" in one_line(done.stderr)


def test_stop_exits_0_and_supervisord_is_gone(lifecycle):
    service, steps = lifecycle
    assert steps["stop"].returncode == 0, steps["stop"].stderr
    assert steps["stop"].stdout == "Scanbridge stopped\n"
    with pytest.raises(supervision.NotRunning):
        supervision.rpc(Home(service.home))


def test_status_after_stop_exits_3_with_one_line_naming_scanbridge_start(lifecycle):
    done = lifecycle[1]["status after stop"]
    assert done.returncode == 3
    assert done.stdout == ""
    assert "(start it with: scanbridge start)" in one_line(done.stderr)


def test_start_with_a_bad_ini_exits_78_with_one_line_and_starts_nothing(tmp_path):
    home = tmp_path / "home"
    service = Service(home)
    path = Home(home).ini / "DSConfiguration.ini"
    write_ini(home, "DSConfiguration.ini", BAD_PORTS)
    try:
        done = service.cli("start")
        assert done.returncode == 78
        assert done.stderr == f"scanbridge: configuration error: {path}:{BAD_PORTS_REASON}\n"
        assert done.stdout == ""
        assert not (home / "run").exists()
        with pytest.raises(supervision.NotRunning):
            supervision.rpc(Home(home))
    finally:
        service.stop()


def test_status_of_a_home_never_started_exits_3(tmp_path):
    done = scanbridge(tmp_path / "home", "status")
    assert done.returncode == 3
    assert "scanbridge start" in one_line(done.stderr)


def test_a_command_without_its_arguments_is_a_usage_error(tmp_path):
    done = scanbridge(tmp_path, "restart")
    assert done.returncode == 2
    assert one_line(done.stderr) == ("scanbridge restart: the following arguments are "
                                     "required: actor (see: scanbridge restart --help)")


# --- restart

def test_restart_gateway_gives_it_a_new_pid_and_it_runs(scratch):
    old = scratch.pid("gateway")
    done = scratch.cli("restart", "gateway")
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(r"restarted gateway \(pid (\d+)\)\n", done.stdout)
    assert match, done.stdout
    new = int(match.group(1))
    assert new != old
    info = scratch.processes()["gateway"]
    assert (info["statename"], info["pid"]) == ("RUNNING", new)
    poll_for(lambda: api_status(scratch).get("actors"), 10, "the new gateway to answer")


def test_restart_of_an_unknown_program_exits_2_naming_the_programs(shared):
    done = shared.cli("restart", "nosuch")
    assert done.returncode == 2
    assert one_line(done.stderr) == (
        "scanbridge: no program 'nosuch' (programs: barcode, broker, buffer, camera, "
        "certhelper, gateway, monitor, ocr, scanner, uploader)")


# --- logs

def test_logs_shows_the_last_lines_as_text(shared):
    done = shared.cli("logs", "gateway", "-n", "5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert 1 <= len(lines) <= 5
    assert "actor started" in done.stdout
    for line in lines:
        assert not line.startswith("{"), line
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (INFO|WARNING|ERROR|DEBUG)\s+"
                        r"gateway\[\d+\] ", line), line


def test_logs_raw_shows_the_json_lines(shared):
    done = shared.cli("logs", "gateway", "--raw", "-n", "5")
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stdout.splitlines()]
    assert entries and all(entry["actor"] == "gateway" for entry in entries)
    assert "actor started" in [entry["msg"] for entry in entries]


def test_logs_of_an_unknown_program_exits_2(shared):
    done = shared.cli("logs", "nosuch")
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "'nosuch'" in line and "gateway" in line


def test_logs_with_a_negative_count_is_a_usage_error(shared):
    done = shared.cli("logs", "gateway", "-n", "-1")
    assert done.returncode == 2
    one_line(done.stderr)


def test_logs_follow_prints_new_lines_as_they_come(shared):
    log = shared.home / "logs" / "monitor.log"
    marker = f"follow-test-{uuid.uuid4().hex[:8]}"
    follower = subprocess.Popen([*SCANBRIDGE, "logs", "monitor", "-f", "-n", "0"],
                                env=shared.env, cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout],
                              daemon=True)
    reader.start()
    try:
        # Lines written before the follower reached the end of the file are not shown
        # (-n 0), so write numbered lines until one comes through.
        seen = None
        end = time.monotonic() + 10
        number = 0
        while seen is None and time.monotonic() < end:
            number += 1
            with open(log, "a") as out:
                out.write(json.dumps({"ts": "2026-01-01T00:00:00.000Z", "level": "info",
                                      "actor": "monitor", "pid": 1,
                                      "msg": f"{marker} {number}"}) + "\n")
            try:
                while True:
                    line = lines.get(timeout=0.5)
                    if marker in line:
                        seen = line
                        break
            except queue.Empty:
                pass
        assert seen is not None, f"no followed line within 10 s ({follower.poll()=})"
        assert seen.startswith("2026-01-01T00:00:00.000Z INFO    monitor[1] " + marker)
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # Started in the background by a shell: SIGINT is ignored and so it is in
            # the follower too; end it as a service manager would.
            follower.terminate()
            assert follower.wait(timeout=10) == -signal.SIGTERM
        else:
            follower.send_signal(signal.SIGINT)  # Ctrl-C ends it cleanly
            assert follower.wait(timeout=10) == 0
        assert "Traceback" not in follower.stderr.read()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        follower.stdout.close()
        follower.stderr.close()


# --- dumps

def test_dumps_says_when_there_are_none(shared):
    done = shared.cli("dumps")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"no dumps in {shared.home.resolve() / 'dumps'}\n"


def test_a_killed_gateway_leaves_a_dump_that_dumps_lists_and_shows(scratch):
    before = set(scratch.dumps())
    pid = scratch.pid("gateway")
    os.kill(pid, signal.SIGKILL)
    new = poll_for(lambda: [p for p in scratch.dumps()
                            if p not in before and p.name.startswith("gateway-")],
                   20, "a gateway dump")
    assert len(new) == 1
    name = new[0].name

    listed = scratch.cli("dumps")
    assert listed.returncode == 0, listed.stderr
    line = next(x for x in listed.stdout.splitlines() if x.endswith(name))
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  gateway\s+\d+ B  ", line), line

    for given in (name, name.removesuffix(".dump")):
        shown = scratch.cli("dumps", "--show", given)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith("Scanbridge dump: gateway crash\n")
        assert "terminated by SIGKILL" in shown.stdout
        assert "actor started" in shown.stdout  # the last log lines are in it
    scratch.wait_running("gateway", other_than=pid)


def test_dumps_show_of_an_unknown_dump_exits_2(shared):
    done = shared.cli("dumps", "--show", "nosuch")
    assert done.returncode == 2
    assert "'nosuch'" in one_line(done.stderr)


# --- call

def test_call_monitor_status_prints_the_programs_as_json(shared):
    done = shared.cli("call", "monitor", "status")
    assert done.returncode == 0, done.stderr
    programs = {p["name"]: p for p in json.loads(done.stdout)["programs"]}
    assert set(programs) == {*map(listed, PROGRAMS), "camera", "scanner"}
    assert all(programs[listed(name)]["state"] == "RUNNING" and programs[listed(name)]["pid"]
               and not programs[listed(name)]["ondemand"] for name in PROGRAMS)
    for name in ("camera", "scanner"):
        assert programs[name]["ondemand"] and programs[name]["state"] == "STOPPED", name


def test_call_broker_services_lists_the_actors(shared):
    done = shared.cli("call", "broker", "services")
    assert done.returncode == 0, done.stderr
    services = json.loads(done.stdout)["services"]
    assert {"monitor", "gateway"} <= set(services)
    assert services["gateway"]["workers"][0]["pid"] == shared.pid("gateway")


def test_call_of_an_unknown_op_exits_1_with_one_line(shared):
    done = shared.cli("call", "monitor", "nosuch")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "unknown_op" in one_line(done.stderr)


@pytest.mark.parametrize("argument", ["{bad", "[1]", "1", '"text"'])
def test_call_with_an_argument_that_is_not_a_json_object_exits_2(shared, argument):
    done = shared.cli("call", "monitor", "status", argument)
    assert done.returncode == 2
    assert "JSON" in one_line(done.stderr)


def test_call_in_a_home_never_started_exits_3(tmp_path):
    done = scanbridge(tmp_path / "home", "call", "monitor", "status", timeout=20)
    assert done.returncode == 3
    assert "scanbridge start" in one_line(done.stderr)


def test_call_after_the_service_stopped_exits_3(lifecycle):
    service, _ = lifecycle
    done = service.cli("call", "monitor", "status", "--timeout", "1")
    assert done.returncode == 3, done.stderr


# --- allow

def test_allow_writes_the_origin_so_that_the_config_has_it(tmp_path):
    home = tmp_path / "home"
    (home / "ini").mkdir(parents=True)
    done = scanbridge(home, "allow", "https://app.example.com")
    assert done.returncode == 0, done.stderr
    path = Home(home).ini / "user_config.ini"
    assert done.stdout == f"allowed: https://app.example.com (in {path})\n"
    assert load(Home(home)).access.allowed_origins == ["https://app.example.com"]

    again = scanbridge(home, "allow", "HTTPS://App.Example.com:443/")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("already allowed: https://app.example.com")

    other = scanbridge(home, "allow", "http://localhost:3000")
    assert other.returncode == 0, other.stderr
    assert load(Home(home)).access.allowed_origins == [
        "https://app.example.com", "http://localhost:3000"]


def test_allow_keeps_the_comments_and_other_lines_of_user_config(tmp_path):
    home = tmp_path / "home"
    text = ("; my installation\n\n[access]\n# who may use it\n"
            "allowed_origins = https://a.example.com,\n    https://b.example.com\n"
            "; end of access\n")
    write_ini(home, "user_config.ini", text)
    done = scanbridge(home, "allow", "https://c.example.com")
    assert done.returncode == 0, done.stderr
    written = (home / "ini" / "user_config.ini").read_text()
    for comment in ("; my installation", "# who may use it", "; end of access"):
        assert comment in written
    assert load(Home(home)).access.allowed_origins == [
        "https://a.example.com", "https://b.example.com", "https://c.example.com"]


def test_allow_adds_the_access_section_to_a_file_without_it(tmp_path):
    home = tmp_path / "home"
    write_ini(home, "user_config.ini", "; nothing here yet\n")
    done = scanbridge(home, "allow", "https://app.example.com")
    assert done.returncode == 0, done.stderr
    assert (home / "ini" / "user_config.ini").read_text().startswith("; nothing here yet\n")
    assert load(Home(home)).access.allowed_origins == ["https://app.example.com"]


@pytest.mark.parametrize("origin", ["not-an-origin", "https://x.com/path", "ftp://x.com",
                                    "https://user@x.com", "https://x.com?q=1"])
def test_allow_of_something_that_is_not_an_origin_exits_2_and_writes_nothing(tmp_path, origin):
    home = tmp_path / "home"
    (home / "ini").mkdir(parents=True)
    done = scanbridge(home, "allow", origin)
    assert done.returncode == 2
    assert repr(origin) in one_line(done.stderr)
    assert not (home / "ini" / "user_config.ini").exists()


def test_allow_with_a_bad_user_config_exits_78_and_leaves_it_alone(tmp_path):
    home = tmp_path / "home"
    text = "[access]\nallowed_origins = ftp://old.example.com\n"
    write_ini(home, "user_config.ini", text)
    done = scanbridge(home, "allow", "https://app.example.com")
    assert done.returncode == 78
    assert one_line(done.stderr).startswith(
        f"scanbridge: configuration error: {Home(home).ini / 'user_config.ini'}:2: ")
    assert (home / "ini" / "user_config.ini").read_text() == text


def test_allow_in_a_home_that_was_never_started_creates_user_config(tmp_path):
    home = tmp_path / "home"
    done = scanbridge(home, "allow", "https://app.example.com")
    assert done.returncode == 0, done.stderr
    assert load(Home(home)).access.allowed_origins == ["https://app.example.com"]


def test_allow_replaces_an_allowed_origins_line_written_with_a_colon(tmp_path):
    home = tmp_path / "home"
    write_ini(home, "user_config.ini", "[access]\nallowed_origins: https://a.example.com\n")
    done = scanbridge(home, "allow", "https://b.example.com")
    assert done.returncode == 0, done.stderr
    assert load(Home(home)).access.allowed_origins == [
        "https://a.example.com", "https://b.example.com"]


# --- doctor

def doctor_lines(done: subprocess.CompletedProcess, level: str) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.startswith(level)]


def test_doctor_on_the_running_service_finds_it_answering_on_both_ports(shared):
    done = shared.cli("doctor")
    failures = doctor_lines(done, "FAIL")
    # The only problem a healthy service may have here is one of the test machine.
    assert all("system packages missing" in line for line in failures), done.stdout
    assert done.returncode == (1 if failures else 0), done.stdout
    oks = doctor_lines(done, "ok")
    assert f"ok    configuration in {shared.home.resolve() / 'ini'} is valid" in oks
    assert "ok    service running (8 of 10 programs; the others start on demand)" in oks
    for port in shared.ports:
        assert f"ok    port {port}: Scanbridge answers" in oks


def test_doctor_names_a_port_used_by_another_program(tmp_path):
    home = tmp_path / "home"
    quiet_sane(home)
    free = free_port()
    with occupied_port() as taken:
        write_ini(home, "DSConfiguration.ini", f"[ports]\nhttp = {taken}, {free}\n")
        done = scanbridge(home, "doctor")
    assert done.returncode == 1, done.stdout
    assert any(line.startswith(f"FAIL  port {taken}: used by another program")
               for line in done.stdout.splitlines()), done.stdout
    assert f"ok    port {free}: free" in done.stdout
    assert "fix: stop that program, or set other ports in" in done.stdout


def test_doctor_prints_the_file_line_message_of_a_bad_ini(tmp_path):
    home = tmp_path / "home"
    quiet_sane(home)
    write_ini(home, "DSConfiguration.ini", BAD_PORTS)
    done = scanbridge(home, "doctor")
    assert done.returncode == 1
    path = Home(home).ini / "DSConfiguration.ini"
    assert f"FAIL  configuration: {path}:{BAD_PORTS_REASON}\n" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# --- supervisorctl, for ops scripts

def test_supervisorctl_status_lists_the_programs_running(shared):
    done = shared.supervisorctl("status")
    # supervisorctl says 3 when a program is not running: the scanner waits for a session.
    assert done.returncode == 3, done.stderr
    assert re.search(r"^scanner\s+STOPPED", done.stdout, re.M), done.stdout
    for program in PROGRAMS:
        assert re.search(rf"^{listed(program)}\s+RUNNING\s+pid \d+", done.stdout, re.M), \
            done.stdout


def test_supervisorctl_tail_prints_the_log(shared):
    done = shared.supervisorctl("tail", "gateway")
    assert done.returncode == 0, done.stderr
    assert "actor started" in done.stdout


def test_supervisorctl_restart_restarts_the_monitor(scratch):
    old = scratch.pid("monitor")
    done = scratch.supervisorctl("restart", "monitor")
    assert done.returncode == 0, done.stderr
    assert "monitor: stopped" in done.stdout and "monitor: started" in done.stdout
    assert scratch.wait_running("monitor", other_than=old) != old


# --- the gateway's pages

def test_the_welcome_page_on_both_ports_names_the_service_version_and_actors(shared):
    for port in shared.ports:
        status, headers, body = shared.get("/", port=port)
        assert status == 200, port
        assert headers["Content-Type"].startswith("text/html")
        page = body.decode()
        assert "<title>Scanbridge</title>" in page
        assert f"version {__version__}" in page
        for program in PROGRAMS:
            assert f"<td>{listed(program)}</td>" in page, program


def test_every_link_of_the_welcome_page_answers(shared):
    page = shared.get("/")[2].decode()
    links = re.findall(r'href="(/[^"]*)"', page)
    assert {"/demo/", "/scanbridge.js", "/api/v1/openapi.json", "/docs/",
            "/docs/security.md"} <= set(links)
    for link in links:
        status, headers, body = shared.get(link)
        assert status == 200 and body, link
    assert shared.get("/docs/../setup.cfg")[0] == 404
    assert shared.get("/docs/nothing.md")[0] == 404


def test_api_status_reports_every_actor_running(shared):
    status, headers, body = shared.get("/api/v1/status")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    result = json.loads(body)
    assert result["version"] == __version__
    assert result["broker"] == "RUNNING"
    for program in PROGRAMS:
        assert result["actors"][listed(program)]["state"] == "RUNNING", program
        assert result["actors"][listed(program)]["pid"] == shared.pid(program)


def test_a_request_with_a_foreign_host_is_forbidden(shared):
    status, headers, body = shared.get("/api/v1/status", headers={"Host": "evil.example"})
    assert status == 403
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == "forbidden"
    assert "evil.example" in error["message"]


def test_an_unknown_path_is_a_json_not_found(shared):
    status, headers, body = shared.get("/no/such/page")
    assert status == 404
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "not_found"
