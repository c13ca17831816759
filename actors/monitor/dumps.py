"""Dump files: ``dumps/<program>-<UTC time>.dump``, written atomically and rotated.

A dump is plain text for people: what happened (crash with its exit status or signal, or
hang), the Python fault-handler output (fatal error traceback, or all thread stacks asked
for with SIGUSR1), and the last lines of the program's log.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from broker.procutil import atomic_write, last_lines, pid_alive

DUMP_NAME = re.compile(r"(?P<program>.+)-(?P<time>\d{8}T\d{6}\.\d{3}Z)\.dump$")
FAULT_NAME = re.compile(r"\.(?P<program>.+)\.(?P<pid>\d+)\.fault$")


def fault_files(dumps: Path, program: str) -> list[tuple[int, Path]]:
    """Fault-handler files of ``program``: ``(pid, path)``, oldest pid first."""
    found = []
    for path in dumps.glob(f".{program}.*.fault"):
        match = FAULT_NAME.match(path.name)
        if match and match.group("program") == program:
            found.append((int(match.group("pid")), path))
    return sorted(found)


def take_dead_faults(dumps: Path, program: str) -> str:
    """Read and remove the fault files of dead processes of ``program``."""
    parts = []
    for pid, path in fault_files(dumps, program):
        if pid_alive(pid):
            continue
        try:
            text = path.read_text(errors="replace").strip()
            path.unlink()
        except OSError:
            continue
        if text:
            parts.append(f"(pid {pid})\n{text}")
    return "\n\n".join(parts)


def write(dumps: Path, logs: Path, program: str, kind: str, summary: dict, faults: str,
          log_lines: int) -> Path:
    """Write one dump and return its path."""
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
    path = dumps / f"{program}-{stamp}.dump"
    head = [f"Scanbridge dump: {program} {kind}",
            f"time: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}",
            *(f"{key}: {value}" for key, value in summary.items())]
    log_path = logs / f"{program}.log"
    body = "\n".join(head) + "\n\n"
    body += "--- fault handler (Python stacks) ---\n" + (faults or "(none written)") + "\n\n"
    body += f"--- last {log_lines} lines of {log_path} ---\n"
    body += "\n".join(last_lines(log_path, log_lines)) + "\n"
    atomic_write(path, body.encode("utf-8"), 0o600)
    return path


def listing(dumps: Path) -> list[dict]:
    """All dumps, newest first."""
    found = []
    for path in dumps.glob("*.dump"):
        match = DUMP_NAME.match(path.name)
        try:
            stat = path.stat()
        except OSError:
            continue
        found.append({"name": path.name, "program": match.group("program") if match else "",
                      "time": stat.st_mtime, "bytes": stat.st_size, "path": str(path)})
    return sorted(found, key=lambda item: (item["time"], item["name"]), reverse=True)


def rotate(dumps: Path, max_count: int, max_bytes: int) -> list[str]:
    """Remove the oldest dumps beyond the count and total-size limits; returns their names."""
    kept = listing(dumps)
    removed = []
    total = sum(item["bytes"] for item in kept)
    while kept and (len(kept) > max_count or total > max_bytes):
        oldest = kept.pop()
        try:
            os.unlink(oldest["path"])
        except OSError:
            pass
        total -= oldest["bytes"]
        removed.append(oldest["name"])
    return removed
