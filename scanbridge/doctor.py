"""``scanbridge doctor``: check the installation, say what is wrong and how to fix it.

Each check yields ``(level, what, fix)`` with level ``ok``, ``warn`` or ``FAIL``. The exit
status is 1 when anything failed. Groups of checks are registered in ``common/commands.py``:
this module's, and those of actor packages (the scanner's SANE devices, the certificate
helper's files and trust); ``ORDER`` says in which order they run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
from pathlib import Path
from typing import Iterator

from broker import config as configlib
from broker import supervision
from common.commands import DOCTOR_CHECKS, Check, command, doctor_check
from common.sqlite import Schema, SchemaTooNew, stored_version

PACKAGES_FILE = configlib.shipped("system-packages.txt")
ORDER = ("config", "home", "databases", "packages", "service", "sane", "curve",
         "certificates")


def system_packages(when: tuple[str, ...] = ("run",)) -> list[str]:
    names = []
    for line in PACKAGES_FILE.read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[1] in when:
            names.append(fields[0])
    return names


@doctor_check("config")
def check_config(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    try:
        cfg = configlib.load(home)
        yield "ok", f"configuration in {home.ini} is valid", ""
    except configlib.ConfigError as exc:
        yield "FAIL", f"configuration: {exc}", "correct that line (docs/configuration.md)"
        return
    for warning in cfg.warnings:
        yield "warn", f"configuration: {warning}", \
            "nothing stops; remove the line to silence this (docs/configuration.md)"


def databases(home: configlib.Home) -> list[tuple[str, Path, Schema]]:
    """(program, file, schema) of every database the service keeps in the home."""
    from actors.buffer.store import SCHEMA as BUFFER  # here: what only doctor needs
    from actors.uploader.jobs import SCHEMA as UPLOADS
    from common.jobs import ScanJobs
    return [("buffer", home.buffer / "index.sqlite", BUFFER),
            ("uploader", home.upload / "jobs.db", UPLOADS),
            ("scanner", home.cache / "scanner" / "jobs.db", ScanJobs.schema),
            ("camera", home.cache / "camera" / "jobs.db", ScanJobs.schema)]


def newer_databases(home: configlib.Home) -> list[SchemaTooNew]:
    """The databases of the home that a newer release wrote: their programs refuse to
    start (common/sqlite.py), so ``scanbridge start|run`` does not start at all."""
    found = []
    for _, path, schema in databases(home):
        try:
            version = stored_version(path)
        except sqlite3.Error:
            continue  # not for this check to judge: the program opening it says what is wrong
        if version is not None and version > schema.version:
            found.append(SchemaTooNew(path, schema, version))
    return found


@doctor_check("databases")
def check_databases(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    """Schema versions, read without changing a file (see common/sqlite.py)."""
    for program, path, schema in databases(home):
        try:
            found = stored_version(path)
        except sqlite3.Error as exc:
            yield "FAIL", f"{path}: cannot be read: {exc}", f"scanbridge logs {program}"
            continue
        if found is None:
            continue  # made when the program first needs it
        if found > schema.version:
            yield "FAIL", f"{path}: {schema.name} is at schema version {found}, written by " \
                f"a newer Scanbridge than this one (it knows {schema.version}): the " \
                f"{program} does not start, and the file is left as it is", \
                "install that newer release again; a downgrade would lose its data " \
                "(docs/operations.md, \"Upgrades and downgrades\")"
        elif found < schema.version:
            yield "ok", f"{path}: schema version {found}, brought to {schema.version} " \
                f"when the {program} starts", ""
        else:
            yield "ok", f"{path}: schema version {found}", ""


def writable(folder) -> bool:
    """Whether a file can be made in ``folder`` (root passes access() even when not)."""
    probe = folder / f".doctor.{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


@doctor_check("home")
def check_home(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    for name in configlib.Home.PRIVATE:
        folder = getattr(home, name)
        if name == "ini" and not home.own_ini:
            yield from check_config_folder(folder)
            continue
        if not folder.exists():
            yield "warn", f"{folder} does not exist yet", "scanbridge start creates it"
            continue
        if not writable(folder):
            cost = ": HTTPS cannot be set up (HTTP is still served)" if name == "cert" else ""
            yield "FAIL", f"{folder} is not writable by this user{cost}", \
                f"make it a folder user {os.getuid()} can write: chown -R {os.getuid()} {folder}"
            continue
        mode = stat.S_IMODE(folder.stat().st_mode)
        if mode & 0o077:
            yield "FAIL", f"{folder} is readable by others (mode {mode:o})", \
                f"chmod 700 {folder}"
            continue
        yield "ok", f"{folder} (mode {mode:o})", ""


def check_config_folder(folder) -> Iterator[Check]:
    """``SCANBRIDGE_CONFIG``: an administrator's folder (the system service's
    /etc/scanbridge, root:scanbridge 0640 files) that the service only reads."""
    if not folder.is_dir():
        yield "warn", f"{folder} (SCANBRIDGE_CONFIG) does not exist: every setting is its " \
                      "default", "create it with the ini files to change them"
        return
    unreadable = [name for name in configlib.INI_FILES
                  if (folder / name).exists() and not os.access(folder / name, os.R_OK)]
    if unreadable:
        yield "FAIL", f"this user cannot read {', '.join(unreadable)} in {folder}", \
            "let the service's group read them: chgrp GROUP FILE; chmod g+r FILE"
    else:
        yield "ok", f"{folder} (SCANBRIDGE_CONFIG: read, never written by the service)", ""


@doctor_check("packages")
def check_packages(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    missing = []
    for name in system_packages():
        done = subprocess.run(["dpkg-query", "-W", "-f=${Status}", name],
                              capture_output=True, text=True)
        if "install ok installed" not in done.stdout:
            missing.append(name)
    if missing:
        yield "FAIL", f"system packages missing: {' '.join(missing)}", \
            f"sudo apt-get install {' '.join(missing)}  (or: make run)"
    else:
        yield "ok", "system packages installed", ""


def probe_port(port: int) -> str:
    """'free', 'ours' or a description of the other program on the port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            pass
    except OSError:
        return "free"
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
        conn.request("GET", "/api/v1/status", headers={"Host": f"127.0.0.1:{port}"})
        body = json.loads(conn.getresponse().read())
        if isinstance(body, dict) and "actors" in body and "version" in body:
            return "ours"
    except (OSError, ValueError, http.client.HTTPException):
        pass
    return "another program"


