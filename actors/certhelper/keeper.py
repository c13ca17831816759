"""Keeps ``cert/`` right: the local CA, its server certificate and the served pair.

``refresh()`` is idempotent and cheap when nothing changed, so it runs on every file event
and on a timer. What it decides, in order:

1. the CA: read it, or make one (a corrupt or expired CA is moved aside and replaced);
2. the local server certificate: kept while it is signed by that CA, names the loopback
   names and has more than ``renew_days`` left; else a new one is issued;
3. what to serve: the operator's ``server.pem`` + ``server_key.pem`` when both are there
   and valid; when they are present but bad, the pair already served stays (if it was
   the operator's and is still valid) so a half-copied or wrong file never takes HTTPS
   down; otherwise the local certificate;
4. ``active.pem`` is rewritten only when that choice changed, after ``ssl`` loaded it.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from broker.procutil import atomic_write
from common import certs
from common.certs import CertError, CertFiles, Pair

from . import authority


@dataclass
class Outcome:
    changed: bool = False  # active.pem was rewritten
    source: str = ""  # "local" or "operator": what active.pem holds
    active: dict | None = None
    ca: dict | None = None
    operator: dict = field(default_factory=lambda: {"state": "absent"})
    problem: str = ""  # why HTTPS may not be served as it should


class Keeper:
    def __init__(self, folder: Path, server_days: int, renew_days: int, log):
        self.files = CertFiles(folder)
        self.server_days = server_days
        self.renew_days = renew_days
        self.log = log
        self.last_problem = ""
        self.last_rejection = ""
        self.loadable: set[bytes] = set()  # pairs ssl already accepted

    @contextmanager
    def _locked(self):
        """One writer at a time: the actor and a ``scanbridge trust`` run as root."""
        fd = os.open(self.files.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def refresh(self) -> Outcome:
        outcome = Outcome()
        try:
            with self._locked():
                ca = self._ca()
                outcome.ca = certs.describe(ca.leaf)
                local = self._local(ca)
                chosen, outcome.source = self._choose(ca, local, outcome)
                outcome.changed = self._activate(chosen, outcome.source)
                outcome.active = certs.describe(chosen.leaf)
        except OSError as exc:
            outcome.problem = (f"cannot write the certificates in {self.files.folder}: "
                               f"{exc.strerror or exc}; HTTPS is not served (HTTP is)")
        except CertError as exc:
            outcome.problem = str(exc)
        if outcome.problem and outcome.problem != self.last_problem:
            self.log.error("certificates not ready", problem=outcome.problem)
        elif not outcome.problem and self.last_problem:
            self.log.info("certificates ready again")
        self.last_problem = outcome.problem
        return outcome

    def _ca(self) -> Pair:
        files = self.files
        if not files.ca.exists() and not files.ca_key.exists():
            return self._new_ca("none yet")
        try:
            ca = certs.read_pair(files.ca, files.ca_key)
            certs.check_validity(ca.leaf, files.ca.name)
            return ca
        except CertError as exc:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            for path in (files.ca, files.ca_key):
                if path.exists():
                    path.replace(path.with_name(f"{path.name}.bad-{stamp}"))
            return self._new_ca(f"{exc} (moved aside as *.bad-{stamp}; browsers must "
                                "trust the new CA: scanbridge trust)")

    def _new_ca(self, reason: str) -> Pair:
        ca = authority.create_ca()
        authority.write_pair(ca, self.files.ca, self.files.ca_key)
        self.log.info("created the local CA", reason=reason, subject=certs.common_name(ca.leaf),
                      not_after=ca.leaf.not_valid_after_utc.isoformat())
        return ca

    def _local(self, ca: Pair) -> Pair:
        files = self.files
        try:
            local = certs.read_pair(files.local, files.local_key)
            certs.check_validity(local.leaf, files.local.name)
            if not certs.issued_by(local.leaf, ca.leaf):
                raise CertError(f"{files.local.name}: not signed by the current CA")
            missing = certs.covers_loopback(local.leaf)
            if missing:
                raise CertError(f"{files.local.name}: does not name {', '.join(missing)}")
            left = certs.describe(local.leaf)["days_left"]
            if left > self.renew_days:
                return local
            reason = f"expires in {left} days (renewal {self.renew_days} days ahead)"
        except CertError as exc:
            reason = "none yet" if "missing" in str(exc) and not files.local.exists() \
                else str(exc)
        local = authority.issue_server(ca, self.server_days)
        authority.write_pair(local, files.local, files.local_key)
        self.log.info("issued the server certificate", reason=reason,
                      names=certs.names_of(local.leaf),
                      not_after=local.leaf.not_valid_after_utc.isoformat())
        return local

    def _choose(self, ca: Pair, local: Pair, outcome: Outcome) -> tuple[Pair, str]:
        files = self.files
        if not files.server.exists() and not files.server_key.exists():
            self.last_rejection = ""
            return local, "local"
        try:
            own = certs.read_pair(files.server, files.server_key)
            certs.check_validity(own.leaf, files.server.name)
            missing = certs.covers_loopback(own.leaf)
            if len(missing) == len(certs.LOOPBACK_NAMES):
                raise CertError(f"{files.server.name}: names none of "
                                f"{', '.join(certs.LOOPBACK_NAMES)} (names: "
                                f"{', '.join(certs.names_of(own.leaf)) or 'none'})")
            self._loadable(own)
        except CertError as exc:
            return self._rejected(ca, local, outcome, str(exc))
        outcome.operator = {"state": "used", **certs.describe(own.leaf)}
        if missing:
            outcome.operator["warning"] = f"does not name {', '.join(missing)}"
        self.last_rejection = ""
        return own, "operator"

    def _rejected(self, ca: Pair, local: Pair, outcome: Outcome,
                  reason: str) -> tuple[Pair, str]:
        outcome.operator = {"state": "rejected", "reason": reason}
        try:
            served = certs.read_active(self.files.active)
            certs.check_validity(served.leaf, self.files.active.name)
            keep = not certs.issued_by(served.leaf, ca.leaf)  # an earlier operator pair
        except CertError:
            keep = False
        if reason != self.last_rejection:
            self.log.error("the operator's certificate is rejected; the certificate in use "
                           "stays", reason=reason, serving="the previous operator "
                           "certificate" if keep else "the local CA's certificate")
            self.last_rejection = reason
        return (served, "operator") if keep else (local, "local")

    def _loadable(self, pair: Pair) -> None:
        """``ssl`` must accept the pair (it refuses, e.g., RSA keys under 2048 bits)."""
        pem = pair.pem()
        if pem in self.loadable:
            return
        probe = self.files.folder / ".probe.pem"
        try:
            atomic_write(probe, pem, mode=0o600)
            certs.server_context(probe)
        finally:
            probe.unlink(missing_ok=True)
        self.loadable = {pem}

    def _activate(self, pair: Pair, source: str) -> bool:
        path = self.files.active
        pem = pair.pem()
        try:
            if path.read_bytes() == pem:
                return False
        except OSError:
            pass
        atomic_write(path, pem, mode=0o600)
        self.log.info("serving a new certificate", source=source,
                      subject=certs.common_name(pair.leaf),
                      issuer=pair.leaf.issuer.rfc4514_string(),
                      sha256=certs.fingerprint(pair.leaf),
                      not_after=pair.leaf.not_valid_after_utc.isoformat())
        return True
