"""SANE set-up, device discovery with stable source ids, and SANE statuses as error codes.

SANE reads its configuration from ``SANE_CONFIG_DIR``. We generate ``run/sane.d/`` at
start: its ``dll.conf`` lists the embedded test backend (from ``ini/sane.d/``, unless
``[scanner] test_scanners = false``) and the system's backends (``/etc/sane.d/dll.conf``
and ``dll.d/``, unless ``system_scanners = false``). The trailing ``:`` in the variable
makes SANE look in the system folder too, so every backend still finds its own ``.conf``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Callable

from broker.config import Config, shipped
from broker.procutil import atomic_write
from broker.protocol import Error

SYSTEM_SANE = Path("/etc/sane.d")
TEST_BACKEND = "test"

# sane_strstatus() texts -> our codes. python-sane raises them as plain strings.
STATUS_CODES = {
    "device busy": "device_busy",
    "document feeder out of documents": "feeder_empty",
    "document feeder jammed": "jammed",
    "scanner cover is open": "cover_open",
    "error during device i/o": "io_error",
    "out of memory": "no_memory",
    "access to resource has been denied": "access_denied",
    "operation was canceled": "cancelled",
    "operation was cancelled": "cancelled",
    "invalid argument": "invalid_option",
    "operation not supported": "io_error",
}

SAFE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,120}")
USB_ADDRESS = re.compile(r"libusb:\d+:\d+|/dev/[^:]*|usb:\d+:\d+")


def error_of(exc: BaseException, doing: str) -> Error:
    """A SANE exception as an ``Error`` with a stable code and a readable message."""
    if isinstance(exc, Error):
        return exc
    text = str(exc).strip() or type(exc).__name__
    code = STATUS_CODES.get(text.lower(), "io_error")
    return Error(code, f"{doing}: {text}", sane_status=text)


def _backends(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def embedded_config(cfg: Config) -> Path:
    """``ini/sane.d`` of the home, else the one shipped with Scanbridge."""
    own = cfg.home.ini / "sane.d"
    return own if own.is_dir() else shipped("ini/sane.d")


def prepare_config(cfg: Config) -> tuple[Path, list[str]]:
    """Write ``run/sane.d/`` and point ``SANE_CONFIG_DIR`` at it; returns it and backends."""
    target, backends = write_config(cfg)
    os.environ["SANE_CONFIG_DIR"] = config_path(target)
    return target, backends


def config_path(folder: Path) -> str:
    """``SANE_CONFIG_DIR`` for our folder: the trailing colon appends SANE's own folders,
    where the system's backends find their .conf files."""
    return f"{folder}:"


def write_config(cfg: Config) -> tuple[Path, list[str]]:
    """Write ``run/sane.d/`` (see module docstring); returns it and the backends."""
    embedded = embedded_config(cfg)
    target = cfg.home.run / "sane.d"
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    backends = []
    for backend in _backends(embedded / "dll.conf"):
        if backend != TEST_BACKEND or cfg.scanner.test_scanners:
            backends.append(backend)
    for path in embedded.iterdir():
        if path.is_file() and path.name != "dll.conf":
            shutil.copyfile(path, target / path.name)
    if cfg.scanner.system_scanners:
        system = _backends(SYSTEM_SANE / "dll.conf")
        dlld = SYSTEM_SANE / "dll.d"
        if dlld.is_dir():
            for path in sorted(dlld.iterdir()):
                system += _backends(path)
        backends += [b for b in system if b != TEST_BACKEND]
    backends = list(dict.fromkeys(backends))
    atomic_write(target / "dll.conf", "".join(f"{b}\n" for b in backends).encode(), 0o600)
    return target, backends


def source_id(name: str, vendor: str, model: str) -> str:
    """A stable id: the SANE name, without the USB address that changes on each replug."""
    backend = name.split(":", 1)[0]
    if USB_ADDRESS.search(name):
        slug = re.sub(r"[^a-z0-9]+", "-", f"{vendor} {model}".lower()).strip("-")
        return f"{backend}:{slug or 'usb'}"
    if SAFE_ID.fullmatch(name):
        return name
    return f"{backend}:{hashlib.sha1(name.encode()).hexdigest()[:12]}"


class _SigAction(ctypes.Structure):  # glibc's struct sigaction (x86-64 and arm64)
    _fields_ = [("handler", ctypes.c_void_p), ("mask", ctypes.c_ulong * 16),
                ("flags", ctypes.c_int), ("restorer", ctypes.c_void_p)]


def _write_failed(_signum: int, _frame: Any) -> None:
    """SIGPIPE: the write that raised it fails with EPIPE, which its caller handles."""


