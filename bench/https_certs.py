"""The certificate side of bench/https.py: TLS helpers, the certificate switch and renewal
(parts 3 and 4) and Firefox trust (part 5), measured on a running service.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import time
from pathlib import Path

from cryptography import x509

from actors.certhelper import authority
from bench.report import note, out
from common import certs
from tests.support.service import Service

SWITCH_POLL = 0.01  # seconds between handshakes while waiting for a certificate
TRUST_POLL = 0.02  # seconds between certutil runs while waiting for Firefox trust
WAIT = 20.0  # seconds a change may take before the benchmark gives up
FIREFOX = shutil.which("firefox-esr")


# --- figures


def secs(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f} s  max {max(values):.3f} s  "
            f"(each: {', '.join(f'{v:.3f}' for v in values)})")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- TLS helpers


def trusting(ca: Path) -> ssl.SSLContext:
    """The default client checks (chain and host name) against the home's CA only."""
    return ssl.create_default_context(cafile=str(ca))


def any_cert() -> ssl.SSLContext:
    """For watching what is served: the operator's certificate is not from our CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served(port: int, context: ssl.SSLContext) -> str:
    """SHA-256 of the certificate a fresh handshake on ``port`` gets."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def leaf(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificates(path.read_bytes())[0]


def key_kind(cert: x509.Certificate) -> str:
    key = cert.public_key()
    curve = getattr(key, "curve", None)
    return f"EC {curve.name}" if curve else f"RSA {key.key_size}"


def wait_for_cert(port: int, want, timeout: float = WAIT) -> tuple[float, str]:
    """Handshake every SWITCH_POLL until ``want(fingerprint)``; (seconds, fingerprint)."""
    context = any_cert()
    start = time.perf_counter()
    end = start + timeout
    while True:
        got = served(port, context)
        if want(got):
            return time.perf_counter() - start, got
        if time.perf_counter() > end:
            raise RuntimeError(f"port {port} still serves {got[:16]} after {timeout} s")
        time.sleep(SWITCH_POLL)


# --- parts 3 and 4: certificate changes


def switch_part(service: Service, repeats: int) -> dict:
    folder = service.home / "cert"
    files = certs.CertFiles(folder)
    port = service.https_ports[1]
    local = certs.fingerprint(leaf(files.local))
    if served(port, any_cert()) != local:
        raise RuntimeError("the local certificate is not the one served")
    operator_ca = authority.create_ca()
    to_operator, to_local = [], []
    note(f"certificate switch: operator pair in and out, {repeats} times")
    for _ in range(repeats):
        pair = authority.issue_server(operator_ca, 90)
        mine = certs.fingerprint(pair.leaf)
        authority.write_pair(pair, files.server, files.server_key)  # key first, then cert
        seconds, _ = wait_for_cert(port, lambda got, mine=mine: got == mine)
        to_operator.append(seconds)
        if served(service.https_ports[0], any_cert()) != mine:
            raise RuntimeError("the other HTTPS port does not serve the operator pair")
        time.sleep(0.5)  # let the helper settle before the next change
        files.server.unlink()
        files.server_key.unlink()
        seconds, _ = wait_for_cert(port, lambda got: got == local)
        to_local.append(seconds)
        time.sleep(0.5)
    return {"to_operator": to_operator, "to_local": to_local}


def renewal_part(service: Service, repeats: int) -> dict:
    files = certs.CertFiles(service.home / "cert")
    port = service.https_ports[1]
    ca = certs.read_pair(files.ca, files.ca_key)
    times, days = [], []
    note(f"renewal: an aging local certificate (10 days left), {repeats} times")
    for _ in range(repeats):
        before = served(port, any_cert())
        aging = authority.issue_server(ca, 10)
        old = certs.fingerprint(aging.leaf)
        authority.write_pair(aging, files.local, files.local_key)
        seconds, new = wait_for_cert(
            port, lambda got, gone=(before, old): got not in gone)
        renewed = leaf(files.active)
        if certs.fingerprint(renewed) != new:
            raise RuntimeError("the served certificate is not active.pem's")
        if not certs.issued_by(renewed, ca.leaf) or certs.covers_loopback(renewed):
            raise RuntimeError("the renewed certificate is not the CA's for loopback")
        days.append(certs.describe(renewed)["days_left"])
        times.append(seconds)
        time.sleep(0.5)
    return {"times": times, "days": days}


# --- part 5: Firefox trust


def firefox_part(service: Service, work: Path, repeats: int) -> dict:
    ca = leaf(service.home / "cert" / "ca.pem")
    nickname = certs.common_name(ca)
    env = {**os.environ, "HOME": str(service.user_home)}
    create, trusted = [], []
    ini = service.user_home / ".config" / "mozilla" / "firefox" / "profiles.ini"
    note(f"Firefox trust: {repeats} profiles made with -CreateProfile")
    for number in range(repeats):
        profile = work / "firefox" / f"bench-{number}"
        start = time.perf_counter()
        done = subprocess.run([FIREFOX, "--headless", "-CreateProfile",
                               f"bench-{number} {profile}"], env=env, capture_output=True,
                              text=True, timeout=60)
        made = time.perf_counter()
        if done.returncode != 0 or f"Path={profile}" not in ini.read_text():
            raise RuntimeError(f"firefox -CreateProfile did not list {profile}: "
                               f"{done.returncode} {done.stderr[-300:]}")
        end = made + WAIT
        while subprocess.run(["certutil", "-L", "-d", f"sql:{profile}", "-n", nickname],
                             capture_output=True, timeout=30).returncode != 0:
            if time.perf_counter() > end:
                raise RuntimeError(f"the CA is not in {profile} after {WAIT} s")
            time.sleep(TRUST_POLL)
        trusted.append(time.perf_counter() - made)
        create.append(made - start)
    return {"create": create, "trusted": trusted}


def certificate_figures(service: Service, work: Path, switches: int,
                        summary: list[str]) -> None:
    """Parts 3 to 5 on the running service: their lines, and their summary lines
    appended to ``summary``."""
    # 3: certificate switch
    sw = switch_part(service, switches)
    out(f"certificate switch, operator pair written -> served ({switches}): "
        f"{secs(sw['to_operator'])}")
    out(f"certificate switch, operator pair removed -> local served again ({switches}): "
        f"{secs(sw['to_local'])}")
    summary.append(f"certificate switch: operator in {statistics.median(sw['to_operator']):.2f}"
                   f" s median ({max(sw['to_operator']):.2f} max), out "
                   f"{statistics.median(sw['to_local']):.2f} s median "
                   f"({max(sw['to_local']):.2f} max)")

    # 4: renewal
    ren = renewal_part(service, 3)
    out(f"renewal, aging local.pem written -> renewed certificate served (3): "
        f"{secs(ren['times'])}; renewed certificates have {ren['days']} days left")
    summary.append(f"renewal of a certificate with 10 days left: "
                   f"{statistics.median(ren['times']):.2f} s median "
                   f"({max(ren['times']):.2f} max)")

    # 5: Firefox trust
    if FIREFOX is None:
        out("Firefox trust: skipped (no firefox-esr)")
    else:
        ff = firefox_part(service, work, 3)
        out(f"Firefox: -CreateProfile took {secs(ff['create'])}")
        out(f"Firefox: profile created -> CA in its NSS database (3): "
            f"{secs(ff['trusted'])}")
        summary.append(f"Firefox profile trusted after -CreateProfile: "
                       f"{statistics.median(ff['trusted']):.2f} s median "
                       f"({max(ff['trusted']):.2f} max)")
