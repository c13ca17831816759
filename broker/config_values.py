"""Parsers of ini values: each takes the raw string and returns the value or raises
``ValueError`` with the reason, which ``config.load_file`` prefixes with ``file:line: key:``.

``config_schema.SCHEMA`` names one of these for every key; the gateway, the uploader and the
CLI use ``parse_origin``, ``parse_upload_target`` and ``path_escape`` on their own too.
"""

from __future__ import annotations

import ipaddress
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote, urlsplit


def _in_range(kind: type, lo: float, hi: float) -> Callable[[str], Any]:
    what = "a whole number" if kind is int else "a number"

    def parse(raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not {what}") from None
        if not lo <= value <= hi:  # NaN fails this too
            raise ValueError(f"{value:g} is out of range {lo:g}..{hi:g}")
        return value
    return parse


def integer(lo: int, hi: int) -> Callable[[str], int]:
    return _in_range(int, lo, hi)


def number(lo: float, hi: float) -> Callable[[str], float]:
    return _in_range(float, lo, hi)


def choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise ValueError(f"{raw!r} is not one of {', '.join(allowed)}")
        return value
    return parse


def boolean(raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def text(raw: str) -> str:
    return raw


def _items(raw: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\s]+", raw) if item.strip()]


def list_of(parse_one: Callable[[str], Any], allow_empty: bool = True) -> Callable[[str], list]:
    def parse(raw: str) -> list:
        values = [parse_one(item) for item in _items(raw)]
        if not values and not allow_empty:
            raise ValueError("needs at least one value")
        if len(set(map(str, values))) != len(values):
            raise ValueError("lists a value twice")
        return values
    return parse


def tcp_port(raw: str) -> int:
    return integer(1, 65535)(raw)


def address(raw: str) -> str:
    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        raise ValueError(f"{raw!r} is not an IP address") from None


def parse_origin(raw: str) -> str:
    """An exact web origin ``scheme://host[:port]``, lower-cased, without a path."""
    if raw.strip() == "*":
        raise ValueError("'*' would let every web site use this computer's devices; "
                         "list the origins instead")
    try:
        parts = urlsplit(raw.strip())
        parts.hostname  # noqa: B018 - raises for a malformed [IPv6] host
    except ValueError:
        raise ValueError(f"{raw!r} is not an origin like https://app.example.com") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{raw!r} is not an origin like https://app.example.com")
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{raw!r} is not an origin: it has a path, query or user")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{raw!r} has a bad port") from None
    if port == 0:
        raise ValueError(f"{raw!r} has a bad port")
    host = parts.hostname
    if parts.netloc.startswith("["):
        try:
            host = f"[{ipaddress.IPv6Address(host)}]"
        except ValueError:
            raise ValueError(f"{raw!r} has a bad IPv6 address") from None
    elif not _HOST.fullmatch(host):
        raise ValueError(f"{raw!r} has a bad host name")
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, default) else "")


def path_escape(path: str) -> str | None:
    """Why a receiver could take this URL path out of the folder it names, else None.

    Receivers differ in what they decode and resolve: ``..;/`` is ``../`` to Tomcat,
    ``\\`` and ``%5c`` are separators to IIS, some decode twice, fold ``%u002e``, overlong
    UTF-8 or full-width dots. So each segment is decoded until nothing changes, then it may
    hold no separator and, its ``;`` parameters aside, may not be made of dots alone."""
    if "\\" in path or re.search(r"%u[0-9a-f]{4}", path, re.IGNORECASE):
        return "a backslash or a %u escape"
    for raw in path.split("/"):
        segment = raw
        while "%" in segment:  # each pass that changes it makes it shorter
            try:
                decoded = unquote(segment, errors="strict")
            except UnicodeDecodeError:
                return f"the segment {raw!r} (not UTF-8 once decoded)"
            if decoded == segment:
                break
            segment = decoded
        segment = unicodedata.normalize("NFKC", segment)
        if "/" in segment or "\\" in segment:
            return f"the segment {raw!r} (an encoded / or \\)"
        if re.fullmatch(r"[.\s]+", segment.split(";")[0]):
            return f"the segment {raw!r} (a . or .. segment)"
    return None


def parse_upload_target(raw: str) -> str:
    """An upload target prefix: an origin, optionally with a path (no query or user)."""
    try:
        parts = urlsplit(raw.strip())
    except ValueError:
        raise ValueError(f"{raw!r} is not a URL like https://files.example.com/in/") from None
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{raw!r}: an upload target has no query, fragment or user")
    escape = path_escape(parts.path)
    if escape:
        raise ValueError(f"{raw!r}: the path has {escape}; write it as a receiver reads it")
    origin = parse_origin(f"{parts.scheme}://{parts.netloc}")
    return origin + (parts.path if parts.path not in ("", "/") else "")


# DNS labels (letters, digits, hyphens; punycode for others) or a dotted IPv4 address.
_HOST = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")


def endpoint(raw: str) -> str:
    if not raw:
        return ""
    match = re.fullmatch(r"tcp://([^:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})", raw)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"{raw!r} is not an endpoint like tcp://0.0.0.0:18640")
    return raw


