"""Checking an upload request before anything is rendered or sent.

The service must never become an open proxy: a target URL is accepted only when it is on
the origin of the page that owns the session, or starts with one of the prefixes in
``user_config.ini`` ``[access] upload_targets``. Redirects are followed only to the same
origin (see delivery). Header and field names and values are checked so a page cannot
smuggle a second request or override the framing.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from broker import config as configlib
from broker.config import parse_origin
from broker.protocol import Error

METHODS = ("POST", "PUT")
FORMATS = ("pdf", "tiff", "jpeg", "png", "zip")
# Framing and hop-by-hop headers are ours to write.
RESERVED_HEADERS = {"host", "content-length", "content-type", "transfer-encoding",
                    "connection", "keep-alive", "upgrade", "te", "trailer", "expect",
                    "idempotency-key", "proxy-authorization", "proxy-connection"}
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
MAX_FIELDS = 100
MAX_VALUE = 64 * 1024


class AllowedTargets:
    """``[access] upload_targets``, re-read when user_config.ini changes (no restart after
    an edit); a file that became invalid keeps the previous list, and is logged."""

    def __init__(self, cfg: configlib.Config, log):
        self.path = Path(cfg.home.ini) / "user_config.ini"
        self.log = log
        self.targets = list(cfg.access.upload_targets)
        self.stamp = self._stamp()

    def _stamp(self):
        try:
            info = self.path.stat()
            return info.st_mtime_ns, info.st_size
        except OSError:
            return None

    def current(self) -> list[str]:
        stamp = self._stamp()
        if stamp != self.stamp:
            self.stamp = stamp
            try:
                access = configlib.load_file(self.path, "user_config.ini")["access"]
            except configlib.ConfigError as exc:
                self.log.error("upload targets not reloaded: the file is invalid; the "
                               "previous list stays in force", error=str(exc))
                return self.targets
            if access["upload_targets"] != self.targets:
                self.targets = access["upload_targets"]
                self.log.info("upload targets changed", targets=self.targets)
        return self.targets


def origin_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        return parse_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        raise Error("invalid_argument", f"url {url[:200]!r} is not an http(s) URL") from None


def check_url(url, session_origin: str | None, allowed: list[str]) -> str:
    """The URL if it may be a target; else ``upload_target_not_allowed`` (403)."""
    if not isinstance(url, str) or not url or len(url) > 4096:
        raise Error("invalid_argument", "url must be an http or https URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username \
            or parts.password or parts.fragment or any(c in url for c in "\r\n\t "):
        raise Error("invalid_argument", f"url {url[:200]!r} is not an http(s) URL without "
                                        "user, password or fragment")
    if not url.isascii():
        raise Error("invalid_argument", "url must be ASCII: percent-encode other characters "
                                        "(new URL(...).href does)")
    # Checked before the origin: a receiver that resolves dot segments, decodes separators
    # or drops ;parameters would take such a path out of an allowed prefix.
    escape = configlib.path_escape(parts.path)
    if escape:
        raise Error("upload_target_not_allowed",
                    f"uploads to {url[:200]} are not allowed: its path has {escape}, "
                    "which a receiver could resolve outside the allowed folder")
    origin = origin_of(url)
    if session_origin and origin == session_origin:
        return url
    if any(_under(url, origin, prefix) for prefix in allowed):
        return url
    raise Error("upload_target_not_allowed",
                f"uploads to {url[:200]} are not allowed: the target must be on the page's own "
                f"origin{f' ({session_origin})' if session_origin else ''} or listed in "
                "user_config.ini [access] upload_targets")


def _under(url: str, origin: str, prefix: str) -> bool:
    """``url`` is on ``prefix``'s origin and at or below its path (whole segments)."""
    if origin != origin_of(prefix):
        return False
    base = urlsplit(prefix).path or "/"
    path = urlsplit(url).path or "/"
    return path == base or path.startswith(base if base.endswith("/") else base + "/")


def check_pairs(value, what: str, names_are_headers: bool) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_FIELDS:
        raise Error("invalid_argument", f"{what} must be an object of at most {MAX_FIELDS} "
                                        "text values")
    checked = {}
    for name, item in value.items():
        bad_name = len(name) > 256 or any(c in name for c in '\r\n"') or \
            (names_are_headers and not TOKEN.fullmatch(name))
        if not isinstance(item, str) or len(item) > MAX_VALUE or bad_name:
            raise Error("invalid_argument", f"{what}: {name[:60]!r} needs a plain name and a "
                                            f"text value of up to {MAX_VALUE} characters")
        if names_are_headers:
            if name.lower() in RESERVED_HEADERS:
                raise Error("invalid_argument", f"header {name!r} is set by the service")
            if any(c in item for c in "\r\n\0") or not item.isascii():
                raise Error("invalid_argument", f"header {name!r} must be one line of ASCII "
                                                "text")
            if name.lower() in {n.lower() for n in checked}:
                raise Error("invalid_argument", f"header {name!r} is given twice")
        checked[name] = item
    return checked


def check_request(body: dict, session_origin: str | None, allowed: list[str]) -> dict:
    """The normalised request of an upload job (everything but the images)."""
    method = str(body.get("method", "POST")).upper()
    if method not in METHODS:
        raise Error("invalid_argument", f"method must be one of {', '.join(METHODS)}")
    kind = str(body.get("format", "pdf")).lower()
    kind = {"jpg": "jpeg", "tif": "tiff"}.get(kind, kind)
    if kind not in FORMATS:
        raise Error("invalid_argument", f"format must be one of {', '.join(FORMATS)}")
    page_format = str(body.get("page_format", "jpeg")).lower()
    page_format = {"jpg": "jpeg"}.get(page_format, page_format)
    if page_format not in ("jpeg", "png"):
        raise Error("invalid_argument", "page_format (the pages of a zip) must be jpeg or png")
    auth = body.get("auth")
    if auth is not None and (not isinstance(auth, dict) or set(auth) - {"user", "password"}
                             or not isinstance(auth.get("user"), str)
                             or not isinstance(auth.get("password", ""), str)
                             or ":" in auth["user"]):
        raise Error("invalid_argument", "auth must be {user, password} (basic auth; no ':' "
                                        "in user)")
    filename = body.get("filename") or "scan"
    field = body.get("field_name") or "file"
    for name, value in (("filename", filename), ("field_name", field)):
        if not isinstance(value, str) or len(value) > 200 or any(c in value for c in '\r\n"\\/'):
            raise Error("invalid_argument", f"{name} must be a plain name")
    return {"url": check_url(body.get("url"), session_origin, allowed), "method": method,
            "format": kind, "page_format": page_format,
            "fields": check_pairs(body.get("fields"), "fields", False),
            "headers": check_pairs(body.get("headers"), "headers", True),
            "filename": filename, "field_name": field, "auth": auth,
            "origin": session_origin}
