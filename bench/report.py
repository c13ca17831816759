"""What every benchmark shares: its command line, its run (a temp folder, what to stop at
its end, its summary), and its output: figures on stdout, progress notes on stderr.
Starting, waiting for and stopping processes is the tests' harness (tests/support)."""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
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


def remove_folder(work: Path, keep: bool) -> None:
    if keep:
        note(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


# --- the command line and the run


def command_line(doc: str, quick: str) -> argparse.ArgumentParser:
    """A benchmark's command line: its docstring's first line, and --quick (``quick`` is
    its help: what a CI smoke run leaves out)."""
    made = argparse.ArgumentParser(description=doc.split("\n")[0])
    made.add_argument("--quick", action="store_true", help=quick)
    return made


def options(command: argparse.ArgumentParser,
            keep: str = "keep the temp folder") -> argparse.Namespace:
    """The parsed command line, once --keep (``keep`` is its help) is added as the last
    option."""
    command.add_argument("--keep", action="store_true", help=keep)
    return command.parse_args()


class Run(contextlib.ExitStack):
    """One benchmark run, as a ``with`` block: its temp folder ``work`` (removed at the end,
    unless ``keep``), the services and processes it started (stopped at the end, the last
    started first; ``callback`` adds other things to do then), and ``summary``, its closing
    lines (printed after all that, when the block ended without an error)."""

    def __init__(self, name: str, keep: bool):
        super().__init__()
        self.work = Path(tempfile.mkdtemp(prefix=f"scanbridge-bench-{name}-"))
        self.summary: list[str] = []
        self.callback(remove_folder, self.work, keep)  # the first registered: done last

    def service(self, service, what: str = "the service"):
        """``service``, stopped at the end of the run with ``stop_service``."""
        self.callback(stop_service, service, what)
        return service

    def process(self, proc: subprocess.Popen) -> subprocess.Popen:
        """``proc``, stopped at the end of the run (if it still runs)."""
        self.callback(stop, proc)
        return proc

    def __exit__(self, *exc) -> bool:
        suppressed = super().__exit__(*exc)
        if exc[0] is None and self.summary:
            summary(self.summary)
        return suppressed
