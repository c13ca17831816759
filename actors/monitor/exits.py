"""Reading ``logs/supervisord.log`` for the exits supervisord reports.

supervisord writes ``exited: NAME (terminated by SIGKILL; not expected)`` or
``exited: NAME (exit status 1; not expected)`` when a program ends on its own; that line is
the only place the exit signal is reported, so the monitor follows the file. The read
position (with the file's inode, to notice rotation) is kept in ``run/`` so a restarted
monitor still reports the crash that happened while it was down - its own included.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from broker.procutil import atomic_write

EXITED = re.compile(r"\bexited: (?P<name>\S+) \((?P<reason>.+); "
                    r"(?P<expected>not expected|expected)\)")


@dataclass
class Exit:
    program: str
    reason: str  # "terminated by SIGKILL", "exit status 1"
    expected: bool


class ExitReader:
    def __init__(self, log_path: Path, state_path: Path):
        self.log_path = log_path
        self.state_path = state_path
        self.inode, self.offset = self._load()

    def _load(self) -> tuple[int, int]:
        try:
            state = json.loads(self.state_path.read_text())
            return int(state["inode"]), int(state["offset"])
        except (OSError, ValueError, KeyError, TypeError):
            # First start: report what happened since supervisord started (we may have
            # been killed before we saved a position even once).
            try:
                data = self.log_path.read_bytes()
                start = data.rfind(b"supervisord started with pid")
                return self.log_path.stat().st_ino, data.rfind(b"\n", 0, max(start, 0)) + 1
            except OSError:
                return 0, 0

    def _save(self) -> None:
        atomic_write(self.state_path,
                     json.dumps({"inode": self.inode, "offset": self.offset}).encode())

    def read(self) -> list[Exit]:
        """The exits written since the last call."""
        try:
            stat = self.log_path.stat()
        except OSError:
            return []
        if stat.st_ino != self.inode or stat.st_size < self.offset:
            self.inode, self.offset = stat.st_ino, 0  # rotated: start the new file
        if stat.st_size == self.offset:
            return []
        with open(self.log_path, "rb") as log:
            log.seek(self.offset)
            data = log.read()
        end = data.rfind(b"\n") + 1  # a partly written last line waits for the next call
        self.offset += end
        self._save()
        exits = []
        for line in data[:end].decode("utf-8", "replace").splitlines():
            match = EXITED.search(line)
            if match:
                exits.append(Exit(match.group("name"), match.group("reason"),
                                  match.group("expected") == "expected"))
        return exits


def signal_of(reason: str) -> str | None:
    match = re.search(r"terminated by (SIG\w+)", reason)
    return match.group(1) if match else None
