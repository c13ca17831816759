"""The wheel, installed as a user would: `make wheel`, pip into a fresh venv, and the
service run from there with a fresh HOME, no SCANBRIDGE_HOME, no PYTHONPATH and a working
folder outside the checkout, so that nothing can come from the checkout.

The wheel is built once per run. The dependencies' wheels are kept in cache/wheels/ of the
checkout (python-sane built there from its source against libsane-dev), so a second run
installs without the network. The ports are set in the new home's DSConfiguration.ini
before the first start (the default ports may be taken on a developer's machine); the
other default files come from the wheel.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
import zipfile
from pathlib import Path

import pymupdf
import pytest

import broker
from tests.support.stack import ROOT, free_port

CACHE = ROOT / "cache" / "wheels"
PIP_SECONDS = 1200  # a first run downloads and builds every dependency


def run(argv: list, what: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], text=True, capture_output=True,
                          timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{what} failed ({done.returncode}): " \
                                 f"{done.stderr[-3000:]}{done.stdout[-2000:]}"
    return done


@pytest.fixture(scope="module")
def wheel() -> Path:
    done = run(["make", "-C", ROOT, "--no-print-directory", "wheel", f"PYTHON={sys.executable}"],
               "make wheel", timeout=300)
    name = re.fullmatch(r"built (dist/\S+\.whl)\n", done.stdout)
    assert name, done.stdout
    return ROOT / name.group(1)


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        meta = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(meta).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel and its dependencies from cache/wheels/.

    This pip installs into it (``--python``): the venv's own would take ensurepip's ~10 s;
    and nothing compiles what the test never imports (half of pip's time).
    """
    folder = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--without-pip", folder], "python -m venv")
    pip = [sys.executable, "-m", "pip", "--python", folder / "bin" / "python"]
    offline = [*pip, "install", "-q", "--no-compile", "--no-index", "--find-links", CACHE,
               wheel]
    if subprocess.run([str(a) for a in offline], capture_output=True,
                      timeout=PIP_SECONDS).returncode != 0:
        CACHE.mkdir(parents=True, exist_ok=True)
        run([*pip, "wheel", "-q", "-w", CACHE, "--find-links", CACHE, *requirements(wheel)],
            "pip wheel of the dependencies", timeout=PIP_SECONDS)
        run(offline, "pip install from cache/wheels", timeout=PIP_SECONDS)
    return folder


@pytest.fixture(scope="module")
def user(tmp_path_factory) -> dict:
    """A fresh user: HOME, PATH and a locale; nothing of Scanbridge or of the checkout."""
    home = tmp_path_factory.mktemp("user")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not Path(p, "python").exists())  # no venv's bin/
    return {"HOME": str(home), "PATH": path, "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def installed(venv, user, tmp_path_factory):
    """`scanbridge ARGS` of the venv, run as that user from a folder of their own."""
    work = tmp_path_factory.mktemp("work")

    def scanbridge(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "scanbridge"), *args], env=user, cwd=work,
                              text=True, capture_output=True, timeout=timeout)
    scanbridge.work = work
    scanbridge.home = Path(user["HOME"]) / ".local" / "share" / "scanbridge"
    return scanbridge


@pytest.fixture(scope="module")
def ports(installed) -> list[int]:
    ports = [free_port() for _ in range(4)]
    ini = installed.home / "ini"
    ini.mkdir(parents=True)
    (ini / "DSConfiguration.ini").write_text(
        f"[ports]\nhttp = {ports[0]}, {ports[1]}\nhttps = {ports[2]}, {ports[3]}\n"
        "[scanner]\nsystem_scanners = false\n[ocr]\nocr_workers = 1\n")
    return ports


@pytest.fixture(scope="module")
def session(installed, ports):
    """start, scan one page, stop: each step's CompletedProcess by name."""
    steps = {}
    try:
        steps["start"] = installed("start")
        assert steps["start"].returncode == 0, f"scanbridge start failed: {steps['start']}"
        steps["docs"] = get(f"http://127.0.0.1:{ports[0]}/docs/configuration.md")
        steps["scan"] = installed("scan", "--source", "test:0", "--resolution", "75",
                                  "-o", "out.pdf")
        steps["stop"] = installed("stop")
    finally:
        installed("stop")  # exit 3 when it stopped already
    return steps


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.status, answer.read().decode()


