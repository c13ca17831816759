"""The scanner's part of ``scanbridge doctor``: can SANE be loaded, and which devices does
it find with the configuration the scanner actor writes (``run/sane.d``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Iterator

from broker import config as configlib
from common.commands import Check, doctor_check

from . import devices as devicelib


@doctor_check("sane")
def check_sane(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    try:
        import sane  # noqa: F401 - the scanner actor's binding to libsane
    except ImportError as exc:
        yield "FAIL", f"python-sane cannot be loaded: {exc}", "make run (installs it)"
    if not shutil.which("scanimage"):
        yield "FAIL", "scanimage not found (SANE tools)", "sudo apt-get install sane-utils"
        return
    env = dict(os.environ)
    if cfg is not None:  # the configuration the scanner actor uses (run/sane.d)
        try:
            folder, _ = devicelib.write_config(cfg)
            env["SANE_CONFIG_DIR"] = devicelib.config_path(folder)
        except OSError as exc:
            yield "warn", f"cannot write the SANE configuration: {exc}", f"check {home.run}"
    try:
        done = subprocess.run(["scanimage", "-L"], capture_output=True, text=True, env=env,
                              timeout=60)
    except subprocess.TimeoutExpired:
        yield "warn", "scanimage -L did not finish in 60 s", "check network scanners"
        return
    devices = [line for line in done.stdout.splitlines() if line.startswith("device")]
    if devices:
        yield "ok", f"SANE devices: {len(devices)}", ""
        for line in devices:
            yield "ok", f"  {line}", ""
    else:
        yield "warn", "no SANE devices found", \
            "connect a scanner; check `scanimage -L` and the SANE backend configuration"
