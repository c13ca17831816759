"""HTTPS and the certificate helper, against the real service under supervisord.

Covers the first start (the local CA in ``cert/``, name-constrained to loopback, and the
server certificate it issues, with private file modes); Python ``ssl`` verifying the served
certificate against ``cert/ca.pem`` for 127.0.0.1, localhost and ::1 on every HTTPS port;
TLS 1.2+ only (a client that really offers TLS 1.1 is refused); the API and the session
WebSocket over HTTPS; ``GET /ca.pem``; an operator's own certificate switched in and out
without a gateway restart (an open keep-alive connection survives it); corrupt and
mismatched operator certificates rejected while the previous one stays served (log line,
``scanbridge doctor`` FAIL line, also at a first start); renewal of an aging local
certificate, with the default validity and with a ``[certhelper]`` validity override;
start-up refusing bad ``[certhelper]``/``[ports] https`` settings (exit status 78); an
unwritable ``cert/`` (HTTP still served, reported by status, welcome page and doctor); a
corrupt CA moved aside and replaced.

One service with default settings is shared by the tests that leave it as they found it
(the operator tests remove their files again); special settings and start-up cases run
their own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import html
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import threading
import time
import urllib.request
import warnings
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from actors.certhelper import authority
from common import certs
from tests.support.service import Service
from tests.support.stack import poll_for, write_ini

pytestmark = pytest.mark.timeout(120)

WAIT = 15.0  # seconds a certificate change may take to be served (2 loaded cores)
LOOPBACK = [("127.0.0.1", "127.0.0.1"), ("127.0.0.1", "localhost"), ("::1", "::1")]
GARBAGE = b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"


# --- helpers


def cert_dir(svc: Service) -> Path:
    return svc.home / "cert"


def leaf(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file (active.pem: the served leaf)."""
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def sha(cert: x509.Certificate) -> str:
    return certs.fingerprint(cert)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def no_verify() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def trusting(cafile: Path) -> ssl.SSLContext:
    """Default client checks (chain and host name) against one CA only."""
    return ssl.create_default_context(cafile=str(cafile))


def handshake(port: int, context: ssl.SSLContext, name: str = "127.0.0.1",
              address: str = "127.0.0.1") -> tuple[str, str]:
    """(SHA-256 of the served certificate, TLS version) of one handshake."""
    with socket.create_connection((address, port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest(), tls.version()


def served(port: int) -> str:
    return handshake(port, no_verify())[0]


def wait_served(svc: Service, fingerprint: str, timeout: float = WAIT) -> None:
    poll_for(lambda: all(served(port) == fingerprint for port in svc.https_ports), timeout,
             f"every HTTPS port to serve {fingerprint[:16]}", every=0.2)


def wait_served_other_than(svc: Service, *fingerprints: str, timeout: float = WAIT) -> str:
    def changed():
        now = {served(port) for port in svc.https_ports}
        return len(now) == 1 and not now & set(fingerprints) and now.pop()
    return poll_for(changed, timeout, "a new certificate on every HTTPS port", every=0.2)


def status(svc: Service, port: int | None = None) -> dict:
    code, _, body = svc.get("/api/v1/status", port=port)
    assert code == 200, body
    return json.loads(body)


def helper_status(svc: Service) -> dict:
    with svc.client() as client:
        return client.call("certhelper", "status", timeout=10)


def wait_log(svc: Service, match, what: str, timeout: float = WAIT) -> dict:
    return poll_for(lambda: next((line for line in svc.log_records("certhelper")
                                  if match(line)), None),
                    timeout, f"certhelper log line: {what}", every=0.2)


def https_paragraph(page: str) -> str:
    """The text of the welcome page's ``<p id="https">`` (tags removed, unescaped)."""
    found = re.search(r'<p id="https">(.*?)</p>', page, re.S)
    assert found, f'no <p id="https"> on the welcome page: {page[:3000]}'
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1)))


def welcome(svc: Service) -> str:
    code, headers, body = svc.get("/")
    assert code == 200 and headers["Content-Type"].startswith("text/html"), (code, headers)
    return body.decode()


def doctor_lines(svc: Service) -> list[str]:
    done = svc.cli("doctor", timeout=120)
    return done.stdout.splitlines()


