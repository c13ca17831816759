"""The whole service under supervisord in a temp home, driven like an operator would."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from broker.client import Client

from .stack import ROOT, env_for, free_port, poll_for, write_ini

SCANBRIDGE = [sys.executable, "-m", "scanbridge"]


class Service:
    """A temp home with free ports; ``start()`` runs ``scanbridge start`` in it."""

    def __init__(self, home: Path, heartbeat: float = 0.5, extra_ini: str = ""):
        self.home = home
        self.ports = [free_port(), free_port()]
        self.https_ports = [free_port(), free_port()]
        if "[scanner]" not in extra_ini:  # probing the system's SANE backends takes seconds
            extra_ini += "[scanner]\nsystem_scanners = false\n"
        if "[ocr]" not in extra_ini:  # one worker whatever the cores: less to start and stop
            extra_ini += "[ocr]\nocr_workers = 1\n"
        write_ini(home, "DSConfiguration.ini",
                  f"[ports]\nhttp = {self.ports[0]}, {self.ports[1]}\n"
                  f"https = {self.https_ports[0]}, {self.https_ports[1]}\n"
                  f"[heartbeat]\ninterval = {heartbeat}\nliveness = 3\n{extra_ini}")
        # The service's user home: Firefox profiles and ~/.pki/nssdb of the tests stay here.
        self.user_home = home / "user"
        self.user_home.mkdir(parents=True, exist_ok=True)
        self.env = {**env_for(home), "HOME": str(self.user_home)}

    def cli(self, *args: str, timeout: float = 60, check: bool = False,
            **kwargs) -> subprocess.CompletedProcess:
        done = subprocess.run([*SCANBRIDGE, *args], env=self.env, cwd=ROOT, text=True,
                              capture_output=True, timeout=timeout, **kwargs)
        if check and done.returncode != 0:
            raise AssertionError(f"scanbridge {' '.join(args)} failed ({done.returncode}): "
                                 f"{done.stderr}{done.stdout}")
        return done

    def supervisorctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        exe = Path(sys.executable).parent / "supervisorctl"
        return subprocess.run([str(exe), "-c", str(ROOT / "supervisor.conf"), *args],
                              env=self.env, cwd=ROOT, text=True, capture_output=True,
                              timeout=timeout)

    def start(self) -> None:
        done = self.cli("start")
        if done.returncode != 0:
            self.cli("stop")  # supervisord may run with some programs: never leave it behind
            raise AssertionError(f"scanbridge start failed ({done.returncode}): "
                                 f"{done.stderr}{done.stdout}")

    def stop(self) -> None:
        done = self.cli("stop")
        if done.returncode not in (0, 3):
            raise AssertionError(f"scanbridge stop failed: {done.stderr}")

    def processes(self) -> dict[str, dict]:
        out = self.cli("status", "--json", check=False).stdout
        return {p["name"]: p for p in json.loads(out)} if out.strip() else {}

    def pid(self, program: str) -> int:
        return self.processes()[program]["pid"]

    def wait_running(self, program: str, other_than: int | None = None,
                     timeout: float = 15) -> int:
        """Wait until ``program`` is RUNNING (with a pid other than ``other_than``)."""
        def running():
            info = self.processes().get(program)
            if info and info["statename"] == "RUNNING" and info["pid"] != other_than:
                return info["pid"]
            return None
        return poll_for(running, timeout, f"{program} RUNNING", every=0.1)

    def url(self, path: str = "/", port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.ports[1]}{path}"

    def get(self, path: str, headers: dict | None = None, port: int | None = None):
        """(status, headers, body bytes) of a GET, errors included."""
        request = urllib.request.Request(self.url(path, port), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def client(self) -> Client:
        """A broker client for this home (use it in a ``with``)."""
        return Client(f"ipc://{self.home}/run/broker.sock")

    def log_records(self, program: str) -> list[dict]:
        """The JSON lines of logs/PROGRAM.log (other lines, e.g. supervisord's, skipped)."""
        path = self.home / "logs" / f"{program}.log"
        records = []
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def dumps(self) -> list[Path]:
        return sorted((self.home / "dumps").glob("*.dump"))


def running(service: Service) -> Iterator[Service]:
    """The body of a fixture of a service built otherwise (``curve_service``, or files
    written into its home first): ``yield from running(service)`` starts it, gives it to the
    tests and stops it after them."""
    service.start()
    yield service
    service.stop()


def started(home: Path, extra_ini: str = "") -> Iterator[Service]:
    """The body of a fixture of a service: started in ``home`` with DSConfiguration.ini
    additions ``extra_ini``, stopped when the fixture ends (``yield from started(...)``)."""
    yield from running(Service(home, extra_ini=extra_ini))


def curve_service(home: Path, clients: str, extra_ini: str = "") -> Service:
    """A service whose broker also listens on tcp with CURVE (``tcp``, ``tcp_port``) for
    the ``[broker] curve_clients`` entries ``clients``."""
    port = free_port()
    service = Service(home, extra_ini=f"[broker]\ntcp_endpoint = tcp://127.0.0.1:{port}\n"
                                      f"curve_clients = {clients}\n{extra_ini}")
    service.tcp_port = port
    service.tcp = f"tcp://127.0.0.1:{port}"
    return service
