"""`scanbridge` driven like an operator would, against the real service in a temp home:
call, allow, doctor, and the gateway's pages as the started service serves them.

The services and what runs them: tests/support/cli.py.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from broker import __version__
from broker.config import Home, load
from tests.support.cli import (BAD_PORTS, BAD_PORTS_REASON, PROGRAMS, listed, occupied_port,
                               one_line, quiet_sane, scanbridge)
from tests.support.cli import lifecycle, shared, stop_later  # fixtures
from tests.support.stack import free_port, write_ini


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