def _z85_key(raw: str) -> str:
    if not re.fullmatch(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}", raw):
        raise ValueError(f"{raw!r} is not a 40-character Z85 CURVE public key")
    return raw


# Services only this machine's own programs may serve: a remote key never registers as one.
LOCAL_SERVICES = ("broker", "buffer", "gateway", "uploader", "camera", "scanner", "monitor",
                  "certhelper", "escl")
CLIENT_RIGHT = "client"  # in a curve_clients entry: the key may also send requests


@dataclass(frozen=True)
class CurveClient:
    key: str  # Z85 public key
    services: tuple[str, ...]  # the services it may register as
    client: bool  # may send requests to any service, as a local program can


def curve_clients(raw: str) -> list[CurveClient]:
    """``KEY[:name,name...] ...``: a 40-character key opens an entry, the words after its
    ``:`` are services it may serve or ``client``; a bare key serves ``ocr``."""
    entries: list[tuple[str, list[str] | None]] = []
    for token in _items(raw):
        if len(token) >= 40:
            key, rest = _z85_key(token[:40]), token[40:]
            if rest and not rest.startswith(":"):
                raise ValueError(f"{token!r} is not KEY or KEY:service,...")
            entries.append((key, [rest[1:]] if rest else None))
        elif entries and entries[-1][1] is not None:
            entries[-1][1].append(token)
        else:
            raise ValueError(f"{token!r} follows no KEY:service (write KEY:service,service)")
    result = []
    for key, names in entries:
        names = ["ocr"] if names is None else [n for n in names if n]
        if not names:
            raise ValueError(f"{key[:8]}...: name a service or client after ':'")
        for name in names:
            if name in LOCAL_SERVICES:
                raise ValueError(f"{key[:8]}...: {name} is a local service; no remote key "
                                 "may serve it")
            if name != CLIENT_RIGHT and not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", name):
                raise ValueError(f"{key[:8]}...: {name!r} is not a service name")
        if key in (entry.key for entry in result):
            raise ValueError(f"{key[:8]}... is listed twice")
        result.append(CurveClient(key, tuple(n for n in dict.fromkeys(names)
                                             if n != CLIENT_RIGHT), CLIENT_RIGHT in names))
    return result


def pem_file(raw: str) -> str:
    if raw and not os.path.isfile(raw):
        raise ValueError(f"{raw!r} is not a file (give the absolute path of a PEM file)")
    return raw


def user(raw: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]*\$?", raw, re.IGNORECASE):
        raise ValueError(f"{raw!r} is not a user name")
    return raw


def local_users(raw: str) -> list[str]:
    """``owner``, ``any``, or ``owner``, user names and ``@group`` names."""
    users = list_of(lambda item: item if item in ("owner", "any") or (
        item.startswith("@") and user(item[1:])) else user(item), allow_empty=False)(raw)
    if "any" in users and len(users) > 1:
        raise ValueError("any already lets every account in; list nothing else")
    return users


def ocr_languages(raw: str) -> str:
    names = [n.strip() for n in raw.split("+")]
    if not all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names):
        raise ValueError(f"{raw!r} is not a Tesseract language list like eng or deu+eng")
    return "+".join(names)


CAMERA_SCHEMES = ("http", "https", "rtsp", "rtsps", "rtmp")  # and video files


def _camera_target(name: str, target: str) -> str:
    """An MJPEG camera, a stream, or a video file's path (``file://`` URLs become paths).

    Any other scheme is refused: OpenCV's FFmpeg would open ftp://, tcp:, concat: and the
    rest of its protocols, and a camera's password would go wherever they lead."""
    parts = urlsplit(target)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ValueError(f"camera {name!r}: a file:// URL names a file of this machine "
                             "(file:///path)")
        return unquote(parts.path)
    if scheme and scheme not in CAMERA_SCHEMES:
        raise ValueError(f"camera {name!r}: {scheme}: is not a camera source (use http(s):// "
                         "for an MJPEG camera, rtsp(s):// or rtmp:// for a stream, or a video "
                         "file's path)")
    if scheme and not parts.hostname:
        raise ValueError(f"camera {name!r}: the {scheme}:// URL has no host")
    return target


def camera_sources(raw: str) -> dict[str, str]:
    """``name=target, ...`` -> {name: target}; names are what source ids are made of."""
    sources: dict[str, str] = {}
    for item in [part.strip() for part in raw.split(",") if part.strip()]:  # paths may hold spaces
        name, sep, target = item.partition("=")
        name, target = name.strip(), target.strip()
        if not sep or not target:
            raise ValueError(f"{item!r} is not name=URL-or-file")
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
            raise ValueError(f"camera name {name!r}: use a-z, 0-9, - and _ (up to 40)")
        if name in sources:
            raise ValueError(f"camera {name!r} is listed twice")
        sources[name] = _camera_target(name, target)
    return sources


def program(raw: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", raw):
        raise ValueError(f"{raw!r} is not a program name")
    return raw
