"""The certificate helper's renewals and bad starts, against the real service.

Renewal of an aging local certificate, with the default validity and with a
``[certhelper]`` validity override; doctor on a private key others can read; start-up
refusing bad ``[certhelper]``/``[ports] https`` settings (exit status 78); an unwritable
``cert/`` (HTTP still served, reported by status, welcome page and doctor); a corrupt
operator certificate at a first start; a corrupt CA moved aside and replaced; an HTTPS
port held by another program. Special settings and start-up cases run their own service.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import time

import pytest
from cryptography import x509

from actors.certhelper import authority
from common import certs
from tests.support.certhelper import (GARBAGE, LOOPBACK, WAIT, cert_dir, doctor_lines, handshake,
                                      helper_status, home_ca, https_paragraph, leaf, mode, served,
                                      sha, status, trusting, wait_log, wait_served,
                                      wait_served_other_than, welcome, write_local)
from tests.support.certhelper import service  # fixtures
from tests.support.service import Service
from tests.support.stack import poll_for, write_ini

pytestmark = pytest.mark.timeout(120)


# --- renewal


def test_doctor_fails_on_a_private_key_others_can_read(service):
    key = cert_dir(service) / "local_key.pem"
    assert not [line for line in doctor_lines(service) if str(key) in line]
    key.chmod(0o644)
    try:
        lines = doctor_lines(service)
    finally:
        key.chmod(0o600)
    assert f"FAIL  {key} holds a private key and is readable by others (mode 644)" in lines
    assert f"      fix: chmod 600 {key}" in lines


def test_an_aging_local_certificate_is_renewed_without_a_restart(service):
    folder = cert_dir(service)
    wait_served(service, sha(leaf(folder / "local.pem")))
    before = sha(leaf(folder / "active.pem"))
    gateway = service.pid("gateway")
    aged = authority.issue_server(home_ca(service), days=10)
    write_local(service, aged)
    renewed = wait_served_other_than(service, before, sha(aged.leaf))
    local = leaf(folder / "local.pem")
    assert renewed == sha(local) == sha(leaf(folder / "active.pem"))
    assert certs.describe(local)["days_left"] > 390
    local.verify_directly_issued_by(leaf(folder / "ca.pem"))
    https = status(service)["https"]
    assert https["sha256"] == renewed and https["days_left"] > 390
    wait_log(service, lambda x: x["msg"] == "issued the server certificate"
             and "expires in 9 days" in x.get("reason", ""), "the renewal with its reason")
    assert service.pid("gateway") == gateway, "the gateway restarted"
    assert handshake(service.https_ports[0], trusting(folder / "ca.pem"), "localhost")[0] == \
        renewed


SHORT_INI = "[certhelper]\nserver_days = 45\nrenew_days = 40\n"


def test_a_validity_override_is_used_and_renews_only_inside_renew_days(tmp_path):
    svc = Service(tmp_path / "home", extra_ini=SHORT_INI)
    svc.start()
    try:
        folder = cert_dir(svc)
        first = leaf(folder / "local.pem")
        assert first.not_valid_after_utc - first.not_valid_before_utc == dt.timedelta(days=45)
        wait_served(svc, sha(first))
        assert status(svc)["https"]["days_left"] == 44
        ca = home_ca(svc)
        half_day_ago = certs.now() - dt.timedelta(hours=12)

        keep = authority.issue_server(ca, days=45, at=half_day_ago)  # 44 days left
        assert certs.describe(keep.leaf)["days_left"] == 44
        write_local(svc, keep)
        wait_served(svc, sha(keep.leaf))  # taken as it is
        with svc.client() as client:
            client.call("certhelper", "refresh", timeout=10)
        assert sha(leaf(folder / "local.pem")) == sha(keep.leaf)
        issued = [x for x in svc.log_records("certhelper")
                  if x["msg"] == "issued the server certificate"]
        assert len(issued) == 1, issued  # the first start's only

        renew = authority.issue_server(ca, days=40, at=half_day_ago)  # 39 days left
        assert certs.describe(renew.leaf)["days_left"] == 39
        write_local(svc, renew)
        fresh = wait_served_other_than(svc, sha(keep.leaf), sha(renew.leaf))
        local = leaf(folder / "local.pem")
        assert sha(local) == fresh
        assert local.not_valid_after_utc - local.not_valid_before_utc == dt.timedelta(days=45)
        assert certs.describe(local)["days_left"] == 44
        wait_log(svc, lambda x: x["msg"] == "issued the server certificate"
                 and "expires in 39 days" in x.get("reason", ""), "the renewal at 39 days")
    finally:
        svc.stop()


# --- configuration


def ini_line(svc: Service, startswith: str) -> int:
    lines = (svc.home / "ini" / "DSConfiguration.ini").read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if text.startswith(startswith))


@pytest.mark.parametrize("extra, key, line_start", [
    ("[certhelper]\nrenew_days = 400\n", "renew_days", "renew_days"),
    ("[certhelper]\nserver_days = 45\nrenew_days = 45\n", "renew_days", "renew_days"),
    ("[certhelper]\nrenew_days = 60\nserver_days = 50\n", "renew_days", "renew_days"),
    ("", "https", "https"),
], ids=["renew-days-over-396", "renew-equals-server-days", "renew-over-server-days",
        "https-port-is-an-http-port"])
def test_bad_https_settings_fail_start_with_status_78_naming_the_line(tmp_path, extra, key,
                                                                      line_start):
    svc = Service(tmp_path / "home", extra_ini=extra)
    if key == "https":
        path = svc.home / "ini" / "DSConfiguration.ini"
        text = path.read_text()
        write_ini(svc.home, "DSConfiguration.ini",
                  re.sub(r"^https = .*$", f"https = {svc.https_ports[0]}, {svc.ports[0]}", text,
                         flags=re.M))
    try:
        done = svc.cli("start")
        assert done.returncode == 78, (done.returncode, done.stdout, done.stderr)
        number = ini_line(svc, line_start)
        assert f"DSConfiguration.ini:{number}: {key}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        with pytest.raises(ConnectionRefusedError):  # nothing was started
            socket.create_connection(("127.0.0.1", svc.ports[0]), timeout=5).close()
    finally:
        svc.stop()


# --- bad cert/ folders at start


@pytest.fixture(scope="module")
def no_cert_folder(tmp_path_factory):
    """A service whose cert/ cannot be written: (service, result of scanbridge start)."""
    svc = Service(tmp_path_factory.mktemp("home"))
    folder = cert_dir(svc)
    # Root passes file modes: a procfs folder is unwritable even for root.
    os.symlink("/proc/1/fdinfo", folder)
    try:
        done = svc.cli("start", timeout=90)
        try:
            yield svc, done
        finally:
            svc.stop()
    finally:
        folder.unlink()


def test_an_unwritable_cert_folder_does_not_fail_the_start_but_is_warned_about(
        no_cert_folder):
    svc, done = no_cert_folder
    assert done.returncode == 0, (done.stdout, done.stderr)
    warning = [x for x in done.stderr.splitlines() if "warning" in x]
    assert any(str(cert_dir(svc)) in x and "HTTPS" in x for x in warning), done.stderr
    assert svc.processes()["gateway"]["statename"] == "RUNNING"
    for port in svc.https_ports:
        with pytest.raises(OSError):
            served(port)


def test_an_unwritable_cert_folder_keeps_the_certhelper_running(no_cert_folder):
    svc, _ = no_cert_folder
    pid = svc.wait_running("certhelper")
    time.sleep(3)  # a crash loop would show as another pid or state by now
    info = svc.processes()["certhelper"]
    assert info["statename"] == "RUNNING" and info["pid"] == pid, info
    line = wait_log(svc, lambda x: x["msg"] == "certificates not ready", "the problem")
    assert str(cert_dir(svc)) in line["problem"], line


def test_an_unwritable_cert_folder_is_reported_by_doctor(no_cert_folder):
    svc, _ = no_cert_folder
    fails = [x for x in doctor_lines(svc) if x.startswith("FAIL")]
    assert any(str(cert_dir(svc)) in x and "not writable" in x for x in fails), fails


def test_an_unwritable_cert_folder_leaves_http_serving_a_page_that_says_https_is_not_served(
        no_cert_folder):
    svc, _ = no_cert_folder
    page = welcome(svc)
    section = page.split("<h2>HTTPS</h2>", 1)[1].split("<h2>", 1)[0]
    assert "is not served" in section, section
    # Like the served case, the page's HTTPS status is the paragraph with id="https".
    paragraph = https_paragraph(page)
    assert "not served" in paragraph and str(cert_dir(svc)) in paragraph, paragraph


def test_an_unwritable_cert_folder_is_named_in_api_status(no_cert_folder):
    svc, _ = no_cert_folder
    https = status(svc)["https"]
    assert https["served"] is False
    assert https["ports"] == svc.https_ports
    assert str(cert_dir(svc)) in https["error"], https


def test_the_certhelper_status_operation_answers_with_an_unwritable_cert_folder(
        no_cert_folder):
    svc, _ = no_cert_folder
    answer = helper_status(svc)
    assert str(cert_dir(svc)) in answer["problem"], answer
    assert answer["active"] is None


def test_a_corrupt_operator_certificate_at_first_start_leaves_the_local_one_served(tmp_path):
    svc = Service(tmp_path / "home")
    folder = cert_dir(svc)
    folder.mkdir(mode=0o700)
    (folder / "server_key.pem").write_bytes(authority.issue_server(
        authority.create_ca(), 90).key_pem)
    (folder / "server.pem").write_bytes(GARBAGE)
    svc.start()
    try:
        local = sha(leaf(folder / "local.pem"))
        wait_served(svc, local)
        for address, name in LOOPBACK:
            assert handshake(svc.https_ports[0], trusting(folder / "ca.pem"), name,
                             address)[0] == local
        assert status(svc)["https"]["source"] == "local"
        operator = helper_status(svc)["operator"]
        assert operator["state"] == "rejected" and "not a PEM certificate" in operator["reason"]
        line = wait_log(svc, lambda x: "rejected" in x["msg"], "the rejection")
        assert "server.pem" in line["reason"] and "local" in line["serving"]
    finally:
        svc.stop()


def test_a_corrupt_ca_is_moved_aside_and_replaced(tmp_path):
    svc = Service(tmp_path / "home")
    folder = cert_dir(svc)
    folder.mkdir(mode=0o700)
    old_key = authority.create_ca().key_pem  # the key survived, the certificate did not
    (folder / "ca_key.pem").write_bytes(old_key)
    (folder / "ca_key.pem").chmod(0o600)
    (folder / "ca.pem").write_bytes(GARBAGE)
    svc.start()
    try:
        aside = list(folder.glob("ca.pem.bad-*"))
        assert len(aside) == 1 and aside[0].read_bytes() == GARBAGE, aside
        key_aside = list(folder.glob("ca_key.pem.bad-*"))
        assert len(key_aside) == 1 and key_aside[0].read_bytes() == old_key, key_aside
        ca = home_ca(svc)
        assert ca.key_pem != old_key
        assert ca.leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert mode(folder / "ca_key.pem") == 0o600
        local = sha(leaf(folder / "local.pem"))
        wait_served(svc, local)
        for address, name in LOOPBACK:
            assert handshake(svc.https_ports[1], trusting(folder / "ca.pem"), name,
                             address)[0] == local
        line = wait_log(svc, lambda x: x["msg"] == "created the local CA", "the CA replaced")
        assert "ca.pem: not a PEM certificate" in line["reason"], line
        assert "moved aside" in line["reason"] and line["subject"] == certs.common_name(ca.leaf)
    finally:
        svc.stop()


@pytest.mark.parametrize("taken", ["127.0.0.1", "::1"])  # the first or second bind address
def test_an_https_port_held_by_another_program_is_served_once_it_is_free(tmp_path, taken):
    svc = Service(tmp_path / "home")
    busy, free = svc.https_ports
    holder = socket.socket(socket.AF_INET6 if ":" in taken else socket.AF_INET)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind((taken, busy))
    holder.listen()
    try:
        svc.start()
        https = poll_for(lambda: (s := status(svc)["https"]).get("listening") and s, WAIT,
                         "HTTPS on the free port")
        assert https["served"] is True and https["listening"] == [free], https
        assert str(busy) in https["error"], https
        assert served(free) == sha(leaf(cert_dir(svc) / "active.pem"))
        holder.close()  # the gateway retries at its next look (every 2 s)
        poll_for(lambda: status(svc)["https"]["listening"] == [free, busy], WAIT,
                 "HTTPS on the port once it was freed")
        assert "error" not in status(svc)["https"]
        assert served(busy) == served(free)
    finally:
        holder.close()
        svc.stop()
