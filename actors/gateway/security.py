"""Who may talk to the gateway: a loopback Host, an allowed Origin, and the CORS and
Private Network Access answers that only allowed origins get.

A web page on any site can make the browser send requests to 127.0.0.1. Two checks keep
such pages away from the scanners: the ``Host`` header must name this machine (a page on
``evil.example`` that re-resolves its name to 127.0.0.1 still sends ``Host:
evil.example``), and a browser's ``Origin`` must be on the allowlist. Requests without an
``Origin`` (the CLI, scripts, ``<img>`` loads) pass, but session data still needs a token.
The public paths (the client module, the modules it imports, and the origin probe) answer
every origin.
"""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path

from broker import config as configlib
from broker.config import Config

ALLOW_METHODS = "GET, POST, PUT, DELETE"
ALLOW_HEADERS = "Authorization, Content-Type, If-None-Match, X-Scanbridge-Password"
EXPOSE_HEADERS = ("ETag, Content-Disposition, Content-Length, Location, X-Scanbridge-Pages, "
                  "X-Scanbridge-Parts")
# The same for every page and free of session and device data, so any origin may read
# them: a page that is not allowed imports the client, which then says why (the probe).
PUBLIC_PATHS = frozenset({"/scanbridge.js", "/api/v1/origin"})
PUBLIC_FOLDER = "/scanbridge/"  # the client's modules: a page imports them with /scanbridge.js
PREFLIGHT_MAX_AGE = "600"
RELOAD_EVERY = 1.0  # seconds between two looks at the ini files' modification times
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def loopback_host(host: str) -> bool:
    """True for ``localhost``, ``127.x.y.z`` and ``[::1]``, with or without a port."""
    if host.startswith("["):
        name = host[1:host.find("]")] if "]" in host else ""
    else:
        name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    name = name.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def public(method: str, path: str) -> bool:
    return ((path in PUBLIC_PATHS or path.startswith(PUBLIC_FOLDER))
            and method in ("GET", "HEAD", "OPTIONS"))


def refusal(origin: str) -> str:
    return (f"the web origin {origin} is not allowed to use this service; an administrator "
            f"of this computer can allow it with: scanbridge allow {origin}")


class Allowlist:
    """The allowed origins: ``user_config.ini`` ``[access] allowed_origins`` plus the
    ``Access-Control-Allow-Origin`` line of ``DSConfiguration.ini``, and this service's own
    pages. Re-read when either file changes, so ``scanbridge allow`` needs no restart; a
    file that became invalid keeps the previous list (and is logged). ``[access]
    local_users`` (see peers.py) is re-read with them."""

    def __init__(self, cfg: Config, log):
        self.log = log
        self.files = [(cfg.home.ini / "user_config.ini", "user_config.ini"),
                      (cfg.home.ini / "DSConfiguration.ini", "DSConfiguration.ini")]
        self.own = {f"{scheme}://{name}:{port}"
                    for scheme, ports in (("http", cfg.ports.http), ("https", cfg.ports.https))
                    for port in ports for name in LOOPBACK_NAMES}
        self.configured = _configured(vars(cfg.access))
        self.users: list[str] = list(cfg.access.local_users)
        self.stamps = self._stamps()
        self.checked = time.monotonic()

    def _stamps(self) -> list:
        stamps = []
        for path, _ in self.files:
            try:
                info = path.stat()
                stamps.append((info.st_mtime_ns, info.st_size))
            except OSError:
                stamps.append(None)
        return stamps

    def origins(self) -> list[str]:
        """The configured origins (not counting this service's own pages)."""
        now = time.monotonic()
        if now - self.checked >= RELOAD_EVERY:
            self.checked = now
            stamps = self._stamps()
            if stamps != self.stamps:
                self.stamps = stamps
                self._reload()
        return self.configured

    def _reload(self) -> None:
        origins: list[str] = []
        users = self.users
        try:
            for path, name in self.files:
                values = configlib.load_file(Path(path), name)
                access = {**values.get("", {}), **values.get("access", {})}
                origins += [o for o in _configured(access) if o not in origins]
                users = access.get("local_users", users)
        except configlib.ConfigError as exc:
            self.log.error("allowed origins not reloaded: the file is invalid; the previous "
                           "list stays in force", error=str(exc))
            return
        if origins != self.configured:
            self.log.info("allowed origins changed", origins=origins)
        if users != self.users:
            self.log.info("allowed local users changed", local_users=users)
        self.configured, self.users = origins, users

    def local_users(self) -> list[str]:
        """``[access] local_users`` as the file says now."""
        self.origins()
        return self.users

    def allows(self, origin: str) -> bool:
        return origin in self.own or origin in self.origins()

    def same_service(self, origin: str) -> bool:
        return origin in self.own


def _configured(access: dict) -> list[str]:
    found: list[str] = []
    for origin in [*access.get("allowed_origins", []),
                   *access.get("Access-Control-Allow-Origin", [])]:
        if origin not in found:
            found.append(origin)
    return found


def cors_headers(origin: str, preflight: dict | None = None) -> dict:
    """Headers that let an allowed cross-origin page read the answer.

    ``preflight`` is the request's headers for an OPTIONS preflight: the answer then also
    lists what may be sent, and opts in to Private Network Access when asked (a public page
    calling 127.0.0.1 must get this yes, or Chrome blocks the request)."""
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
               "Access-Control-Expose-Headers": EXPOSE_HEADERS}
    if preflight is not None:
        headers.update(_preflight(preflight, ALLOW_METHODS))
        headers["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    return headers


def public_headers(preflight: dict | None = None) -> dict:
    """CORS headers of a public path for any origin: ``*``, so never with credentials."""
    headers = {"Access-Control-Allow-Origin": "*"}
    if preflight is not None:
        headers.update(_preflight(preflight, "GET"))
    return headers


def _preflight(request_headers: dict, methods: str) -> dict:
    headers = {"Access-Control-Allow-Methods": methods,
               "Access-Control-Max-Age": PREFLIGHT_MAX_AGE}
    if request_headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return headers
