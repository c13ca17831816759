"""The home folder and the three ini files, checked against one schema.

``SCANBRIDGE_HOME`` (default: the checkout) holds ``ini/ logs/ dumps/ cache/ cert/ upload/
run/``. The ini files are ``DSConfiguration.ini`` (ports, limits, timings),
``service.ini`` (names) and ``user_config.ini`` (access). A missing file means "all
defaults". An unknown section or key, or a bad value, raises ``ConfigError`` whose text is
``file:line: key: reason`` - the CLI prints it as it is, never a traceback.

Every key is declared once in ``SCHEMA`` with its default and a one-line meaning;
``docs/configuration.md`` and the shipped files follow it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

CHECKOUT = Path(__file__).resolve().parent.parent
INI_FILES = ("DSConfiguration.ini", "service.ini", "user_config.ini")


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the one line shown to the operator."""


# --- value parsers: each takes the raw string and returns the value or raises ValueError.

def _number(kind: type, lo: float, hi: float) -> Callable[[str], Any]:
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


def _int(lo: int, hi: int) -> Callable[[str], int]:
    return _number(int, lo, hi)


def _float(lo: float, hi: float) -> Callable[[str], float]:
    return _number(float, lo, hi)


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in allowed:
            raise ValueError(f"{raw!r} is not one of {', '.join(allowed)}")
        return value
    return parse


def _bool(raw: str) -> bool:
    value = raw.lower()
    if value in ("true", "yes", "on", "1"):
        return True
    if value in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"{raw!r} is not true or false")


def _text(raw: str) -> str:
    return raw


def _items(raw: str) -> list[str]:
    return [item.strip() for item in re.split(r"[,\s]+", raw) if item.strip()]


def _list_of(parse_one: Callable[[str], Any], allow_empty: bool = True) -> Callable[[str], list]:
    def parse(raw: str) -> list:
        values = [parse_one(item) for item in _items(raw)]
        if not values and not allow_empty:
            raise ValueError("needs at least one value")
        if len(set(map(str, values))) != len(values):
            raise ValueError("lists a value twice")
        return values
    return parse


def _port(raw: str) -> int:
    return _int(1, 65535)(raw)


def _address(raw: str) -> str:
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


def _endpoint(raw: str) -> str:
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


def _curve_clients(raw: str) -> list[CurveClient]:
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


def _pem_file(raw: str) -> str:
    if raw and not os.path.isfile(raw):
        raise ValueError(f"{raw!r} is not a file (give the absolute path of a PEM file)")
    return raw


def _user(raw: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_.-]*\$?", raw, re.IGNORECASE):
        raise ValueError(f"{raw!r} is not a user name")
    return raw


def _local_users(raw: str) -> list[str]:
    """``owner``, ``any``, or ``owner``, user names and ``@group`` names."""
    users = _list_of(lambda item: item if item in ("owner", "any") or (
        item.startswith("@") and _user(item[1:])) else _user(item), allow_empty=False)(raw)
    if "any" in users and len(users) > 1:
        raise ValueError("any already lets every account in; list nothing else")
    return users


def _ocr_languages(raw: str) -> str:
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


def _camera_sources(raw: str) -> dict[str, str]:
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


