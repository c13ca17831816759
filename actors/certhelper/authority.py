"""Making the local CA and the server certificates it issues (``cryptography``).

The CA may only sign for loopback: name constraints permit ``localhost``, 127.0.0.0/8 and
::1, so its key, which stays on this machine to renew the server certificate, cannot be
used to impersonate any other site even if it leaked. Chromium, Firefox (NSS) and OpenSSL
all enforce them. Keys are P-256: small, fast to make, accepted everywhere.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.procutil import atomic_write
from common.certs import CA_NAME_PREFIX, Pair, now

CA_DAYS = 3650
BACKDATE = dt.timedelta(hours=1)  # tolerate a client clock a little behind ours


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def create_ca(at: dt.datetime | None = None) -> Pair:
    at = at or now()
    key = ec.generate_private_key(ec.SECP256R1())
    # A short random id in the name tells two homes' CAs apart in a browser's list.
    name = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Scanbridge"),
        x509.NameAttribute(NameOID.COMMON_NAME,
                           f"{CA_NAME_PREFIX} ({socket.gethostname()[:32]}, "
                           f"{os.urandom(4).hex()})"),
    ])
    constraints = x509.NameConstraints(
        permitted_subtrees=[x509.DNSName("localhost"),
                            x509.IPAddress(ipaddress.ip_network("127.0.0.0/8")),
                            x509.IPAddress(ipaddress.ip_network("::1/128"))],
        excluded_subtrees=None)
    public = key.public_key()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - BACKDATE)
            .not_valid_after(at + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(constraints, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(key, hashes.SHA256()))
    return Pair([cert], key, _cert_pem(cert), _key_pem(key))


def issue_server(ca: Pair, days: int, at: dt.datetime | None = None) -> Pair:
    """A server certificate for the loopback names, valid ``days`` (browsers allow 397)."""
    at = at or now()
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(name)) for name in ("127.0.0.1", "::1")]
    names.append(x509.DNSName("localhost"))
    public = key.public_key()
    ca_public = ca.leaf.public_key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Scanbridge"),
                x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca.leaf.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(at - BACKDATE)
            .not_valid_after(at - BACKDATE + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                         content_commitment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    return Pair([cert], key, _cert_pem(cert), _key_pem(key))


def write_pair(pair: Pair, cert_path: Path, key_path: Path) -> None:
    """Key first (0600), then the certificate: a reader never sees a cert without its key."""
    atomic_write(key_path, pair.key_pem, mode=0o600)
    atomic_write(cert_path, pair.chain_pem, mode=0o644)
