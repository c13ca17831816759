"""What the tests of HTTPS in real browsers share (test_https_chromium, test_https_firefox
and test_deb): Firefox driven through Marionette, the certificates on disk, read independently of the code under test
(the local CA, the served certificate, NSS databases through ``certutil``), the welcome
page's HTTPS paragraph, the certificate helper's status, and one service for both modules.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from .service import Service
from .shared import default_service, shared_by_modules
from .stack import free_port

FIREFOX = shutil.which("firefox-esr")
WAIT_MS = 30_000
TRUSTED_WITHIN = 10.0  # seconds for the certificate helper to trust a new Firefox profile


# --- Firefox


class Firefox:
    """A headless firefox-esr on one profile, driven through Marionette.

    Started directly (Marionette(bin=...) would run a copy of the profile); ``close()``
    ends the session, then the browser's whole process group.
    """

    def __init__(self, profile: Path, home: Path, log: Path):
        from marionette_driver.marionette import Marionette
        self.port = free_port()
        (profile / "user.js").write_text(f'user_pref("marionette.port", {self.port});\n')
        self.log = open(log, "ab")
        start = time.monotonic()
        # -remote-allow-system-access: the chrome context, to read the certificate Firefox got.
        self.proc = subprocess.Popen(
            [FIREFOX, "--headless", "--marionette", "-remote-allow-system-access", "--no-remote",
             "--profile", str(profile)],
            env={**os.environ, "HOME": str(home)}, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.session = False
        try:
            self.marionette = Marionette(host="127.0.0.1", port=self.port)
            self.marionette.start_session(timeout=60)
            self.session = True
            self.marionette.timeout.page_load = 30
        except BaseException:
            self.close()
            raise
        self.started_in = time.monotonic() - start

    def certificate(self) -> dict:
        """The server certificate of the current tab's page, as Firefox verified it."""
        with self.marionette.using_context("chrome"):
            return self.marionette.execute_script(
                """const info = gBrowser.selectedBrowser.securityUI.secInfo;
                   return {sha256: info.serverCert.sha256Fingerprint,
                           issuer: info.serverCert.issuerCommonName,
                           chain: info.succeededCertChain.map((c) => c.sha256Fingerprint)};""")

    def close(self) -> None:
        if self.session:
            self.session = False
            with contextlib.suppress(Exception):
                self.marionette.delete_session()
        with contextlib.suppress(Exception):
            self.marionette.cleanup()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        # Content processes are in the same group: none may outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc.returncode is None:
            self.proc.wait(timeout=10)
        self.log.close()


# --- certificates on disk, read independently of the code under test


def ca_cert(service: Service) -> x509.Certificate:
    return x509.load_pem_x509_certificate((service.home / "cert" / "ca.pem").read_bytes())


def ca_name(service: Service) -> str:
    """The CA's common name: its nickname in every NSS database."""
    return ca_cert(service).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def served_cert(service: Service) -> x509.Certificate:
    """The leaf of cert/active.pem (the pair the gateway serves)."""
    return x509.load_pem_x509_certificates((service.home / "cert" / "active.pem").read_bytes())[0]


def sha256(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def certutil_list(database: Path, nickname: str | None = None) -> subprocess.CompletedProcess:
    args = ["certutil", "-L", "-d", f"sql:{database}"]
    if nickname is not None:
        args += ["-n", nickname]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def trust_flags(database: Path, nickname: str) -> str | None:
    """The trust attributes of ``nickname`` in the database's listing (None: not listed)."""
    for line in certutil_list(database).stdout.splitlines():
        if line.startswith(nickname + " "):
            return line[len(nickname):].strip()
    return None


def welcome_https_text(service: Service) -> str:
    """What the #https paragraph must say for the local CA's certificate."""
    ports = ", ".join(map(str, service.https_ports))
    return (f"HTTPS on ports {ports} for 127.0.0.1, ::1, localhost with the certificate of "
            "this computer's own Scanbridge CA")


def certhelper_status(service: Service, op: str = "status") -> dict:
    with service.client() as client:
        return client.call("certhelper", op, {}, timeout=30)


# conftest.py's service, one for both modules as it was one for the file
service = shared_by_modules(default_service, "service")
