"""What tests/test_deb.py needs around the Debian package: building it, dpkg, the system
service started the way its unit says, and the machine's footprint of the package.

Everything the package touches outside its own files is listed by ``footprint()``, read
independently of the code under test (paths, ``getent``, ``dpkg-statoverride``, the
system store's links, Java's keystore, the browsers' policy files), so that a test can
say the machine is as it found it after a purge.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from .stack import ROOT

PACKAGE = "scanbridge"
ACCOUNT = "scanbridge"
USERS_GROUP = "scanbridge-users"
STATE = Path("/var/lib/scanbridge")
CONFIG = Path("/etc/scanbridge")
OPT = Path("/opt/scanbridge")
COMMAND = Path("/usr/bin/scanbridge")
SYSTEM_UNIT = Path("/lib/systemd/system/scanbridge.service")
USER_UNIT = Path("/usr/lib/systemd/user/scanbridge.service")
WANTS = Path("/etc/systemd/system/multi-user.target.wants/scanbridge.service")
MASK = Path("/etc/systemd/system/scanbridge.service")
HELPER_STATE = (Path("/var/lib/systemd/deb-systemd-helper-enabled"),
                Path("/var/lib/systemd/deb-systemd-helper-masked"))
ANCHORS = Path("/usr/local/share/ca-certificates")
LINKS = Path("/etc/ssl/certs")
BUNDLE = LINKS / "ca-certificates.crt"
FIREFOX_POLICIES = Path("/etc/firefox/policies/policies.json")
CHROMIUM_POLICY = Path("/etc/chromium/policies/managed/scanbridge.json")
INI_FILES = ("DSConfiguration.ini", "service.ini", "user_config.ini")
BUILD_SECONDS = 1500  # a first build downloads every dependency and builds python-sane
DPKG_SECONDS = 300


# An administrator's shell, not the test run's: `make test` exports SCANBRIDGE_HOME (the
# checkout), which the installed command, runuser and the maintainer scripts would follow.
ADMIN_ENV = {k: v for k, v in os.environ.items()
             if not k.startswith("SCANBRIDGE_") and k != "PYTHONPATH"}


def run(argv: list, what: str, timeout: float = 120, check: bool = True,
        **kwargs) -> subprocess.CompletedProcess:
    kwargs.setdefault("env", ADMIN_ENV)
    done = subprocess.run([str(a) for a in argv], text=True, capture_output=True,
                          timeout=timeout, **kwargs)
    if check:
        assert done.returncode == 0, f"{what} failed ({done.returncode}): " \
                                     f"{done.stderr[-3000:]}{done.stdout[-2000:]}"
    return done


def bump(version: str) -> str:
    """The next patch version: 0.1.0 -> 0.1.1."""
    parts = version.split(".")
    return ".".join(parts[:-1] + [str(int(parts[-1]) + 1)])


def build(version: str) -> tuple[Path, float, bool]:
    """``make deb VERSION=...``: (the .deb, seconds, whether the index was used)."""
    start = time.monotonic()
    done = run(["make", "-C", ROOT, "--no-print-directory", "deb", f"VERSION={version}",
                f"PYTHON={sys.executable}"], "make deb", timeout=BUILD_SECONDS)
    seconds = time.monotonic() - start
    found = re.search(r"^built (dist/\S+\.deb) ", done.stdout, re.M)
    assert found, done.stdout
    return ROOT / found.group(1), seconds, "fetched into the cache" in done.stdout


def dpkg(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """dpkg without questions: a locally changed conffile is kept (a test changes two)."""
    env = {**ADMIN_ENV, "DEBIAN_FRONTEND": "noninteractive"}
    return run(["dpkg", "--force-confdef", "--force-confold", *args], f"dpkg {args[0]}",
               timeout=DPKG_SECONDS, check=check, env=env)


def installed() -> bool:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", PACKAGE], text=True,
                          capture_output=True)
    return done.returncode == 0 and "not-installed" not in done.stdout


def getent(database: str, name: str) -> str | None:
    done = subprocess.run(["getent", database, name], text=True, capture_output=True)
    return done.stdout.strip() if done.returncode == 0 else None


def java_entries() -> list[str]:
    """Scanbridge CAs in Java's keystore (ca-certificates-java), when there is one."""
    keystore = LINKS / "java" / "cacerts"
    if not shutil.which("keytool") or not keystore.exists():
        return []
    out = subprocess.run(["keytool", "-list", "-keystore", str(keystore), "-storepass",
                          "changeit"], text=True, capture_output=True).stdout
    return sorted(line.split(",")[0] for line in out.splitlines() if "scanbridge" in line)