def _program(raw: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", raw):
        raise ValueError(f"{raw!r} is not a program name")
    return raw


@dataclass(frozen=True)
class Key:
    default: str  # the value as written in the shipped ini file
    parse: Callable[[str], Any]
    doc: str  # one line for docs/configuration.md


# file -> section -> key -> Key. A key named "*_suffix" matches any "<program>_suffix".
SCHEMA: dict[str, dict[str, dict[str, Key]]] = {
    "DSConfiguration.ini": {
        # Keys above the first [section], as the commercial service writes them; read into
        # the [access] namespace (config.access).
        "": {
            "Access-Control-Allow-Origin": Key(
                "", _list_of(parse_origin),
                "web origins allowed to use the service, as the commercial service's "
                "DSConfiguration.ini lists them (user_config.ini allowed_origins adds more)"),
        },
        "ports": {
            "http": Key("18622,18625", _list_of(_port, allow_empty=False),
                        "HTTP ports the gateway listens on"),
            "https": Key("18623,18626", _list_of(_port),
                         "HTTPS ports the gateway listens on (certificate: cert/, see "
                         "[certhelper]); empty = none"),
        },
        "gateway": {
            "session_close_delay": Key("30", _float(0, 86400),
                                       "seconds a session lives on after its last event "
                                       "socket closed (a reload reconnects in time); 0 = "
                                       "until session_expiry"),
            "event_backlog": Key("1000", _int(10, 1000000),
                                 "events kept per session for a socket that reconnects "
                                 "with ?since="),
            "idle_timeout": Key("15", _float(1, 3600),
                                "seconds a connection may idle, or take to send its "
                                "request headers, before it is closed"),
            "body_timeout": Key("120", _float(1, 86400),
                                "seconds a request body may take to arrive"),
            "max_json_kb": Key("1024", _int(1, 65536), "largest JSON request body"),
            "max_sockets_per_session": Key("16", _int(1, 1000),
                                           "event sockets one session may hold open"),
            "max_sessions": Key("500", _int(1, 1000000),
                                "sessions open through the gateway at once (closed and "
                                "expired ones free their place)"),
            "max_sessions_per_origin": Key("100", _int(1, 1000000),
                                           "sessions one web origin may hold open (local "
                                           "programs sending no Origin count as one)"),
            "max_viewers": Key("16", _int(1, 10000), "camera live views served at once"),
        },
        "certhelper": {
            "server_days": Key("397", _int(2, 397),
                               "days a server certificate of the local CA is valid "
                               "(browsers accept at most 397)"),
            "renew_days": Key("30", _int(1, 396),
                              "days before expiry the server certificate is renewed "
                              "(fewer than server_days)"),
            "check_interval": Key("3600", _float(1, 86400),
                                  "seconds between checks of expiry and Firefox profiles "
                                  "(file changes are acted on at once)"),
            "firefox_trust": Key("true", _bool,
                                 "put the local CA into Firefox profiles, new ones "
                                 "included (scanbridge untrust stops it)"),
            "firefox_users": Key("", _list_of(_user),
                                 "users whose Firefox profiles trust the local CA; "
                                 "empty = the user the service runs as"),
        },
        "uploader": {
            "workers": Key("2", _int(1, 32), "uploads sent at once"),
            "max_attempts": Key("10", _int(1, 1000),
                                "attempts per upload before it fails (connection errors, "
                                "timeouts, 5xx and 429 are retried; other 4xx are not)"),
            "backoff_first": Key("1", _float(0.01, 3600),
                                 "seconds before the first retry; doubled each attempt, "
                                 "with jitter"),
            "backoff_max": Key("300", _float(0.01, 86400),
                               "longest wait between two attempts (also caps Retry-After)"),
            "connect_timeout": Key("10", _float(0.1, 600),
                                   "seconds to connect to the receiver"),
            "timeout": Key("60", _float(0.1, 3600),
                           "seconds one write to the receiver, or the wait for its "
                           "answer, may block before the attempt fails"),
            "chunk_kb": Key("256", _int(4, 65536), "size of the pieces the body is sent in"),
            "max_redirects": Key("3", _int(0, 20),
                                 "307/308 redirects followed, to the same origin only"),
            "ca_bundle": Key("", _pem_file,
                             "PEM file of CAs trusted for HTTPS receivers instead of the "
                             "system's (verification is always on)"),
            "job_keep": Key("86400", _float(0, 366 * 86400),
                            "seconds a finished job's state stays queryable"),
        },
        "barcode": {
            "engine": Key("zxing", _choice("zxing", "zbar"),
                          "barcode engine: zxing (zxing-cpp, every format) or zbar (pyzbar: "
                          "linear formats and QR)"),
        },
        "ocr": {
            "ocr_workers": Key("0", _int(0, 256),
                               "OCR worker processes on this machine, load-balanced by the "
                               "broker; 0 = one per core"),
            "default_lang": Key("eng", _ocr_languages,
                                "language(s) when a request names none, e.g. eng or deu+eng "
                                "(installed: tesseract-ocr-* packages)"),
            "auto_rotate": Key("true", _bool,
                               "detect each page's orientation and read it upright (a "
                               "request's rotate overrides)"),
        },
        "camera": {
            "sources": Key("", _camera_sources,
                           "named camera sources, name=URL-or-file, comma-separated: an MJPEG "
                           "camera (http://...), an RTSP stream (rtsp://...) or a video file "
                           "(played in a loop, paced at its frame rate)"),
            "v4l2": Key("true", _bool, "list the machine's V4L2 cameras (/dev/video*)"),
            "max_fps": Key("30", _float(1, 120),
                           "highest live-view frame rate sent to one viewer (?fps= asks less)"),
            "jpeg_quality": Key("90", _int(50, 100),
                                "JPEG quality of frames from sources that do not send JPEG "
                                "(JPEG frames are kept as they come)"),
            "release_after": Key("2", _float(0.2, 600),
                                 "seconds a camera stays open after its last viewer or "
                                 "capture left"),
        },
        "network": {
            "bind": Key("127.0.0.1, ::1", _list_of(_address, allow_empty=False),
                        "addresses the gateway binds; keep loopback unless you know why"),
        },
        "log": {
            "level": Key("info", _choice("debug", "info", "warning", "error"),
                         "lowest level written to logs/<program>.log "
                         "(supervisor.conf sets their rotation)"),
        },
        "heartbeat": {
            "interval": Key("1.0", _float(0.05, 60), "seconds between heartbeats, both ways"),
            "liveness": Key("3", _int(2, 100),
                            "missed heartbeats after which a peer counts as dead"),
        },
        "broker": {
            "request_timeout": Key("30", _float(0.1, 86400),
                                   "default seconds a request may wait and run"),
            "spin_us": Key("500", _int(0, 100000),
                           "microseconds the broker keeps polling after traffic before it "
                           "sleeps: lower latency in bursts; 0 = never spin"),
            "tcp_endpoint": Key("", _endpoint,
                                "optional CURVE-secured endpoint for remote actors, "
                                "e.g. tcp://0.0.0.0:18640; empty = none"),
            "curve_clients": Key("", _curve_clients,
                                 "remote actors allowed on tcp_endpoint: KEY[:service,...] "
                                 "(Z85 public key; the services it may serve, default ocr; "
                                 "client lets it send requests too), separated by spaces"),
            "tcp_max_message_mb": Key("256", _int(1, 2047),
                                      "MB a message from tcp_endpoint may have (one frame or "
                                      "all together); a peer sending more is dropped"),
        },
        "monitor": {
            "hang_dump_wait": Key("1.0", _float(0.1, 30),
                                  "seconds to wait for a hung actor's stack dump"),
            "dump_count": Key("50", _int(1, 100000), "dump files kept (oldest removed first)"),
            "dump_total_mb": Key("100", _int(1, 100000), "total size of dumps/ kept"),
            "watchdog": Key("15", _float(1, 3600),
                            "seconds the monitor's own loop may stall before it dumps its "
                            "stacks and exits, so supervisord restarts it"),
            "log_lines": Key("200", _int(10, 100000),
                             "last log lines of the actor written into a crash dump"),
        },
        "ondemand": {
            "programs": Key("scanner, camera", _list_of(_program),
                            "programs started when needed (a session is open or a request "
                            "waits) and stopped when idle"),
            "idle_stop": Key("60", _float(0, 86400),
                             "seconds an on-demand program may stay idle before it stops"),
            "*_idle_stop": Key("60", _float(0, 86400),
                               "the same for one program, e.g. scanner_idle_stop"),
        },
        "limits": {
            "max_body_mb": Key("64", _int(1, 4096), "largest HTTP request body accepted"),
            "max_image_megapixels": Key("200", _int(1, 4000),
                                        "largest image accepted (width x height, "
                                        "decompression-bomb guard)"),
            "max_import_mb": Key("512", _int(1, 65536), "largest file accepted for import"),
            "max_pdf_pages": Key("2000", _int(1, 1000000),
                                 "most pages accepted in one imported PDF or TIFF"),
        },
        "buffer": {
            "buffer_memory_limit": Key("512", _int(16, 1048576),
                                       "MB of decoded images the buffer keeps in memory "
                                       "(least recently used are dropped; disk holds all)"),
            "disk_cache_limit": Key("10240", _int(1, 1 << 30),
                                    "MB the buffer may use in cache/ (pages, edits, "
                                    "encodings); over it adds fail with disk_full"),
            "session_expiry": Key("86400", _float(1, 366 * 86400),
                                  "seconds a session unused by any page is kept before "
                                  "its images are removed"),
            "blank_threshold": Key("0.1", _float(0, 100),
                                   "percent of ink pixels under which a page counts as "
                                   "blank"),
            "import_dpi": Key("200", _int(10, 1200),
                              "resolution at which imported PDF pages are rasterised"),
            "png_compression": Key("1", _int(0, 9),
                                   "zlib level of losslessly stored pages "
                                   "(1 = fast, 9 = small; 0 = uncompressed TIFF, the "
                                   "fastest and largest)"),
            "threads": Key("3", _int(1, 64), "requests the buffer works on at once"),
        },
        "scanner": {
            "test_scanners": Key("true", _bool, "list the embedded SANE test scanners "
                                 "(test:0, test:1; configured in ini/sane.d/)"),
            "system_scanners": Key("true", _bool, "list the scanners of this system's SANE "
                                   "backends (USB, network/eSCL)"),
            "max_pages": Key("5000", _int(1, 1000000),
                             "most pages one scan job may read (guards a feeder that "
                             "never reports empty)"),
            "pages_in_flight": Key("2", _int(1, 16),
                                   "pages of one job the buffer compresses and writes at "
                                   "once (they are listed in scan order)"),
        },
    },
    "service.ini": {
        "service": {
            "name": Key("scanbridge", _program, "short name used in logs and unit names"),
            "display_name": Key("Scanbridge", _text, "name shown on the welcome page"),
        },
    },
    "user_config.ini": {
        "access": {
            "allowed_origins": Key("", _list_of(parse_origin),
                                   "web origins allowed to use the service "
                                   "(add with: scanbridge allow ORIGIN)"),
            "upload_targets": Key("", _list_of(parse_upload_target),
                                  "URLs (an origin, or an origin and a path prefix) "
                                  "uploads may go to besides the page's own origin"),
            "local_users": Key("owner", _local_users,
                               "local accounts that may use the service: owner (the "
                               "account it runs as), any, or user names and @groups"),
        },
    },
}


@dataclass(frozen=True)
class Line:
    """One ``key = value`` of an ini file with where it was written."""
    section: str
    key: str
    value: str
    number: int


def read_ini(path: Path) -> list[Line | tuple[str, int]]:
    """Parse an ini file keeping line numbers: ``Line`` items and ``(section, line)``."""
    items: list[Line | tuple[str, int]] = []
    section = None
    last: Line | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}:1: (file): not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}:1: (file): cannot read: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0] in " \t" and last is not None:  # continuation of a long value
            last = Line(last.section, last.key, f"{last.value} {stripped}", last.number)
            items[-1] = last
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise ConfigError(f"{path}:{number}: {stripped}: section header lacks ']'")
            section = stripped[1:-1].strip()
            items.append((section, number))
            last = None
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)\s*[=:]\s*(.*)$", stripped)
        if not match:
            raise ConfigError(f"{path}:{number}: {stripped[:40]}: not 'key = value'")
        last = Line(section or "", match.group(1), match.group(2).strip(), number)
        items.append(last)
    return items


