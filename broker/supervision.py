"""Talking to supervisord: its XML-RPC interface over ``run/supervisor.sock``.

The monitor uses it to restart, start and stop actors; the CLI to start, stop and show
the service. ``supervisorctl -c supervisor.conf ...`` reaches the same socket.
"""

from __future__ import annotations

import os
import socket
import sys
import xmlrpc.client
from pathlib import Path
from typing import Any

from supervisor.xmlrpc import SupervisorTransport

from .config import Config, Home, shipped

SUPERVISOR_CONF = shipped("supervisor.conf")


class NotRunning(Exception):
    """supervisord is not running for this home."""


def environment(home: Home, cfg: Config) -> dict[str, str]:
    """What supervisor.conf expands: the home, the Python of this install, OCR workers."""
    return {**os.environ, "SCANBRIDGE_HOME": str(home.root),
            "SCANBRIDGE_PYTHON": os.environ.get("SCANBRIDGE_PYTHON") or sys.executable,
            "SCANBRIDGE_OCR_WORKERS": str(cfg.ocr_workers())}


def socket_answers(path: Path) -> bool:
    """True when a process accepts connections on the unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX)
    probe.settimeout(2.0)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def socket_path(home: Home) -> Path:
    return home.run / "supervisor.sock"


def rpc(home: Home) -> Any:
    """A proxy for ``supervisor.*`` calls; raises NotRunning when nobody answers."""
    path = socket_path(home)
    if not socket_answers(path):
        raise NotRunning(f"supervisord is not running for {home.root}")
    transport = SupervisorTransport(None, None, f"unix://{path}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor


def processes(home: Home) -> list[dict]:
    """``getAllProcessInfo()``: name, group, statename, pid, start, description, ..."""
    return rpc(home).getAllProcessInfo()


def full_name(info: dict) -> str:
    """The name supervisorctl takes: ``group:name`` when a group has several processes."""
    return info["name"] if info["group"] == info["name"] else f"{info['group']}:{info['name']}"


def always_running(home: Home, ondemand: list[str]) -> set[str]:
    """Programs that must be RUNNING: started by supervisord itself (``autostart``) and
    not on demand. Others (e.g. the scanner) run only while wanted."""
    return {info["name"] for info in rpc(home).getAllConfigInfo()
            if info["autostart"] and info["group"] not in ondemand}