def footprint() -> dict:
    """What the package may leave on the machine, outside the files dpkg lists."""
    statoverrides = subprocess.run(["dpkg-statoverride", "--list"], text=True,
                                   capture_output=True).stdout
    return {
        "account": getent("passwd", ACCOUNT),
        "groups": [getent("group", g) for g in (ACCOUNT, USERS_GROUP)],
        "paths": {str(p): p.exists() or p.is_symlink()
                  for p in (STATE, CONFIG, OPT, COMMAND, SYSTEM_UNIT, USER_UNIT, WANTS, MASK,
                            CHROMIUM_POLICY, CHROMIUM_POLICY.parent.parent,
                            FIREFOX_POLICIES.parent.parent)},
        "helper state": sorted(str(p) for folder in HELPER_STATE if folder.is_dir()
                               for p in folder.rglob("*scanbridge*")),
        "statoverrides": [line for line in statoverrides.splitlines() if "scanbridge" in line],
        "anchors": sorted(p.name for p in ANCHORS.glob("scanbridge*")),
        "links": sorted(p.name for p in LINKS.glob("scanbridge*")),
        "bundle has a Scanbridge CA": False if not BUNDLE.exists() else
        b"Scanbridge local CA" in BUNDLE.read_bytes(),
        "java": java_entries(),
        # Parsed: a merge and a removal rewrite the file's layout, not what it says.
        "firefox policies": json.loads(FIREFOX_POLICIES.read_text())
        if FIREFOX_POLICIES.exists() else None,
    }


def parse_unit(path: Path) -> dict:
    """``User=``, ``Group=``, ``Environment=`` and ``ExecStart=`` of a unit's [Service]."""
    found: dict = {"Environment": {}}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            if key == "Environment":
                found["Environment"].update(w.split("=", 1) for w in shlex.split(value))
            elif key in ("User", "Group", "ExecStart"):
                found[key] = value
    return found


class UnitService:
    """The system service started as scanbridge.service says (User=, Group=, the account's
    groups, Environment=, ExecStart=) in the background, since PID 1 is not systemd here;
    ``stop()`` sends SIGTERM to the main process, as systemd does (KillMode=mixed)."""

    def __init__(self, log: Path):
        self.log = log
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.unit = parse_unit(SYSTEM_UNIT)  # the installed one: an upgrade may change it
        user = self.unit["User"]
        account = pwd.getpwnam(user)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": account.pw_dir, "USER": user, "LOGNAME": user, "LANG": "C.UTF-8",
               **self.unit["Environment"]}
        # setpriv execs: the process is the service's main process, as under systemd.
        argv = ["setpriv", f"--reuid={user}", f"--regid={self.unit.get('Group', user)}",
                "--init-groups", "--", *shlex.split(self.unit["ExecStart"])]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(argv, env=env, cwd="/", stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, port: int, timeout: float = 60) -> dict:
        """/api/v1/status once every program that always runs is RUNNING."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, \
                f"the service exited ({self.proc.returncode}): {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status",
                                            timeout=2) as answer:
                    status = json.load(answer)
                if all(a["state"] == "RUNNING" for a in status["actors"].values()
                       if not a.get("ondemand")):
                    return status
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the service did not answer within {timeout} s: "
                             f"{self.log.read_text()[-2000:]}")

    def exited(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 120) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        if self.exited(timeout) is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def set_keys(path: Path, values: dict[str, dict[str, str]]) -> str:
    """Change ``key = value`` lines of an ini file in place (its owner and mode stay);
    returns the new text."""
    section, lines = None, []
    for line in path.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[] ")
        key = line.split("=", 1)[0].strip()
        if section in values and "=" in line and key in values[section]:
            line = f"{key} = {values[section][key]}"
        lines.append(line)
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def purge_leftovers() -> None:
    """After a failed test: whatever a half-done run left, gone (the package first)."""
    if installed() or subprocess.run(["dpkg-query", "-W", PACKAGE],
                                     capture_output=True).returncode == 0:
        dpkg("--purge", PACKAGE, check=False)