def who_listens(port: int) -> str:
    if not shutil.which("ss"):
        return ""
    done = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True)
    return done.stdout.strip().split("users:")[-1] if "users:" in done.stdout else ""


@doctor_check("service")
def check_service(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    running = False
    try:
        infos = supervision.processes(home)
        running = True
        wanted = supervision.always_running(home, cfg.ondemand.programs if cfg else [])
        bad = [f"{supervision.full_name(p)} {p['statename']}" for p in infos
               if p["statename"] != "RUNNING" and p["name"] in wanted]
        if bad:
            yield "FAIL", f"programs not running: {', '.join(bad)}", \
                "scanbridge logs NAME; scanbridge dumps; scanbridge restart NAME"
        else:
            up = sum(p["statename"] == "RUNNING" for p in infos)
            others = "; the others start on demand" if up < len(infos) else ""
            yield "ok", f"service running ({up} of {len(infos)} programs{others})", ""
    except supervision.NotRunning:
        yield "warn", f"the service is not running for {home.root}", "scanbridge start"
    if cfg is None:
        return
    for port in cfg.ports.http:
        state = probe_port(port)
        if state == "ours":
            yield "ok", f"port {port}: Scanbridge answers", ""
        elif state == "free" and not running:
            yield "ok", f"port {port}: free", ""
        elif state == "free":
            yield "FAIL", f"port {port}: nothing listens though the service runs", \
                "scanbridge logs gateway"
        else:
            yield "FAIL", f"port {port}: used by another program {who_listens(port)}".rstrip(), \
                f"stop that program, or set other ports in {home.ini}/DSConfiguration.ini"


@doctor_check("curve")
def check_curve_key(home: configlib.Home, cfg: configlib.Config | None) -> Iterator[Check]:
    if cfg is not None and cfg.broker.tcp_endpoint:
        key = home.cert / "broker.key"
        if not key.exists():
            yield "warn", "CURVE key pair not created yet", "it is made when the broker starts"
        elif stat.S_IMODE(key.stat().st_mode) & 0o077:
            yield "FAIL", f"{key} is readable by others", f"chmod 600 {key}"
        else:
            yield "ok", f"CURVE server key {key} (0600)", ""


@command("doctor", "check the installation")
def cmd_doctor(home: configlib.Home, opts: argparse.Namespace) -> int:
    try:
        cfg = configlib.load(home)
    except configlib.ConfigError:
        cfg = None
    rank = {name: number for number, name in enumerate(ORDER)}
    failed = 0
    for check in sorted(DOCTOR_CHECKS.values(), key=lambda c: rank.get(c.name, len(ORDER))):
        for level, what, fix in check.run(home, cfg):
            print(f"{level:<5} {what}")
            if fix and level != "ok":
                print(f"      fix: {fix}")
            failed += level == "FAIL"
    print(f"{failed} problem(s) found" if failed else "no problems found")
    return 1 if failed else 0