class Signals:
    """Signal dispositions as they were at start, put back while SANE scans.

    SANE's reader threads (sanei_thread) set SIGPIPE to "ignore" when it is "default" and
    back to "default" when they end, for the whole process: with two devices, one
    device's thread ending makes the other's write into a just-cancelled pipe kill the
    process. With a handler of our own (not "ignore") they leave SIGPIPE alone; blocking
    it in the scanning threads instead makes the test backend hang.

    The test backend also resets SIGTERM to its default in sane_start: a SIGTERM from
    supervisord would then kill the scanner outright, without its clean stop. Python sets
    handlers only from the main thread, so the saved C-level actions are restored with
    sigaction(2) from the scanning thread: after each sane_start, every
    ``SIGNALS_EVERY`` during a read, and after it."""

    KEPT = (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE)

    def __init__(self) -> None:
        # Here, on the main thread (Devices is made in on_start), before sane_init.
        signal.signal(signal.SIGPIPE, _write_failed)
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.saved = {}
        for number in self.KEPT:
            action = _SigAction()
            if self.libc.sigaction(int(number), None, ctypes.byref(action)) == 0:
                self.saved[int(number)] = action

    def restore(self) -> None:
        for number, action in self.saved.items():
            self.libc.sigaction(number, ctypes.byref(action), None)


class Devices:
    """The SANE library of this process: discovery, open, and the source list cache.

    sane_init/get_devices/open/close touch the dll backend's global state, so they run
    under one lock; reading and cancelling on different open handles does not need it.
    A refresh while no device is open also restarts SANE (``prepare`` rewrites its
    configuration first): backends read their configuration, and some find new devices,
    only in sane_init.
    """

    def __init__(self, prepare: Callable[[], Any] | None = None) -> None:
        import sane  # here, after SANE_CONFIG_DIR is set
        self.sane = sane
        self.prepare = prepare
        self.opened = 0  # handles open now
        self.lock = threading.Lock()
        self.signals = Signals()  # before sane_init, which may change them already
        with self.lock:
            self.version = sane.init()
        self.discovering = threading.Lock()  # one discovery at a time; others wait for it
        self.sources: dict[str, dict] | None = None  # id -> source
        self.defaults: dict[str, dict] = {}  # device -> option values at its first open
        self.seen: set[str] = set()  # ids listed once: a missing one is "gone", not unknown

    def discover(self, restart: bool = False) -> dict[str, dict]:
        with self.lock:
            if restart and self.opened == 0:
                if self.prepare is not None:
                    self.prepare()
                self.sane.exit()
                self.version = self.sane.init()
                self.defaults.clear()  # the configuration may give other defaults now
            found = self.sane.get_devices()
        return self._index(found)

    def _index(self, found: list) -> dict[str, dict]:
        sources: dict[str, dict] = {}
        for name, vendor, model, kind in found:
            sid = source_id(name, vendor, model)
            base, number = sid, 2
            while sid in sources:  # two of the same model: number them in SANE's order
                sid, number = f"{base}-{number}", number + 1
            sources[sid] = {"id": sid, "type": "scanner", "device": name, "vendor": vendor,
                            "model": model, "kind": kind, "backend": name.split(":", 1)[0]}
        self.sources = sources
        self.seen.update(sources)
        return sources

    def listing(self, refresh: bool = False) -> list[dict]:
        known = self.sources
        with self.discovering:
            # Someone else's discovery finished while we waited: that one is fresh enough.
            if self.sources is None or (refresh and self.sources is known):
                self.discover(restart=refresh)
        return list(self.sources.values())

    def find(self, source: Any) -> dict:
        """The source with this id (or SANE device name); refreshes once when unknown."""
        if not isinstance(source, str) or not source:
            raise Error("invalid_argument", "source must be a source id (see sources)")
        for refresh in (False, True):
            for entry in self.listing(refresh):
                if source in (entry["id"], entry["device"]):
                    return entry
        if source in self.seen:
            raise Error("device_gone", f"scanner {source} is no longer connected")
        known = ", ".join(self.sources) or "none"
        raise Error("not_found", f"no scanner {source!r} (scanners: {known})")

    def open(self, entry: dict) -> Any:
        """An open handle (python-sane's raw device object)."""
        try:
            with self.lock:
                handle = self.sane.open(entry["device"]).dev
                self.opened += 1
                return handle
        except Exception as exc:
            error = error_of(exc, f"cannot open {entry['id']}")
            if error.code == "invalid_option":  # "Invalid argument": the name is not there
                raise Error("device_gone", f"scanner {entry['id']} is no longer "
                            "connected") from None
            raise error from None

    def start(self, handle: Any) -> None:
        """sane_start (the next page), keeping our signal handlers."""
        try:
            handle.start()
        finally:
            self.signals.restore()

    def close(self, handle: Any) -> None:
        with self.lock:
            self.opened -= 1
            try:
                handle.close()
            except Exception:
                pass
