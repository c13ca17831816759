"""Structured logging: one JSON object per line on stderr.

Under supervisord stderr goes to ``logs/<program>.log`` (rotated by supervisord), so one
writer owns each file even when a program runs several processes. A line looks like::

    {"ts": "2026-11-25T17:10:28.123Z", "level": "info", "actor": "broker",
     "pid": 4242, "msg": "worker ready", "service": "ocr", "worker": "9f2c"}

``scanbridge logs ACTOR`` shows them as text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_actor = "scanbridge"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "actor": _actor,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


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
    return Log(actor)


def format_line(raw: str) -> str:
    """A JSON log line as text for people; other lines are returned as they are."""
    try:
        entry = json.loads(raw)
        if not isinstance(entry, dict):
            raise ValueError
    except ValueError:
        return raw.rstrip("\n")
    head = f"{entry.pop('ts', '')} {entry.pop('level', '').upper():7} " \
           f"{entry.pop('actor', '')}[{entry.pop('pid', '')}] {entry.pop('msg', '')}"
    trace = entry.pop("traceback", None)
    rest = " ".join(f"{k}={v}" for k, v in entry.items())
    text = f"{head} {rest}".rstrip()
    return f"{text}\n{trace}" if trace else text
