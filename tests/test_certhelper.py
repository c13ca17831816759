"""HTTPS and the certificate helper, against the real service under supervisord.

The first start (the local CA in ``cert/``, name-constrained to loopback, and the server
certificate it issues, with private file modes); Python ``ssl`` verifying the served
certificate against ``cert/ca.pem`` for 127.0.0.1, localhost and ::1 on every HTTPS port;
TLS 1.2+ only (a client that really offers TLS 1.1 is refused); the API and the session
WebSocket over HTTPS; ``GET /ca.pem``; an operator's own certificate switched in and out
without a gateway restart (an open keep-alive connection survives it); corrupt and
mismatched operator certificates rejected while the previous one stays served (log line,
``scanbridge doctor`` FAIL line).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import http.client
import ipaddress
import json
import socket
import ssl
import threading
import time
import urllib.request
import warnings

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from actors.certhelper import authority
from common import certs
from tests.support.certhelper import (GARBAGE, LOOPBACK, WAIT, ca_id, cert_dir, doctor_lines,
                                      handshake, helper_status, home_ca, https_paragraph, leaf,
                                      mode, no_verify, served, sha, status, trusting, wait_log,
                                      wait_served, welcome, write_operator)
from tests.support.certhelper import operator_removed, service  # fixtures
from tests.support.service import Service
from tests.support.stack import poll_for

pytestmark = pytest.mark.timeout(120)


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
