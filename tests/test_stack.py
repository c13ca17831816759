"""The whole service under supervisord: crashes, hangs, restarts, dumps, on-demand programs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from broker import supervision
from broker.client import Client
from broker.config import Home
from broker.procutil import pid_alive
from broker.protocol import Error
from tests.support.service import SCANBRIDGE, Service, running, started
from tests.support.stack import ROOT, poll_for, workers

ECHO_PROGRAM = f"""
[program:echo]
command = %(ENV_SCANBRIDGE_PYTHON)s -m tests.support.echo
directory = {ROOT}
environment = PYTHONPATH="{ROOT}"
autostart = false
autorestart = true
startsecs = 0
stopwaitsecs = 10
redirect_stderr = true
stdout_logfile = %(ENV_SCANBRIDGE_HOME)s/logs/echo.log
"""


@pytest.fixture
def service(tmp_path):
    yield from started(tmp_path)


@pytest.fixture
def echo_service(tmp_path):
    """The service with an extra on-demand program ``echo`` (2 s idle stop)."""
    svc = Service(tmp_path, extra_ini="[ondemand]\nprograms = echo\necho_idle_stop = 2\n"
                                      "[monitor]\ndump_count = 3\n")
    (tmp_path / "supervisor.d").mkdir()
    (tmp_path / "supervisor.d" / "echo.conf").write_text(ECHO_PROGRAM)
    yield from running(svc)


def dump_for(svc: Service, program: str, kind: str, timeout: float = 10) -> str:
    def find():
        for path in svc.dumps():
            text = path.read_text()
            if path.name.startswith(f"{program}-") and text.startswith(
                    f"Scanbridge dump: {program} {kind}"):
                return text
        return None
    return poll_for(find, timeout, f"a {kind} dump of {program}")


def failed_call(client: Client, op: str, timeout: float) -> tuple[int, Error]:
    """Start the on-demand echo program (a whoami), then call its ``op``, which fails: (the
    program's pid, the error)."""
    pid = client.call("echo", "whoami", timeout=15)["pid"]
    with pytest.raises(Error) as err:
        client.call("echo", op, timeout=timeout)
    return pid, err.value


def test_all_programs_run_and_the_broker_knows_the_actors(service):
    processes = service.processes()
    assert {name: p["statename"] for name, p in processes.items()} == {
        "barcode": "RUNNING", "broker": "RUNNING", "buffer": "RUNNING",
        "certhelper": "RUNNING", "gateway": "RUNNING", "monitor": "RUNNING",
        "ocr_00": "RUNNING", "uploader": "RUNNING",
        "camera": "STOPPED", "scanner": "STOPPED"}  # on demand: they wait for a session
    with service.client() as client:
        poll_for(lambda: all(workers(client, name) for name in ("monitor", "gateway", "buffer")),
                 10, "monitor, gateway and buffer registered")
    assert oct((service.home / "run").stat().st_mode & 0o777) == "0o700"
    assert oct((service.home / "run" / "supervisor.sock").stat().st_mode & 0o077) == "0o0"


@pytest.mark.parametrize("program", ["gateway", "monitor", "broker"])
def test_a_killed_actor_runs_again_and_leaves_a_dump_naming_the_signal(service, program):
    old = service.pid(program)
    os.kill(old, signal.SIGKILL)
    new = service.wait_running(program, other_than=old)
    assert new != old
    text = dump_for(service, program, "crash")
    assert "exit: terminated by SIGKILL" in text
    assert "signal: SIGKILL" in text
    assert f"last 200 lines of {service.home}/logs/{program}.log" in text
    assert '"actor started"' in text or '"broker started"' in text


def test_actors_register_again_after_the_broker_is_killed(service):
    with service.client() as client:
        poll_for(lambda: workers(client, "gateway"), 10, "gateway registered")
        old = service.pid("broker")
        os.kill(old, signal.SIGKILL)
        service.wait_running("broker", other_than=old)
        poll_for(lambda: workers(client, "gateway") and workers(client, "monitor"), 15,
                 "gateway and monitor registered with the new broker")
    status, _, body = service.get("/api/v1/status")
    assert status == 200 and b'"RUNNING"' in body


def test_a_stopped_actor_gets_a_stack_dump_and_is_restarted_within_5_seconds(tmp_path):
    service = Service(tmp_path, heartbeat=1.0)  # the default heartbeat settings
    service.start()
    try:
        stopped_actor_is_dumped_and_restarted(service)
    finally:
        service.stop()


def stopped_actor_is_dumped_and_restarted(service: Service) -> None:
    home = Home(service.home)
    old = service.pid("gateway")

    def new_gateway():
        info = next(p for p in supervision.processes(home) if p["name"] == "gateway")
        return info["pid"] not in (0, old) and info["statename"] in ("STARTING", "RUNNING")

    stopped_at = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        poll_for(new_gateway, 10, "a new gateway process")
        restarted_after = time.monotonic() - stopped_at
    finally:
        try:
            os.kill(old, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert restarted_after < 5, f"restarted {restarted_after:.1f} s after the hang"
    new = service.wait_running("gateway", other_than=old)
    text = dump_for(service, "gateway", "hang")
    assert f"pid: {old}" in text
    assert "Current thread" in text or "Thread 0x" in text, "no Python stacks in the dump"
    assert "_loop" in text, "the main loop's frame is missing from the stack dump"
    # The kill that restarted it is ours: no second (crash) dump for it.
    time.sleep(1.0)
    assert not [p for p in service.dumps() if "crash" in p.read_text().split("\n")[0]]
    assert new != old


def test_a_segfault_dump_holds_the_fault_handler_traceback(echo_service):
    with echo_service.client() as client:
        pid, error = failed_call(client, "segfault", timeout=10)
        assert error.code == "actor_died"
    text = dump_for(echo_service, "echo", "crash")
    assert "terminated by SIGSEGV" in text
    assert "Fatal Python error: Segmentation fault" in text
    assert "in segfault" in text
    assert not list((echo_service.home / "dumps").glob(f".echo.{pid}.fault"))


def test_a_handler_stuck_past_its_deadline_counts_as_a_hang(echo_service):
    with echo_service.client() as client:
        old, error = failed_call(client, "deadlock", timeout=1)
        assert error.code in ("timeout", "actor_died")
        text = dump_for(echo_service, "echo", "hang", timeout=10)
        assert "in deadlock" in text
        assert client.call("echo", "whoami", timeout=15)["pid"] != old


def test_an_on_demand_program_starts_for_a_request_and_stops_when_idle(echo_service):
    assert echo_service.processes()["echo"]["statename"] == "STOPPED"
    with echo_service.client() as client:
        result = client.call("echo", "whoami", timeout=15)
        assert result["pid"] == echo_service.pid("echo")
        poll_for(lambda: echo_service.processes()["echo"]["statename"] == "STOPPED", 10,
                 "echo stopped after being idle")


def test_a_held_on_demand_program_keeps_running_until_released(echo_service):
    with echo_service.client() as client:
        held = client.call("monitor", "hold", {"program": "echo", "holder": "session-1"})
        assert held == {"program": "echo", "holders": ["session-1"]}
        pid = echo_service.wait_running("echo")
        time.sleep(3.5)  # longer than echo_idle_stop
        assert echo_service.processes()["echo"]["pid"] == pid
        client.call("monitor", "release", {"program": "echo", "holder": "session-1"})
        poll_for(lambda: echo_service.processes()["echo"]["statename"] == "STOPPED", 10,
                 "echo stopped after release")
        with pytest.raises(Error) as err:
            client.call("monitor", "hold", {"program": "gateway", "holder": "x"})
        assert err.value.code == "invalid_argument"


def test_requests_wait_while_an_actor_restarts(echo_service):
    with echo_service.client() as client:
        old = client.call("echo", "whoami", timeout=15)["pid"]
        answers = []

        def ask():
            with echo_service.client() as other:
                answers.append(other.call("echo", "whoami", timeout=20, idempotent=True))

        os.kill(old, signal.SIGKILL)
        thread = threading.Thread(target=ask)
        thread.start()
        thread.join(25)
        assert answers and answers[0]["pid"] != old


def test_dumps_are_rotated_to_the_configured_count(echo_service):
    monitor_log = echo_service.home / "logs" / "monitor.log"

    def written() -> int:
        return monitor_log.read_text().count('"dump written"')

    with echo_service.client() as client:
        for number in range(1, 6):
            pid = client.call("echo", "whoami", timeout=15)["pid"]
            os.kill(pid, signal.SIGKILL)
            poll_for(lambda n=number: written() == n, 10, f"dump number {number}")
    paths = [json.loads(line)["path"] for line in monitor_log.read_text().splitlines()
             if '"dump written"' in line]
    assert len(paths) == 5
    kept = echo_service.dumps()
    assert [str(p) for p in kept] == sorted(paths[-3:]), "not the newest three"
    assert all("terminated by SIGKILL" in path.read_text() for path in kept)


def test_run_in_the_foreground_stops_every_program_cleanly_on_ctrl_c(tmp_path):
    svc = Service(tmp_path)
    runner = subprocess.Popen([*SCANBRIDGE, "run"], env=svc.env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        def answers() -> bool:
            try:
                return svc.get("/api/v1/status")[0] == 200
            except OSError:  # not listening yet
                return False
        poll_for(answers, 20, "the status page", every=0.2)
        poll_for(lambda: len(json.loads(svc.get("/api/v1/status")[2])["actors"]) == 10, 10,
                 "ten programs reported")
        status = json.loads(svc.get("/api/v1/status")[2])
        pids = [info["pid"] for info in status["actors"].values() if info["pid"]]
        assert len(pids) == 8  # scanner and camera run on demand: nobody opened a session
        os.killpg(runner.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        output, _ = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:  # a failed test: let supervisord stop its programs first
            os.killpg(runner.pid, signal.SIGTERM)
            try:
                runner.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
                runner.wait()
    assert runner.returncode == 0, output
    assert "welcome page: http://127.0.0.1:" in output
    assert not [pid for pid in pids if pid_alive(pid)], "programs left running"
    log = (tmp_path / "logs" / "supervisord.log").read_text()
    for program in ("gateway", "uploader", "barcode", "ocr_00", "certhelper", "buffer",
                    "monitor", "broker"):
        assert f"stopped: {program} (exit status 0)" in log
    assert not list((tmp_path / "dumps").iterdir()), "clean exits leave no fault files"


def test_call_sends_files_as_blobs_and_writes_the_reply_blobs(echo_service, tmp_path):
    page = tmp_path / "page.bin"
    page.write_bytes(os.urandom(300_000))
    out = tmp_path / "reply.bin"
    done = echo_service.cli("call", "echo", "echo", '{"a": 1}', "--blob", str(page),
                            "--out", str(out), "--timeout", "20")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["args"] == {"a": 1}
    assert out.read_bytes() == page.read_bytes()
    missing = echo_service.cli("call", "echo", "echo", "--blob", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.startswith(f"scanbridge: cannot read {tmp_path / 'nope'}")


def test_start_names_the_gateway_when_its_port_is_taken(tmp_path):
    svc = Service(tmp_path)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", svc.ports[0]))
    squatter.listen()
    try:
        done = svc.cli("start")
        assert done.returncode == 1
        # Which one depends on whether the gateway fails within supervisord's startsecs.
        assert ("these programs do not run: gateway" in done.stderr
                or "the gateway does not answer on 127.0.0.1 ports" in done.stderr), done.stderr
        log = (tmp_path / "logs" / "gateway.log").read_text()
        assert f"cannot listen on 127.0.0.1 port {svc.ports[0]}" in log
        assert "Traceback" not in done.stderr
    finally:
        squatter.close()
        svc.stop()


def test_an_actor_whose_main_loop_stalls_is_ended_by_its_watchdog(tmp_path):
    # The monitor guards itself this way ([monitor] watchdog); the echo actor shows the
    # mechanism with a main loop that really stalls (a deadlock on its main thread).
    svc = Service(tmp_path, extra_ini="[ondemand]\nprograms = echo\n")
    (tmp_path / "supervisor.d").mkdir()
    (tmp_path / "supervisor.d" / "echo.conf").write_text(
        ECHO_PROGRAM.replace("tests.support.echo", "tests.support.echo --watchdog 2"))
    svc.start()
    try:
        with svc.client() as client:
            old, error = failed_call(client, "deadlock", timeout=20)
            assert error.code == "actor_died"
            text = dump_for(svc, "echo", "crash")
            assert "exit: exit status 1" in text, text
            assert "Timeout (0:00:02)!" in text, text
            assert "in deadlock" in text, text
            assert client.call("echo", "whoami", timeout=15)["pid"] != old
    finally:
        svc.stop()


def test_the_monitor_ignores_a_hang_report_about_itself_once_it_runs_again(service):
    old = service.pid("monitor")
    os.kill(old, signal.SIGSTOP)
    time.sleep(2.5)  # the broker reports it hung (heartbeat 0.5 s x 3)
    os.kill(old, signal.SIGCONT)
    poll_for(lambda: "the broker saw the monitor hung" in
             (service.home / "logs" / "monitor.log").read_text(), 10, "the monitor's note")
    time.sleep(1.0)
    assert service.pid("monitor") == old
    # What this is about: no dump and no restart of the monitor for a hang report about
    # itself. (Another actor's heartbeats are not this test's business: on a loaded
    # 2-core machine one can miss the 1.5 s of this fast-heartbeat service.)
    ours = [path for path in service.dumps() if path.name.startswith("monitor-")]
    assert not ours, [path.read_text()[:2000] for path in service.dumps()]