def _schema_key(section: dict[str, Key], key: str) -> Key | None:
    if key in section:
        return section[key]
    for pattern, spec in section.items():
        if pattern.startswith("*") and key.endswith(pattern[1:]) and len(key) > len(pattern) - 1:
            return spec
    return None


def load_file(path: Path, name: str) -> dict[str, dict[str, Any]]:
    """Values of one ini file (defaults filled in); raises ConfigError on any problem."""
    schema = SCHEMA[name]
    values = {sec: {k: spec.parse(spec.default) for k, spec in keys.items() if "*" not in k}
              for sec, keys in schema.items()}
    if not path.exists():
        return values
    seen_sections: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for item in read_ini(path):
        if isinstance(item, tuple):
            section, number = item
            if section not in schema:
                known = ", ".join(f"[{s}]" for s in schema if s)
                raise ConfigError(f"{path}:{number}: [{section}]: unknown section "
                                  f"(this file has {known})")
            if section in seen_sections:
                raise ConfigError(f"{path}:{number}: [{section}]: section written twice")
            seen_sections.add(section)
            continue
        spec = _schema_key(schema.get(item.section, {}), item.key)
        if spec is None and not item.section:
            raise ConfigError(f"{path}:{item.number}: {item.key}: key before any [section]")
        if spec is None:
            known = ", ".join(schema[item.section])
            raise ConfigError(f"{path}:{item.number}: {item.key}: unknown key in "
                              f"[{item.section}] (known: {known})")
        if (item.section, item.key) in seen:
            raise ConfigError(f"{path}:{item.number}: {item.key}: key written twice")
        seen.add((item.section, item.key))
        try:
            values[item.section][item.key] = spec.parse(item.value)
        except ValueError as exc:
            raise ConfigError(f"{path}:{item.number}: {item.key}: {exc}") from None
    return values