def home_ca(svc: Service) -> certs.Pair:
    files = certs.CertFiles(cert_dir(svc))
    return certs.read_pair(files.ca, files.ca_key)


def write_operator(svc: Service, pair: certs.Pair) -> None:
    """Like an operator copying files in: the key first, then the certificate."""
    (cert_dir(svc) / "server_key.pem").write_bytes(pair.key_pem)
    (cert_dir(svc) / "server.pem").write_bytes(pair.chain_pem)


def write_local(svc: Service, pair: certs.Pair) -> None:
    (cert_dir(svc) / "local_key.pem").write_bytes(pair.key_pem)
    (cert_dir(svc) / "local.pem").write_bytes(pair.chain_pem)


def ca_id(ca: certs.Pair) -> str:
    """The random part of a CA's common name, e.g. ``f3263a76``."""
    return certs.common_name(ca.leaf).rsplit(", ", 1)[-1].rstrip(")")


@pytest.fixture
def operator_removed(service):
    """Whatever a test did to server.pem/server_key.pem: gone again, the local one served."""
    yield service
    for name in ("server.pem", "server_key.pem"):
        (cert_dir(service) / name).unlink(missing_ok=True)
    wait_served(service, sha(leaf(cert_dir(service) / "local.pem")))


# --- first start


def test_first_start_makes_the_ca_and_server_certificate_with_private_modes(service):
    folder = cert_dir(service)
    assert mode(folder) == 0o700
    for name in ("ca.pem", "ca_key.pem", "local.pem", "local_key.pem", "active.pem"):
        assert (folder / name).is_file(), name
    for key in ("ca_key.pem", "local_key.pem", "active.pem"):
        assert mode(folder / key) == 0o600, f"{key} has mode {mode(folder / key):o}"
    assert not (folder / "server.pem").exists()
    # Keys and certificates belong together; active.pem is the local pair, key included.
    ca = home_ca(service)
    local = certs.read_pair(folder / "local.pem", folder / "local_key.pem")
    active = certs.read_active(folder / "active.pem")
    assert sha(active.leaf) == sha(local.leaf)
    assert certs.public_bytes(active.key.public_key()) == certs.public_bytes(
        local.leaf.public_key())
    assert ca.leaf.subject != local.leaf.subject


def test_the_ca_is_a_ca_name_constrained_to_loopback(service):
    ca = leaf(cert_dir(service) / "ca.pem")
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is True
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert set(constraints.value.permitted_subtrees) == {
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
        x509.IPAddress(ipaddress.ip_network("::1/128"))}
    assert not constraints.value.excluded_subtrees
    assert ca.issuer == ca.subject
    ca.verify_directly_issued_by(ca)  # self-signed


def test_the_server_certificate_names_exactly_loopback_and_is_issued_by_the_ca(service):
    ca = leaf(cert_dir(service) / "ca.pem")
    cert = leaf(cert_dir(service) / "local.pem")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(map(str, san.get_values_for_type(x509.IPAddress))) == ["127.0.0.1", "::1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert len(list(san)) == 3
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in list(eku)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    validity = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=390) < validity <= dt.timedelta(days=397), validity
    assert cert.not_valid_before_utc <= certs.now() < cert.not_valid_after_utc
    cert.verify_directly_issued_by(ca)
    assert cert.issuer == ca.subject


# --- serving


def test_python_ssl_verifies_the_served_certificate_for_every_loopback_name_on_both_ports(
        service):
    folder = cert_dir(service)
    expected = sha(leaf(folder / "active.pem"))
    assert expected == sha(leaf(folder / "local.pem"))
    context = trusting(folder / "ca.pem")
    for port in service.https_ports:
        for address, name in LOOPBACK:
            fingerprint, _ = handshake(port, context, name=name, address=address)
            assert fingerprint == expected, (port, name)
        # The checks are real: another name, or another CA, fails verification.
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, context, name="example.com")
        other = authority.create_ca()
        other_file = folder.parent / "other-ca.pem"
        other_file.write_bytes(other.chain_pem)
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, trusting(other_file))
        other_file.unlink()