def test_the_wheel_carries_the_files_the_service_reads(wheel):
    assert wheel.name == f"scanbridge-{broker.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for name in ("broker/shipped/supervisor.conf", "broker/shipped/ini/DSConfiguration.ini",
                 "broker/shipped/ini/sane.d/test.conf", "broker/shipped/docs/api.md",
                 "broker/shipped/README.md", "broker/shipped/system-packages.txt",
                 "scanbridge/units/user/scanbridge.service",
                 "actors/gateway/static/scanbridge.js"):
        assert name in names, name
    assert not any(name.startswith("tests/") for name in names)


def test_the_installed_package_is_the_wheel_not_the_checkout(venv, user, installed):
    probe = "from broker import config; print(config.INSTALLED, config.CHECKOUT)"
    done = run([venv / "bin" / "python", "-c", probe], "python -c", env=user,
               cwd=installed.work)
    installed_flag, where = done.stdout.split()
    assert installed_flag == "True" and Path(where).is_relative_to(venv), done.stdout


def test_version_prints_the_version(installed):
    done = installed("--version")
    assert (done.returncode, done.stdout) == (0, f"scanbridge {broker.__version__}\n")


def test_start_makes_the_home_in_the_users_data_folder_with_the_default_files(
        session, installed, ports):
    done = session["start"]
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Scanbridge started; welcome page: "
                                  f"http://127.0.0.1:{ports[1]}/")
    ini = installed.home / "ini"
    assert sorted(p.name for p in ini.iterdir()) == [
        "DSConfiguration.ini", "sane.d", "service.ini", "user_config.ini"]
    assert (ini / "service.ini").read_text() == (ROOT / "ini" / "service.ini").read_text()
    assert (ini / "sane.d" / "test.conf").exists()
    assert "http = " in (ini / "DSConfiguration.ini").read_text()  # ours, kept
    for folder in ("logs", "run", "cert", "cache", "upload"):
        assert (installed.home / folder).is_dir(), folder
    status, body = session["docs"]
    assert status == 200 and body == (ROOT / "docs" / "configuration.md").read_text()


def test_a_page_scanned_through_the_installed_cli_is_a_pdf_with_a_page(session, installed):
    done = session["scan"]
    assert done.returncode == 0, done.stderr
    with pymupdf.open(installed.work / "out.pdf") as pdf:
        assert pdf.page_count == 1
        pixmap = pdf[0].get_pixmap(dpi=20)
        assert pixmap.width > 0 and len(set(pixmap.samples)) > 1  # the colour pattern


def test_stop_stops_it(session, installed):
    assert session["stop"].returncode == 0, session["stop"].stderr
    assert installed("status").returncode == 3


def test_install_user_verifies_then_autostarts_and_uninstall_purges(session, installed, venv,
                                                                    user, tmp_path):
    # After the session (stopped): the unit runs this venv's scanbridge with its home.
    done = installed("install", "--user", "--via", "systemd", "--no-start")
    assert done.returncode == 0, done.stderr
    unit = Path(user["HOME"]) / ".config/systemd/user/scanbridge.service"
    assert f"\nExecStart={venv}/bin/scanbridge --home {installed.home} run\n" in \
        unit.read_text()
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    verified = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], text=True,
                              capture_output=True, timeout=60,
                              env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    # No user manager runs here: the default is an autostart entry, and the service starts.
    done = installed("install", "--user")
    assert done.returncode == 0, done.stderr
    entry = Path(user["HOME"]) / ".config/autostart/scanbridge.desktop"
    assert entry.exists() and not unit.exists()
    assert "Scanbridge started; welcome page:" in done.stdout
    assert installed("status").returncode == 0
    done = installed("uninstall", "--user", "--purge")
    assert done.returncode == 0, done.stderr
    assert "Scanbridge stopped" in done.stdout and f"removing {installed.home}:" in done.stdout
    assert not entry.exists() and not installed.home.exists()
