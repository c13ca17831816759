"""The HTTPS side of the gateway: one TLS context, reloaded in place when the pair changes.

The certificate helper writes ``cert/active.pem`` (checked) and publishes
``cert.changed``; the gateway also looks at the file every ``POLL`` seconds, so a missed
event only delays a reload. Loading the new pair into the same ``SSLContext`` changes what
new handshakes get; connections already open keep theirs, so nothing is dropped.
"""

from __future__ import annotations

import datetime as dt
import ssl
from typing import Any

from common import certs
from common.certs import CertError, CertFiles

POLL = 2.0  # seconds between looks at active.pem


class Tls:
    def __init__(self, folder, log):
        self.files = CertFiles(folder)
        self.log = log
        self.context: ssl.SSLContext | None = None
        self.stamp: tuple | None = None
        self.info: dict[str, Any] = {}
        self.listening: list[int] = []  # HTTPS ports open (set by the gateway)
        self.port_error = ""  # why the others are not
        self.error = "no certificate yet: the certificate helper makes it (scanbridge " \
                     "logs certhelper)"

    def load(self) -> bool:
        """Load active.pem if it changed; True when HTTPS can start now (first pair)."""
        path = self.files.active
        try:
            info = path.stat()
        except OSError:
            return False
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if stamp == self.stamp:
            return False
        self.stamp = stamp
        try:
            fresh = certs.server_context(path)  # a bad file never touches the live context
            pair = certs.read_active(path)
        except CertError as exc:
            self.log.error("cannot load the HTTPS certificate; the one in use stays",
                           error=str(exc))
            if self.context is None:
                self.error = f"the certificate cannot be loaded: {exc}"
            return False
        first = self.context is None
        if first:
            self.context = fresh
        else:
            self.context.load_cert_chain(str(path))
        self.info = {"source": self._source(pair), **certs.describe(pair.leaf)}
        self.error = ""
        self.log.info("HTTPS certificate loaded", source=self.info["source"],
                      subject=self.info["subject"], sha256=self.info["sha256"],
                      not_after=self.info["not_after"])
        return first

    def _source(self, pair: certs.Pair) -> str:
        """The helper writes local.pem before active.pem: the same leaf means ours."""
        try:
            local = certs.parse_chain(self.files.local.read_bytes(), self.files.local.name)[0]
        except (OSError, CertError):
            return "operator"
        return "local" if local == pair.leaf else "operator"

    def summary(self) -> dict:
        """For /api/v1/status and the welcome page."""
        if self.context is None or not self.listening:
            return {"served": False, "error": self.error or self.port_error}
        left = dt.datetime.fromisoformat(self.info["not_after"]) - certs.now()
        summary = {"served": True, **self.info, "days_left": left.days,
                   "listening": self.listening}
        if self.port_error:
            summary["error"] = self.port_error
        return summary
