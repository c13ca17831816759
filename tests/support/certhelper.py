"""What the HTTPS and certificate helper tests share (test_certhelper and
test_certhelper_renewal): certificates on disk and as served, TLS handshakes, the
helper's status and log, the welcome page and doctor's lines, and one service with default
settings for both modules, shared by the tests that leave it as they found it (the
operator tests remove their files again).
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import socket
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from common import certs

from .service import Service
from .shared import default_service, shared_by_modules
from .stack import poll_for

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


# conftest.py's service, one for both modules as it was one for the file
service = shared_by_modules(default_service, "service")