class Home:
    """The folders of one Scanbridge home (see module docstring)."""

    # 0700, all of them: sockets, keys and pages, but also camera passwords (ini/), upload
    # URLs (logs/) and stacks (dumps/) that other local users must not read.
    PRIVATE = ("ini", "logs", "dumps", "run", "cert", "cache", "upload")
    UMASK = 0o077  # for every process writing in the home (supervisor.conf says it too)

    def __init__(self, root: str | os.PathLike | None = None):
        root = root or os.environ.get("SCANBRIDGE_HOME") or CHECKOUT
        self.root = Path(root).resolve()
        for name in ("ini", "logs", "dumps", "cache", "cert", "upload", "run"):
            setattr(self, name, self.root / name)
        self.buffer = self.cache / "buffer"  # the buffer's pages and saved documents

    def ensure(self) -> list[str]:
        """Create the folders, mode 0700 even if they existed.

        A ``cert/`` that cannot be made so is returned as a problem instead of raised: it
        only costs HTTPS, and the service must still serve HTTP. So is an ``ini/`` of
        another owner (shared, read-only configuration).
        """
        problems = []
        for name in self.PRIVATE:
            folder: Path = getattr(self, name)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o700)
            except OSError as exc:
                if name == "cert":
                    problems.append(f"{folder}: {exc.strerror or exc}: HTTPS will not be "
                                    "served")
                elif name == "ini" and folder.is_dir():
                    problems.append(f"{folder}: {exc.strerror or exc}: others may read it")
                else:
                    raise
        return problems

    @property
    def incoming(self) -> Path:
        """Request bodies the gateway spools for the buffer (an import too big to hold in
        memory and to send as a message)."""
        return self.cache / "incoming"

    def ipc(self, name: str) -> str:
        return f"ipc://{self.run / name}"

    @property
    def broker_endpoint(self) -> str:
        return self.ipc("broker.sock")

    @property
    def events_in(self) -> str:
        return self.ipc("events-in.sock")

    @property
    def events_out(self) -> str:
        return self.ipc("events-out.sock")


