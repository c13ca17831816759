"""Where a crashing or hung process leaves its stacks.

``faulthandler`` writes fatal-signal tracebacks, and all thread stacks on SIGUSR1, into
``dumps/.<program>.<pid>.fault``. The monitor sends SIGUSR1 before it restarts a hung
process and puts the file's content into the dump it writes. A process that exits
cleanly removes its file: there is nothing to read.

The watchdog is for a process nobody else watches (the monitor): re-armed on every pass
of its loop, a C thread writes all stacks into the fault file and exits the process if
the loop stalls (say, a deadlock), and supervisord restarts it.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
from typing import Any

from .config import Home

_fault_file: Any = None  # this process's fault file, once installed


def install_fault_handlers(home: Home, name: str) -> Any:
    """Send fatal-signal tracebacks and SIGUSR1 stacks to ``dumps/.<program>.<pid>.fault``.

    Returns the open file: it must stay open for the process's life.
    """
    program = os.environ.get("SUPERVISOR_PROCESS_NAME") or name
    home.dumps.mkdir(parents=True, exist_ok=True)
    path = home.dumps / f".{program}.{os.getpid()}.fault"
    global _fault_file
    fault_file = _fault_file = open(path, "w")
    faulthandler.enable(fault_file, all_threads=True)
    faulthandler.register(signal.SIGUSR1, fault_file, all_threads=True, chain=False)
    fault_file.path = path  # type: ignore[attr-defined]
    return fault_file


def remove_fault_file(fault_file: Any) -> None:
    """After a clean exit there is nothing for the monitor to read."""
    faulthandler.disable()
    faulthandler.unregister(signal.SIGUSR1)
    fault_file.close()
    try:
        os.unlink(fault_file.path)
    except OSError:
        pass


def arm_watchdog(seconds: float) -> None:
    """Dump all stacks and exit unless re-armed (or disarmed) within ``seconds``."""
    faulthandler.dump_traceback_later(seconds, exit=True, file=_fault_file or sys.stderr)


def disarm_watchdog() -> None:
    faulthandler.cancel_dump_traceback_later()