def test_tls_1_1_is_refused_and_tls_1_2_alone_works(service):
    folder = cert_dir(service)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 themselves
        old = no_verify()
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # so this client really offers TLS 1.1
        permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        permissive.minimum_version = ssl.TLSVersion.TLSv1
        permissive.set_ciphers("DEFAULT:@SECLEVEL=0")
    # Control: the same client does get TLS 1.1 from a server that allows it.
    permissive.load_cert_chain(str(folder / "active.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    got = {}

    def serve_once():
        conn, _ = listener.accept()
        try:
            with permissive.wrap_socket(conn, server_side=True) as tls:
                got["version"] = tls.version()
        except (ssl.SSLError, OSError) as exc:
            got["error"] = exc

    thread = threading.Thread(target=serve_once, daemon=True)
    thread.start()
    try:
        assert handshake(listener.getsockname()[1], old)[1] == "TLSv1.1"
    finally:
        thread.join(10)
        listener.close()
    for port in service.https_ports:
        with pytest.raises(ssl.SSLError):
            handshake(port, old)
        tls12 = trusting(folder / "ca.pem")
        tls12.minimum_version = tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        fingerprint, version = handshake(port, tls12)
        assert version == "TLSv1.2"
        assert fingerprint == sha(leaf(folder / "active.pem"))
    # HTTP still answers on the HTTP ports (TLS is not spoken there).
    assert status(service, port=service.ports[0])["https"]["served"] is True


def test_the_api_and_the_session_websocket_work_over_https(service):
    folder = cert_dir(service)
    context = trusting(folder / "ca.pem")
    port = service.https_ports[1]
    with urllib.request.urlopen(f"https://localhost:{port}/api/v1/status", context=context,
                                timeout=10) as response:
        assert response.status == 200
        body = json.loads(response.read())
    https = body["https"]
    assert https["served"] is True and https["source"] == "local"
    assert https["ports"] == service.https_ports
    assert https["sha256"] == sha(leaf(folder / "active.pem"))
    assert sorted(https["names"]) == sorted(["127.0.0.1", "::1", "localhost"])
    assert https["days_left"] >= 390

    async def main():
        base = f"https://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(ssl=context)
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.post(f"{base}/api/v1/sessions", json={}) as response:
                assert response.status == 201, await response.text()
                opened = await response.json()
            sid, token = opened["id"], opened["token"]
            try:
                ws = await http.ws_connect(f"wss://127.0.0.1:{port}/api/v1/sessions/{sid}"
                                           f"/events", params={"token": token})
                msg = await ws.receive(timeout=WAIT)
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                hello = json.loads(msg.data)
                assert hello["topic"] == "hello" and hello["data"]["session"] == sid
                await ws.close()
            finally:
                async with http.delete(f"{base}/api/v1/sessions/{sid}",
                                       headers={"Authorization": f"Bearer {token}"}) as gone:
                    assert gone.status in (200, 204), await gone.text()

    asyncio.run(main())


def test_get_ca_pem_over_http_downloads_the_ca(service):
    code, headers, body = service.get("/ca.pem")
    assert code == 200
    assert body == (cert_dir(service) / "ca.pem").read_bytes()
    assert headers["Content-Type"].split(";")[0] in ("application/x-pem-file",
                                                      "application/x-x509-ca-cert")
    assert x509.load_pem_x509_certificate(body).extensions.get_extension_for_class(
        x509.BasicConstraints).value.ca


# --- the operator's own certificate


def test_an_operator_certificate_is_served_without_a_restart_and_removing_it_restores_local(
        operator_removed):
    svc = operator_removed
    folder = cert_dir(svc)
    local_sha = sha(leaf(folder / "local.pem"))
    wait_served(svc, local_sha)
    gateway = svc.pid("gateway")
    other = authority.create_ca()
    own = authority.issue_server(other, 90)
    # A keep-alive connection opened before the switch.
    kept = http.client.HTTPSConnection("127.0.0.1", svc.https_ports[0],
                                       context=trusting(folder / "ca.pem"), timeout=10)
    try:
        kept.request("GET", "/api/v1/status")
        first = kept.getresponse()
        assert first.status == 200 and json.loads(first.read())["https"]["source"] == "local"
        sock = kept.sock
        assert sock is not None

        write_operator(svc, own)
        wait_served(svc, sha(own.leaf))
        other_file = folder.parent / "operator-ca.pem"
        other_file.write_bytes(other.chain_pem)
        for address, name in LOOPBACK:  # it verifies against the operator's CA
            assert handshake(svc.https_ports[1], trusting(other_file), name, address)[0] == \
                sha(own.leaf)
        other_file.unlink()
        assert svc.pid("gateway") == gateway, "the gateway restarted"

        kept.request("GET", "/api/v1/status")
        second = kept.getresponse()
        assert second.status == 200
        assert json.loads(second.read())["https"]["source"] == "operator"
        assert kept.sock is sock, "the keep-alive connection was replaced"
        assert hashlib.sha256(sock.getpeercert(binary_form=True)).hexdigest() == local_sha
    finally:
        kept.close()

    https = status(svc)["https"]
    assert https["source"] == "operator" and https["sha256"] == sha(own.leaf)
    paragraph = https_paragraph(welcome(svc))
    assert "operator" in paragraph and ca_id(other) in paragraph, paragraph
    line = wait_log(svc, lambda x: x["msg"] == "serving a new certificate"
                    and x.get("source") == "operator" and x.get("sha256") == sha(own.leaf),
                    "serving the operator's certificate")
    assert line["level"] == "info"
    assert helper_status(svc)["operator"]["state"] == "used"

    for name in ("server.pem", "server_key.pem"):
        (folder / name).unlink()
    wait_served(svc, local_sha)
    assert status(svc)["https"]["source"] == "local"
    assert "operator" not in https_paragraph(welcome(svc))
    assert svc.pid("gateway") == gateway


def serve_operator(svc: Service) -> tuple[certs.Pair, certs.Pair]:
    """Put a valid operator certificate in place and wait until it is served: (CA, pair)."""
    other = authority.create_ca()
    own = authority.issue_server(other, 90)
    write_operator(svc, own)
    wait_served(svc, sha(own.leaf))
    poll_for(lambda: helper_status(svc)["operator"]["state"] == "used", WAIT,
             "the certificate helper to use the operator's certificate")
    return other, own


def wait_rejected(svc: Service, words: str) -> dict:
    def rejected():
        operator = helper_status(svc)["operator"]
        return operator["state"] == "rejected" and words in operator["reason"] and operator
    return poll_for(rejected, WAIT, f"the operator certificate rejected for {words!r}",
                    every=0.2)


def test_a_corrupt_operator_certificate_is_rejected_and_the_previous_one_stays(
        operator_removed):
    svc = operator_removed
    gateway = svc.pid("gateway")
    _, own = serve_operator(svc)
    (cert_dir(svc) / "server.pem").write_bytes(GARBAGE)
    operator = wait_rejected(svc, "not a PEM certificate")
    assert "server.pem" in operator["reason"]
    line = wait_log(svc, lambda x: "rejected" in x["msg"] and x.get("reason") ==
                    operator["reason"], "the rejection with its reason")
    assert line["level"] == "error"
    assert "previous operator certificate" in line["serving"]
    time.sleep(2.5)  # one gateway poll of active.pem: nothing may have changed
    for port in svc.https_ports:
        assert served(port) == sha(own.leaf)
    assert sha(leaf(cert_dir(svc) / "active.pem")) == sha(own.leaf)
    assert status(svc)["https"]["source"] == "operator"
    fails = [x for x in doctor_lines(svc) if x.startswith("FAIL")]
    assert any("operator certificate rejected" in x and "server.pem" in x and
               "not a PEM certificate" in x for x in fails), fails
    assert svc.pid("gateway") == gateway


def test_a_mismatched_operator_pair_is_rejected_and_the_previous_one_stays(operator_removed):
    svc = operator_removed
    other, own = serve_operator(svc)
    stranger = authority.issue_server(other, 90)  # same CA, another key
    (cert_dir(svc) / "server.pem").write_bytes(stranger.chain_pem)
    operator = wait_rejected(svc, "mismatched")
    assert "server_key.pem" in operator["reason"]
    wait_log(svc, lambda x: "rejected" in x["msg"] and "mismatched" in x.get("reason", "")
             and "previous operator certificate" in x.get("serving", ""),
             "the mismatched pair rejected")
    time.sleep(2.5)  # one gateway poll of active.pem: nothing may have changed
    for port in svc.https_ports:
        assert served(port) == sha(own.leaf)
    assert status(svc)["https"]["sha256"] == sha(own.leaf)
    fails = [x for x in doctor_lines(svc) if x.startswith("FAIL")]
    assert any("operator certificate rejected" in x and "mismatched" in x for x in fails), fails


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
