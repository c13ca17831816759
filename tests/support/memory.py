"""A process's resident memory, read from ``/proc/PID/status``: once (``rss_kb``), or
sampled in a background thread while a ``with`` block runs (``RssSampler``); for the
upload tests and bench/buffer.py.
"""

from __future__ import annotations

import threading
from pathlib import Path


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


class RssSampler:
    """VmRSS of a process every ``every`` seconds while in the ``with`` block: ``samples``
    in bytes, ``peak_kb`` the highest in kB. Sampling ends early if the process is gone."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every = pid, every
        self.samples: list[int] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def peak_kb(self) -> int:
        return max(self.samples, default=0) >> 10

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.samples.append(rss_kb(self.pid) << 10)
            except OSError:
                return
            self.stopping.wait(self.every)

    def __enter__(self) -> "RssSampler":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
