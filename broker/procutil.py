"""Small process and file helpers shared by the broker, the monitor and the CLI."""

from __future__ import annotations

import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, BinaryIO, Callable


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file so readers see either nothing or all of it (temp, fsync, rename)."""
    atomic_write_with(path, lambda out: out.write(data), mode)


def atomic_write_with(path: Path, write: Callable[[BinaryIO], Any], mode: int = 0o644,
                      durable: bool = True) -> int:
    """``atomic_write`` for content produced by ``write(file)``; returns the size.

    ``durable`` also fsyncs the file and its folder, so the new name survives a power
    cut; a cache file can skip that (a rename alone is atomic against a crash).
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "w+b") as out:  # readable too: a TIFF writer seeks back and reads
            write(out)
            out.flush()
            size = out.tell()
            if durable:
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return size


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of a text file (empty if it does not exist)."""
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - count * 2000))  # lines are short; read just the tail
            return [line.decode("utf-8", "replace")
                    for line in deque(log.read().splitlines(), maxlen=count)]
    except OSError:
        return []
