"""A progress bar for long CLI work: one redrawn line on a terminal, plain lines otherwise
(so logs of scripted runs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30
REDRAW_EVERY = 0.1  # seconds: a terminal is not redrawn faster than this


class Progress:
    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.drawn = 0.0
        self.open_line = False

    def bar(self, text: str, fraction: float | None) -> None:
        """Redraw the bar (terminals only): ``fraction`` 0..1, or None when unknown."""
        if not self.tty or time.monotonic() - self.drawn < REDRAW_EVERY:
            return
        self.drawn = time.monotonic()
        if fraction is None:
            gauge = "?" * WIDTH
        else:
            done = round(max(0.0, min(1.0, fraction)) * WIDTH)
            gauge = "#" * done + "-" * (WIDTH - done)
        self.stream.write(f"\r[{gauge}] {text}\x1b[K")
        self.stream.flush()
        self.open_line = True

    def line(self, text: str) -> None:
        """A line that stays (on a terminal: above the bar)."""
        if self.open_line:
            self.stream.write("\r\x1b[K")
            self.open_line = False
        self.stream.write(text + "\n")
        self.stream.flush()
        self.drawn = 0.0

    def close(self) -> None:
        if self.open_line:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.open_line = False
