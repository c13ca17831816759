"""``scanbridge``: run, start, stop and inspect the service; call any actor.

    scanbridge run                      the whole service in the foreground (Ctrl-C stops)
    scanbridge start | stop | status    as a background daemon
    scanbridge restart ACTOR            restart one program (supervisord)
    scanbridge logs ACTOR [-f] [-n N]   its log, as text
    scanbridge dumps [--show NAME]      crash and hang dumps
    scanbridge call SERVICE OP [JSON]   one request through the broker; prints the result
    scanbridge allow ORIGIN             let a web origin use the service
    scanbridge trust | untrust          make browsers trust the local HTTPS CA, or stop
    scanbridge doctor                   check the installation and say how to fix it
    scanbridge sources | options SRC    the scanners and their options
    scanbridge scan --source SRC -o OUT scan pages into a PDF, TIFF or image files
    scanbridge ocr FILE... | barcodes FILE...   text, searchable PDF or barcodes of files
    scanbridge worker ocr --connect tcp://HOST:PORT --server-key KEY   remote OCR workers

Every failure is one line on stderr and a non-zero exit status: 1 for a failed operation,
2 for bad usage or input, 3 when the service is not running, 78 for bad configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NoReturn

from . import config as configlib
from . import logs, supervision
from .client import Client
from .procutil import atomic_write, last_lines, pid_alive
from .protocol import Error

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_CONFIG = 1, 2, 3, 78
START_WAIT = 30.0  # seconds `start` waits for the programs to run
HTTPS_WAIT = 10.0  # seconds it then waits for the HTTPS ports


class CliError(Exception):
    def __init__(self, message: str, status: int = EXIT_FAILED):
        super().__init__(message)
        self.status = status


def fail(message: str, status: int = EXIT_FAILED) -> NoReturn:
    raise CliError(message, status)


def load_config(home: configlib.Home) -> configlib.Config:
    try:
        return configlib.load(home)
    except configlib.ConfigError as exc:
        fail(f"configuration error: {exc}", EXIT_CONFIG)


def rpc(home: configlib.Home):
    try:
        return supervision.rpc(home)
    except supervision.NotRunning:
        fail(f"the service is not running for {home.root} (start it with: scanbridge start)",
             EXIT_NOT_RUNNING)


def supervisord_argv(foreground: bool) -> list[str]:
    exe = Path(sys.executable).parent / "supervisord"
    argv = [str(exe) if exe.exists() else "supervisord", "-c", str(supervision.SUPERVISOR_CONF)]
    return argv + ["-n"] if foreground else argv


def prepare(home: configlib.Home) -> configlib.Config:
    """Check everything start-up needs; then the daemon can only fail for new reasons."""
    os.umask(home.UMASK)  # supervisord and every program inherit it, `run` included
    cfg = load_config(home)
    try:
        for problem in home.ensure():
            print(f"scanbridge: warning: {problem} (see: scanbridge doctor)", file=sys.stderr)
    except OSError as exc:
        fail(f"cannot prepare the home {home.root}: {exc}")
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


# --- commands

def cmd_run(home: configlib.Home, opts: argparse.Namespace) -> int:
    cfg = prepare(home)
    print(f"Scanbridge starting in the foreground; welcome page: {welcome_url(cfg)} "
          "(Ctrl-C stops everything)", flush=True)
    argv = supervisord_argv(foreground=True)
    os.execvpe(argv[0], argv, supervision.environment(home, cfg))


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


def cmd_dumps(home: configlib.Home, opts: argparse.Namespace) -> int:
    from actors.monitor.dumps import listing
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


def cmd_call(home: configlib.Home, opts: argparse.Namespace) -> int:
    try:
        args = json.loads(opts.json) if opts.json else {}
    except json.JSONDecodeError as exc:
        fail(f"the JSON argument is not valid: {exc}", EXIT_USAGE)
    if not isinstance(args, dict):
        fail("the JSON argument must be an object, like '{\"key\": 1}'", EXIT_USAGE)
    blobs = []
    for name in opts.blob:
        try:
            blobs.append(Path(name).read_bytes())
        except OSError as exc:
            fail(f"cannot read {name}: {exc.strerror}", EXIT_USAGE)
    load_config(home)
    if not supervision.socket_answers(home.run / "broker.sock"):
        fail(f"the broker is not running for {home.root} (start it with: scanbridge start)",
             EXIT_NOT_RUNNING)
    with Client(home.broker_endpoint) as client:
        try:
            reply = client.request(opts.service, opts.op, args, blobs=blobs,
                                   timeout=opts.timeout, idempotent=opts.idempotent)
        except Error as exc:
            fail(f"{opts.service}.{opts.op} failed: {exc.code}: {exc.message}")
    print(json.dumps(reply.result, indent=2, default=str))
    for number, blob in enumerate(reply.blobs):
        if not opts.out:
            print(f"(reply blob {number}: {len(blob)} bytes; save with --out PREFIX)",
                  file=sys.stderr)
            continue
        target = Path(f"{opts.out}{number}" if len(reply.blobs) > 1 else opts.out)
        target.write_bytes(blob.buffer)
    return 0


def allow_origin(path: Path, origin: str) -> bool:
    """Add ``origin`` to ``[access] allowed_origins`` keeping the rest of the file.

    Returns False when it was allowed already. Raises ConfigError if the result is bad.
    """
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    current = configlib.load_file(path, "user_config.ini")["access"]["allowed_origins"]
    if origin in current:
        return False
    value = ", ".join([*current, origin])
    section = None
    out: list[str] = []
    done = skipping = False
    for line in lines:
        stripped = line.strip()
        if skipping and line[:1] in (" ", "\t") and stripped:
            continue  # continuation of the old value
        skipping = False
        if stripped.startswith("["):
            if section == "access" and not done:
                out.append(f"allowed_origins = {value}")
                done = True
            section = stripped.strip("[] ")
        elif section == "access" and not done and re.match(r"allowed_origins\s*[=:]", stripped):
            out.append(f"allowed_origins = {value}")
            done = skipping = True
            continue
        out.append(line)
    if not done:
        if section != "access":
            out += ["", "[access]"] if out else ["[access]"]
        out.append(f"allowed_origins = {value}")
    text = "\n".join(out) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    check = path.with_name(f".{path.name}.check")
    check.write_text(text, encoding="utf-8")
    try:
        configlib.load_file(check, "user_config.ini")
    except configlib.ConfigError as exc:
        raise configlib.ConfigError(str(exc).replace(str(check), str(path))) from None
    finally:
        check.unlink()
    atomic_write(path, text.encode("utf-8"), 0o600)  # camera URLs may hold passwords
    return True


def cmd_allow(home: configlib.Home, opts: argparse.Namespace) -> int:
    try:
        origin = configlib.parse_origin(opts.origin)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    path = home.ini / "user_config.ini"
    os.umask(home.UMASK)
    try:
        added = allow_origin(path, origin)
    except configlib.ConfigError as exc:
        fail(f"configuration error: {exc}", EXIT_CONFIG)
    print(f"{'allowed' if added else 'already allowed'}: {origin} (in {path})")
    return 0


def cmd_doctor(home: configlib.Home, opts: argparse.Namespace) -> int:
    from .doctor import run_checks
    return run_checks(home)


def count(raw: str) -> int:
    """An argparse type: a whole number of 0 or more."""
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a count (0 or more)")
    return value


class Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see: {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="scanbridge", description=__doc__.split("\n")[0],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("--home", help="the Scanbridge home (default: $SCANBRIDGE_HOME, "
                                    "else the checkout)")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="run the whole service in the foreground").set_defaults(
        func=cmd_run)
    sub.add_parser("start", help="start the service as a daemon").set_defaults(func=cmd_start)
    sub.add_parser("stop", help="stop the daemon and all programs").set_defaults(func=cmd_stop)
    status = sub.add_parser("status", help="programs and their states")
    status.add_argument("--json", action="store_true", help="supervisord's raw process info")
    status.set_defaults(func=cmd_status)
    restart = sub.add_parser("restart", help="restart one program")
    restart.add_argument("actor")
    restart.set_defaults(func=cmd_restart)
    log = sub.add_parser("logs", help="show a program's log")
    log.add_argument("actor")
    log.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    log.add_argument("-n", "--lines", type=count, default=50, help="lines to show (50)")
    log.add_argument("--raw", action="store_true", help="the JSON lines as written")
    log.set_defaults(func=cmd_logs)
    dumps = sub.add_parser("dumps", help="list crash and hang dumps")
    dumps.add_argument("--show", metavar="NAME", help="print one dump")
    dumps.set_defaults(func=cmd_dumps)
    call = sub.add_parser("call", help="send one request to a service and print the result")
    call.add_argument("service")
    call.add_argument("op")
    call.add_argument("json", nargs="?", help="the arguments as a JSON object")
    call.add_argument("--timeout", type=float, default=30.0, help="seconds (30)")
    call.add_argument("--idempotent", action="store_true",
                      help="the broker may retry it on another worker if one dies")
    call.add_argument("--blob", action="append", default=[], metavar="FILE",
                      help="attach a file as a blob (repeatable)")
    call.add_argument("--out", metavar="PATH", help="write reply blobs here (PATH, PATH0...)")
    call.set_defaults(func=cmd_call)
    allow = sub.add_parser("allow", help="allow a web origin to use the service")
    allow.add_argument("origin", help="e.g. https://app.example.com")
    allow.set_defaults(func=cmd_allow)
    sub.add_parser("doctor", help="check the installation").set_defaults(func=cmd_doctor)
    from actors.certhelper.command import add_commands as certhelper_commands
    certhelper_commands(sub)
    from actors.scanner.command import add_commands as scanner_commands
    scanner_commands(sub)
    from actors.ocr.command import add_commands as ocr_commands
    ocr_commands(sub)
    from actors.ocr.remote import add_commands as worker_commands
    worker_commands(sub)
    return top


def main(argv: list[str] | None = None) -> None:
    opts = parser().parse_args(argv)
    home = configlib.Home(opts.home)
    try:
        status = opts.func(home, opts)
    except CliError as exc:
        print(f"scanbridge: {exc}", file=sys.stderr)
        status = exc.status
    except KeyboardInterrupt:
        status = 130
    except BrokenPipeError:
        status = 0
    sys.exit(status)


if __name__ == "__main__":
    # As ``python -m broker.cli`` this file runs as __main__, a second copy of the module:
    # commands importing ``broker.cli`` raise *its* CliError, which only its main() catches.
    from broker.cli import main as installed_main
    installed_main()
