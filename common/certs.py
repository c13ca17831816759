"""The HTTPS certificate files in ``cert/`` and how they are read and checked.

The certificate helper writes them; the gateway serves ``active.pem``; the CLI's ``trust``,
``untrust`` and ``doctor`` read them. Layout (keys are 0600)::

    ca.pem, ca_key.pem          the local certificate authority
    local.pem, local_key.pem    the server certificate it issued (renewed automatically)
    server.pem, server_key.pem  an operator's own certificate: used instead when valid
    active.pem                  the chain and key being served (written after checking)
    untrusted                   present after ``scanbridge untrust``: do not install trust
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
CA_NAME_PREFIX = "Scanbridge local CA"


class CertError(Exception):
    """A certificate or key that cannot be used; ``str()`` says why in one line."""


class CertFiles:
    """The paths of the layout above inside one ``cert/`` folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        for name, file in (("ca", "ca.pem"), ("ca_key", "ca_key.pem"), ("local", "local.pem"),
                           ("local_key", "local_key.pem"), ("server", "server.pem"),
                           ("server_key", "server_key.pem"), ("active", "active.pem"),
                           ("untrusted", "untrusted"), ("lock", ".lock")):
            setattr(self, name, self.folder / file)


@dataclass(frozen=True)
class Pair:
    """A certificate chain (leaf first) with its private key, as PEM and parsed."""
    chain: list[x509.Certificate]
    key: object
    chain_pem: bytes
    key_pem: bytes

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def pem(self) -> bytes:
        """Chain then key: the one file ``ssl.load_cert_chain`` reads."""
        return self.chain_pem.rstrip(b"\n") + b"\n" + self.key_pem.rstrip(b"\n") + b"\n"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _read(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CertError(f"{path.name}: missing ({what})") from None
    except OSError as exc:
        raise CertError(f"{path.name}: cannot read: {exc.strerror}") from None
    if not data.strip():
        raise CertError(f"{path.name}: empty")
    return data


def parse_chain(data: bytes, name: str) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertError(f"{name}: not a PEM certificate") from None
    if not chain:
        raise CertError(f"{name}: no certificate in it")
    return chain


def parse_key(data: bytes, name: str) -> object:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertError(f"{name}: the key is encrypted (a server key must not need a "
                        "passphrase)") from None
    except (ValueError, Exception) as exc:  # cryptography raises several kinds here
        if isinstance(exc, CertError):
            raise
        raise CertError(f"{name}: not a PEM private key") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise CertError(f"{name}: only RSA and EC keys are supported")
    return key


def public_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def read_pair(cert_path: Path, key_path: Path) -> Pair:
    """Read and check a certificate with its key; raises CertError saying what is wrong."""
    chain_pem = _read(cert_path, "certificate")
    key_pem = _read(key_path, "private key")
    chain = parse_chain(chain_pem, cert_path.name)
    key = parse_key(key_pem, key_path.name)
    if public_bytes(key.public_key()) != public_bytes(chain[0].public_key()):
        raise CertError(f"{key_path.name} is not the key of {cert_path.name} (mismatched "
                        "pair)")
    return Pair(chain, key, chain_pem, key_pem)


def read_active(path: Path) -> Pair:
    """The served file: chain and key in one PEM."""
    data = _read(path, "served certificate")
    chain = parse_chain(data, path.name)
    start = data.find(b"-----BEGIN", data.rfind(b"-----END CERTIFICATE-----"))
    key = parse_key(data[start:], path.name)
    return Pair(chain, key, data[:start], data[start:])


def check_validity(cert: x509.Certificate, name: str, at: dt.datetime | None = None) -> None:
    at = at or now()
    if cert.not_valid_before_utc > at:
        raise CertError(f"{name}: not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} "
                        "UTC (is the clock right?)")
    if cert.not_valid_after_utc <= at:
        raise CertError(f"{name}: expired on {cert.not_valid_after_utc:%Y-%m-%d} UTC")


def names_of(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    return names + san.get_values_for_type(x509.DNSName)


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key signed ``cert``."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, Exception):
        return False


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def describe(cert: x509.Certificate, at: dt.datetime | None = None) -> dict:
    at = at or now()
    return {"subject": common_name(cert), "issuer": cert.issuer.rfc4514_string(),
            "names": names_of(cert), "sha256": fingerprint(cert),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "days_left": (cert.not_valid_after_utc - at).days}


def covers_loopback(cert: x509.Certificate) -> list[str]:
    """The loopback names of LOOPBACK_NAMES that ``cert`` does not name."""
    names = set()
    for name in names_of(cert):
        try:
            names.add(str(ipaddress.ip_address(name)))
        except ValueError:
            names.add(name.lower())
    return [name for name in LOOPBACK_NAMES if name not in names]


def server_context(path: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context serving the chain and key in ``path``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(path))
    except (ssl.SSLError, OSError) as exc:
        raise CertError(f"{path.name}: {exc}") from None
    return context
