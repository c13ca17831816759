"""`scanbridge` driven like an operator would, against the real service in a temp home:
start, status and stop, failures to start, restart, logs, dumps, supervisorctl.

The services and what runs them: tests/support/cli.py.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import threading
import time
import uuid

import pytest

from broker import supervision
from broker.config import Home
from tests.support.cli import (BAD_PORTS, BAD_PORTS_REASON, PROGRAMS, api_status, listed, one_line,
                               scanbridge)
from tests.support.cli import lifecycle, scratch, scratch_service, shared, stop_later  # fixtures
from tests.support.service import SCANBRIDGE, Service
from tests.support.stack import ROOT, poll_for, write_ini


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
