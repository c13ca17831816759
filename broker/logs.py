"""Structured logging: one JSON object per line on stderr.

Under supervisord stderr goes to ``logs/<program>.log`` (rotated by supervisord), so one
writer owns each file even when a program runs several processes. A line looks like::

    {"ts": "2026-11-25T17:10:28.123Z", "level": "info", "actor": "broker",
     "pid": 4242, "msg": "worker ready", "service": "ocr", "worker": "9f2c"}

``scanbridge logs ACTOR`` shows them as text.

Records carry what requests sent (paths, origins, URLs), so nothing in a record may steer
the terminal that shows it or start a line of its own: control characters are escapes in
the file (``\u001b``) and when shown as text (``\x1b``). URLs lose their secrets before
they are logged or listed: ``mask_url``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_actor = "scanbridge"
# json.dumps escapes C0 controls; DEL, C1 controls (U+009B is CSI to some terminals) and
# the Unicode line separators it writes as they are.
_RAW_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*[^\s'\"<>.,;:)\]}]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
MASK = "***"


def _escape(match: re.Match) -> str:
    if match.group() in _SHORT:
        return _SHORT[match.group()]
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character (newlines too) written as an escape."""
    return _CONTROL.sub(_escape, text)


def mask_url(url: str) -> str:
    """``url`` without its secrets: the password of ``user:password@`` and every query
    value become ``***`` (``?key=***``). Anything that is not a URL comes back as it is."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a broken [IPv6] host: nothing can be told apart; hide it all
        return MASK if "://" in url else url
    if not parts.scheme or not (parts.netloc or parts.query):
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"
    query = "&".join(f"{pair.split('=', 1)[0]}={MASK}" if "=" in pair else MASK
                     for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def mask_urls(text: str) -> str:
    """``mask_url`` for every URL inside ``text`` (messages, errors, tracebacks)."""
    return _URL.sub(lambda match: mask_url(match.group()), text) if "://" in text else text


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_urls(value)
    if isinstance(value, (list, tuple)):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "actor": _actor,
            "pid": record.process,
            "msg": mask_urls(record.getMessage()),
        }
        line.update(_masked(getattr(record, "fields", {})))
        if record.exc_info:
            line["traceback"] = mask_urls(self.formatException(record.exc_info))
        return _RAW_IN_JSON.sub(_escape_json, json.dumps(line, default=str,
                                                         ensure_ascii=False))


def _escape_json(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


class Log:
    """A logger whose calls take fields: ``log.info("worker ready", service="ocr")``."""

    def __init__(self, name: str):
        self._logger = logging.getLogger(name)

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: bool = False):
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info=True)


def setup(actor: str, level: str = "info") -> Log:
    """Send all logging of this process to stderr as JSON lines, tagged with ``actor``."""
    global _actor
    _actor = actor
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.captureWarnings(True)
    # Python prints an uncaught exception to stderr as plain lines, which would reach the
    # log file with whatever text the exception carries: it becomes a record too.
    sys.excepthook = lambda kind, value, trace: _uncaught((kind, value, trace), "MainThread")
    threading.excepthook = lambda args: None if issubclass(args.exc_type, SystemExit) else \
        _uncaught((args.exc_type, args.exc_value, args.exc_traceback),
                  getattr(args.thread, "name", ""))
    return Log(actor)


def _uncaught(exc_info: tuple, thread: str) -> None:
    logging.getLogger(_actor).error("uncaught exception", exc_info=exc_info,
                                    extra={"fields": {"thread": thread}})


def format_line(raw: str) -> str:
    """A JSON log line as text for people; other lines are returned as they are, but
    escaped. A traceback keeps its lines, each indented, so none looks like a record."""
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict):
            raise ValueError
    except ValueError:
        return printable(raw.rstrip("\n"))
    head = f"{entry.pop('ts', '')} {entry.pop('level', '').upper():7} " \
           f"{entry.pop('actor', '')}[{entry.pop('pid', '')}] {entry.pop('msg', '')}"
    trace = entry.pop("traceback", None)
    rest = " ".join(f"{k}={v}" for k, v in entry.items())
    text = printable(f"{head} {rest}".rstrip())
    if not trace:
        return text
    return "\n".join([text, *(f"    {printable(line)}" for line in str(trace).splitlines())])
