"""Output of the benchmarks: figures on stdout, progress notes on stderr."""

from __future__ import annotations

import sys
import time

STARTED = time.perf_counter()


def note(text: str) -> None:
    """Progress on stderr: stdout holds only the figures."""
    print(f"[bench {time.perf_counter() - STARTED:5.1f} s] {text}", file=sys.stderr,
          flush=True)


def out(text: str) -> None:
    print(text, flush=True)


def summary(lines: list[str]) -> None:
    """The closing block of a benchmark: its figures and goals, one per line."""
    out("summary:")
    for text in lines:
        out(f"  {text}")
    note("done")
