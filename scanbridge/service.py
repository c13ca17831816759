"""``scanbridge run | start | stop | status | restart | logs | dumps``: the service's
programs under supervisord, their logs and dumps.

    scanbridge run                      the whole service in the foreground (Ctrl-C stops)
    scanbridge start | stop | status    as a background daemon
    scanbridge restart ACTOR            restart one program (supervisord)
    scanbridge logs ACTOR [-f] [-n N]   its log, as text
    scanbridge dumps [--show NAME]      crash and hang dumps
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from actors.monitor.dumps import listing
from broker import config as configlib
from broker import logs, supervision
from broker.client import Client
from broker.procutil import last_lines, pid_alive
from broker.protocol import Error
from common.commands import (EXIT_FAILED, EXIT_NEWER_HOME, EXIT_USAGE, command, fail,
                             load_config, not_running)

from .doctor import newer_databases

START_WAIT = 30.0  # seconds `start` waits for the programs to run
HTTPS_WAIT = 10.0  # seconds it then waits for the HTTPS ports


def rpc(home: configlib.Home):
    try:
        return supervision.rpc(home)
    except supervision.NotRunning:
        not_running(home)


def supervisord_argv(foreground: bool) -> list[str]:
    exe = Path(sys.executable).parent / "supervisord"
    argv = [str(exe) if exe.exists() else "supervisord", "-c", str(supervision.SUPERVISOR_CONF)]
    return argv + ["-n"] if foreground else argv


def prepare(home: configlib.Home) -> configlib.Config:
    """Check everything start-up needs; then the daemon can only fail for new reasons."""
    os.umask(home.UMASK)  # supervisord and every program inherit it, `run` included
    cfg = load_config(home)
    for warning in cfg.warnings:  # each program logs them too; here they are seen at once
        print(f"scanbridge: warning: {warning}", file=sys.stderr)
    for refused in newer_databases(home):  # its program would refuse to start, after a while
        fail(f"{refused} (see: scanbridge doctor)", EXIT_NEWER_HOME)
    try:
        for problem in home.ensure():
            print(f"scanbridge: warning: {problem} (see: scanbridge doctor)", file=sys.stderr)
    except OSError as exc:
        fail(f"cannot prepare the home {home.root}: {exc}")
    home.seed()  # a new home gets the default ini files to edit (docs/install.md)
    try:
        supervision.rpc(home)
        fail(f"the service is already running for {home.root} (see: scanbridge status)")
    except supervision.NotRunning:
        pass
    (home.root / "supervisor.d").mkdir(exist_ok=True)
    return cfg


def listening(address: str, port: int) -> bool:
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def welcome_url(cfg: configlib.Config) -> str:
    https = f", https://127.0.0.1:{cfg.ports.https[-1]}/" if cfg.ports.https else ""
    return f"http://127.0.0.1:{cfg.ports.http[-1]}/{https}"


def https_problem(home: configlib.Home) -> str:
    """What the certificate helper says stops HTTPS ("" when nothing, or no answer)."""
    try:
        with Client(home.broker_endpoint) as client:
            return client.request("certhelper", "status", {}, timeout=2).result["problem"]
    except (Error, OSError, KeyError, TypeError):
        return ""


def count(raw: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a count (0 or more)")
    return value


# --- commands

@command("run", "run the whole service in the foreground")
def cmd_run(home: configlib.Home, opts: argparse.Namespace) -> int:
    cfg = prepare(home)
    print(f"Scanbridge starting in the foreground; welcome page: {welcome_url(cfg)} "
          "(Ctrl-C stops everything)", flush=True)
    argv = supervisord_argv(foreground=True)
    os.execvpe(argv[0], argv, supervision.environment(home, cfg))


@command("start", "start the service as a daemon")
def cmd_start(home: configlib.Home, opts: argparse.Namespace) -> int:
    cfg = prepare(home)
    done = subprocess.run(supervisord_argv(foreground=False),
                          env=supervision.environment(home, cfg), capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"supervisord did not start: {(done.stderr or done.stdout).strip()}")
    end = time.monotonic() + START_WAIT
    while True:
        try:
            infos = supervision.processes(home)
            wanted = supervision.always_running(home, cfg.ondemand.programs)
        except supervision.NotRunning:
            infos, wanted = [], set()
        autostart = [p for p in infos if p["name"] in wanted]
        if autostart and all(p["statename"] == "RUNNING" for p in autostart):
            break
        failed = [p["name"] for p in autostart if p["statename"] in ("FATAL", "BACKOFF")]
        if failed or time.monotonic() > end:
            fail(f"started, but these programs do not run: {', '.join(failed) or 'all'} "
                 f"(see: scanbridge logs NAME, and {home.logs}/supervisord.log)")
        time.sleep(0.2)
    # RUNNING means "up for startsecs"; the gateway may still be binding its ports.
    bind = "127.0.0.1" if "127.0.0.1" in cfg.network.bind else cfg.network.bind[0]
    while not all(listening(bind, port) for port in cfg.ports.http):
        if time.monotonic() > end:
            fail(f"started, but the gateway does not answer on {bind} ports "
                 f"{cfg.ports.http} (see: scanbridge logs gateway)")
        time.sleep(0.1)
    # HTTPS follows once the certificate helper made the certificate: wait a little, but
    # a service without HTTPS (say, cert/ not writable) still serves HTTP.
    end = time.monotonic() + HTTPS_WAIT
    next_ask = time.monotonic() + 1.0
    while not all(listening(bind, port) for port in cfg.ports.https):
        problem = ""
        if time.monotonic() > next_ask:  # the helper knows when waiting is pointless
            problem = https_problem(home)
            next_ask = time.monotonic() + 1.0
        if problem or time.monotonic() > end:
            print(f"scanbridge: HTTPS ports {cfg.ports.https} do not answer: "
                  f"{problem or 'not yet'} (see: scanbridge doctor)", file=sys.stderr)
            break
        time.sleep(0.1)
    print(f"Scanbridge started; welcome page: {welcome_url(cfg)}")
    return 0


@command("stop", "stop the daemon and all programs")
def cmd_stop(home: configlib.Home, opts: argparse.Namespace) -> int:
    server = rpc(home)
    pid = server.getPID()
    server.shutdown()
    end = time.monotonic() + 30
    while pid_alive(pid):
        if time.monotonic() > end:
            fail(f"supervisord (pid {pid}) did not stop within 30 s")
        # supervisord stops one program at a time, and notices one has exited when its
        # poll wakes: a connection to its socket wakes it, instead of its 1 s timeout.
        supervision.socket_answers(supervision.socket_path(home))
        time.sleep(0.02)
    print("Scanbridge stopped")
    return 0


def build_status(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="supervisord's raw process info")


@command("status", "programs and their states", build_status)
def cmd_status(home: configlib.Home, opts: argparse.Namespace) -> int:
    cfg = load_config(home)
    infos = rpc(home).getAllProcessInfo()
    wanted = supervision.always_running(home, cfg.ondemand.programs)
    if opts.json:
        print(json.dumps(infos, indent=2))
    else:
        now = time.time()
        print(f"{'PROGRAM':<16}{'STATE':<10}{'PID':>8}  {'UPTIME':>9}  RUNS")
        for info in infos:
            up = ""
            if info["statename"] == "RUNNING":
                up = time.strftime("%H:%M:%S", time.gmtime(now - info["start"]))
            runs = "on demand" if info["group"] in cfg.ondemand.programs else \
                "always" if info["name"] in wanted else "manual"
            print(f"{supervision.full_name(info):<16}{info['statename']:<10}"
                  f"{info['pid'] or '':>8}  {up:>9}  {runs}")
    down = [p for p in infos if p["statename"] != "RUNNING" and p["name"] in wanted]
    return EXIT_FAILED if down else 0


def _program(home: configlib.Home, name: str) -> tuple[object, list[dict]]:
    server = rpc(home)
    infos = server.getAllProcessInfo()
    chosen = [p for p in infos if name in (p["group"], p["name"], supervision.full_name(p))]
    if not chosen:
        known = ", ".join(sorted({p["group"] for p in infos}))
        fail(f"no program {name!r} (programs: {known})", EXIT_USAGE)
    return server, chosen


def build_restart(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("actor")


@command("restart", "restart one program", build_restart)
def cmd_restart(home: configlib.Home, opts: argparse.Namespace) -> int:
    server, chosen = _program(home, opts.actor)
    for info in chosen:
        name = supervision.full_name(info)
        try:
            if info["statename"] in ("RUNNING", "STARTING", "BACKOFF"):
                server.stopProcess(name, True)
            server.startProcess(name, True)
        except Exception as exc:
            fail(f"could not restart {name}: {getattr(exc, 'faultString', exc)}")
        pid = server.getProcessInfo(name)["pid"]
        print(f"restarted {name} (pid {pid})")
    return 0


def build_logs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("actor")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.add_argument("-n", "--lines", type=count, default=50, help="lines to show (50)")
    parser.add_argument("--raw", action="store_true", help="the JSON lines as written")


@command("logs", "show a program's log", build_logs)
def cmd_logs(home: configlib.Home, opts: argparse.Namespace) -> int:
    path = home.logs / f"{opts.actor}.log"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in home.logs.glob("*.log"))) or "none yet"
        fail(f"no log for {opts.actor!r} in {home.logs} (logs: {known})", EXIT_USAGE)
    show = (lambda line: logs.printable(line.rstrip("\n"))) if opts.raw else logs.format_line
    for line in last_lines(path, opts.lines):
        print(show(line))
    if not opts.follow:
        return 0
    with open(path, "r", errors="replace") as log:
        log.seek(0, os.SEEK_END)
        inode = os.fstat(log.fileno()).st_ino
        try:
            while True:
                line = log.readline()
                if line:
                    print(show(line), flush=True)
                    continue
                time.sleep(0.2)
                try:
                    if os.stat(path).st_ino != inode:  # rotated: follow the new file
                        log.close()
                        log = open(path, "r", errors="replace")
                        inode = os.fstat(log.fileno()).st_ino
                except FileNotFoundError:
                    pass
        except KeyboardInterrupt:
            return 0


def build_dumps(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show", metavar="NAME", help="print one dump")


@command("dumps", "list crash and hang dumps", build_dumps)
def cmd_dumps(home: configlib.Home, opts: argparse.Namespace) -> int:
    found = listing(home.dumps)
    if opts.show:
        match = [d for d in found if d["name"] == opts.show or d["name"] == opts.show + ".dump"]
        if not match:
            fail(f"no dump {opts.show!r} in {home.dumps}", EXIT_USAGE)
        text = Path(match[0]["path"]).read_text(errors="replace")
        print("\n".join(logs.printable(line) for line in text.splitlines()))
        return 0
    if not found:
        print(f"no dumps in {home.dumps}")
    for dump in found:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(dump["time"]))
        print(f"{stamp}  {dump['program']:<12} {dump['bytes']:>8} B  {dump['name']}")
    return 0