class Config(SimpleNamespace):
    """All settings: ``config.ports.http``, ``config.access.allowed_origins``, ...

    Sections are namespaces; ``config.home`` is the ``Home``.
    """

    home: Home

    def ocr_workers(self) -> int:
        return self.ocr.ocr_workers or os.cpu_count() or 1

    def idle_stop(self, program: str) -> float:
        specific = getattr(self.ondemand, f"{program}_idle_stop", None)
        return self.ondemand.idle_stop if specific is None else specific


def load(home: Home | None = None) -> Config:
    """Read and check all three ini files of ``home``; raise ConfigError on any problem."""
    home = home or Home()
    sections: dict[str, SimpleNamespace] = {}
    for name in INI_FILES:
        for section, values in load_file(home.ini / name, name).items():
            # Sections of the same name in two files share one namespace.
            sections.setdefault(section or "access", SimpleNamespace()).__dict__.update(values)
    cfg = Config(home=home, **sections)
    _check_together(cfg)
    return cfg


def _check_together(cfg: Config) -> None:
    """Rules between keys, reported at the line of the second key."""
    def fail(section: str, key: str, reason: str) -> None:
        path = cfg.home.ini / "DSConfiguration.ini"
        number = 1
        if path.exists():
            for item in read_ini(path):
                if isinstance(item, Line) and (item.section, item.key) == (section, key):
                    number = item.number
        raise ConfigError(f"{path}:{number}: {key}: {reason}")

    both = set(cfg.ports.http) & set(cfg.ports.https)
    if both:
        fail("ports", "https", f"port {min(both)} is also an HTTP port")
    if cfg.certhelper.renew_days >= cfg.certhelper.server_days:
        fail("certhelper", "renew_days", f"{cfg.certhelper.renew_days} is not fewer than "
             f"server_days ({cfg.certhelper.server_days}): the certificate would be "
             "renewed all the time")


def load_or_exit(home: Home | None = None) -> Config:
    """``load()`` for program entry points: a bad file ends the process with one line."""
    try:
        return load(home)
    except ConfigError as exc:
        print(f"scanbridge: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(78) from None  # EX_CONFIG


def render_defaults(name: str) -> str:
    """The text of a shipped ini file: every key with its default and meaning."""
    out = []
    for section, keys in SCHEMA[name].items():
        if section:
            out.append(f"[{section}]")
        for key, spec in keys.items():
            if "*" in key:
                out.append(f"; {key.replace('*', '<program>')} = {spec.default}  ({spec.doc})")
                continue
            out.append(f"; {spec.doc}")
            out.append(f"{key} = {spec.default}".rstrip())
        out.append("")
    return "\n".join(out)
