"""Output of the benchmarks: figures on stdout, progress notes on stderr; and the end of a
run. Starting, waiting for and stopping processes is the tests' harness (tests/support)."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tests.support.stack import stop

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


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def ms(values: list[float]) -> str:
    return (f"mean {statistics.mean(values) * 1e3:6.2f} ms  p50 {pct(values, 50) * 1e3:6.2f} ms"
            f"  p95 {pct(values, 95) * 1e3:6.2f} ms")


def stop_service(service, what: str = "the service") -> None:
    """Stop a benchmark's service, saying so; a failure is told, not raised over the one
    that may have ended the run."""
    note(f"stopping {what}")
    try:
        service.stop()
    except Exception as exc:  # do not hide what went wrong before
        note(f"stopping {what} failed: {exc}")


def shut_down(reference: subprocess.Popen | None, service, work: Path, keep: bool) -> None:
    """End a benchmark run: the baseline server, the service, the temp folder."""
    if reference is not None:
        stop(reference)
    if service is not None:
        stop_service(service)
    if keep:
        note(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
