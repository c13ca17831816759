"""The buffer's page files: durable writes, the derived cache and the disk limit.

``files/ab/<name>`` holds one file per stored version's pixels, never rewritten;
``derived/`` the encodings and thumbnails made on demand, a cache dropped least recently
used first. Both count in ``disk_cache_limit``, and ``RESERVE`` of the disk stays free.

``write`` returns once its file is fsynced and renamed into place, so that the caller can
then commit the row naming it; ``remove_files`` is for files no row names any more
(which ones, the index says). How the two are ordered is the rule in ``store``.
"""

from __future__ import annotations

import errno
import os
import secrets
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Callable

from broker.procutil import atomic_write_with
from broker.protocol import Error

DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# Free space never used for pages, so the index can still commit deletes on a full disk.
RESERVE = 2 << 20


def new_id(nbytes: int = 8) -> str:
    return secrets.token_hex(nbytes)


class PageFiles:
    """The files of ``files/`` and ``derived/`` and their sizes; safe from several threads."""

    def __init__(self, root: Path, disk_limit: int):
        self.root = root
        self.files = root / "files"
        self.derived = root / "derived"
        self.disk_limit = disk_limit
        for folder in (root, self.files, self.derived):
            folder.mkdir(parents=True, exist_ok=True)
        self._disk_lock = threading.Lock()
        self._stored_bytes = 0  # files/ (pages and edits)
        self._derived: OrderedDict[str, int] = OrderedDict()  # derived name -> size, LRU

    # --- files

    def path(self, name: str) -> Path:
        return self.files / name[:2] / name

    def write(self, ext: str, write: Callable[[BinaryIO], Any]) -> tuple[str, int]:
        """Write a new page file durably; returns (name, size). Raises ``disk_full``."""
        name = f"{new_id(16)}.{ext}"
        path = self.path(name)
        path.parent.mkdir(exist_ok=True)
        self._make_room(0)
        self._check_free()
        try:
            size = atomic_write_with(path, write, 0o600)
        except OSError as exc:
            if exc.errno in DISK_ERRORS:
                raise Error("disk_full", f"the disk is full ({exc.strerror}); nothing was "
                                         "added") from None
            raise
        with self._disk_lock:
            self._stored_bytes += size
        try:
            if self._over_limit():
                raise Error("disk_full", f"the buffer's disk-cache limit "
                                         f"({self.disk_limit >> 20} MB, disk_cache_limit) is "
                                         "reached; delete pages or close sessions")
            self._check_free()
        except Error:
            self.remove_files([name])
            raise
        return name, size

    def _check_free(self) -> None:
        stat = os.statvfs(self.files)
        if stat.f_bavail * stat.f_frsize < RESERVE:
            raise Error("disk_full", "the disk is full (less than "
                                     f"{RESERVE >> 20} MB free); nothing was added")

    def remove_files(self, names: list[str]) -> None:
        """Remove page files no version names any more (call after the commit)."""
        for name in names:
            path = self.path(name)
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            with self._disk_lock:
                self._stored_bytes -= size
        stems = {name.split(".")[0] for name in names}
        with self._disk_lock:
            stale = [d for d in self._derived if d.split(".")[0] in stems]
        for derived in stale:  # their encodings and thumbnails go too
            self._drop_derived(derived)

    def _over_limit(self) -> bool:
        with self._disk_lock:
            return self._stored_bytes + sum(self._derived.values()) > self.disk_limit

    def _make_room(self, wanted: int) -> None:
        """Drop least recently used derived files until ``wanted`` more bytes fit.

        Derived files also never take more than a quarter of the limit: they are a cache.
        """
        while True:
            with self._disk_lock:
                derived = sum(self._derived.values())
                total = self._stored_bytes + derived
                if not self._derived or (total + wanted <= self.disk_limit
                                         and derived <= self.disk_limit // 4):
                    return
                oldest = next(iter(self._derived))
            self._drop_derived(oldest)

    # --- the derived cache (encodings, thumbnails): can be dropped any time

    def derived_path(self, name: str) -> Path | None:
        path = self.derived / name
        with self._disk_lock:
            if name not in self._derived:
                return None
            self._derived.move_to_end(name)
        return path if path.exists() else None

    def put_derived(self, name: str, write: Callable[[BinaryIO], Any]) -> Path:
        path = self.derived / name
        self._check_free()
        try:
            size = atomic_write_with(path, write, 0o600, durable=False)
        except OSError as exc:
            if exc.errno in DISK_ERRORS:
                raise Error("disk_full", f"the disk is full ({exc.strerror})") from None
            raise
        with self._disk_lock:
            self._derived[name] = size
        self._make_room(0)
        return path

    def _drop_derived(self, name: str) -> None:
        with self._disk_lock:
            self._derived.pop(name, None)
        (self.derived / name).unlink(missing_ok=True)

    # --- start-up

    def recover_files(self, referenced: set[str]) -> dict:
        """Remove temp files and files not in ``referenced``; count what is on disk."""
        stems = {name.split(".")[0] for name in referenced}
        removed = stored = 0
        for folder in self.files.iterdir():
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.name in referenced:
                    stored += path.stat().st_size
                else:
                    path.unlink(missing_ok=True)
                    removed += 1
        derived = sorted(self.derived.iterdir(), key=lambda p: p.stat().st_mtime)
        for path in derived:
            if path.name.startswith(".") or path.name.split(".")[0] not in stems:
                path.unlink(missing_ok=True)
            else:
                self._derived[path.name] = path.stat().st_size
        with self._disk_lock:
            self._stored_bytes = stored
        return {"orphans_removed": removed, "files": len(referenced), "bytes": stored,
                "derived": len(self._derived)}

    def disk_usage(self) -> dict:
        with self._disk_lock:
            return {"stored_bytes": self._stored_bytes,
                    "derived_bytes": sum(self._derived.values()),
                    "limit_bytes": self.disk_limit}
