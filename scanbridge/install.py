"""``scanbridge install --user`` / ``uninstall --user [--purge]``: start at login, without root.

    scanbridge install --user [--via systemd|autostart] [--no-start]
    scanbridge uninstall --user [--purge]

Where a systemd user manager runs (``$XDG_RUNTIME_DIR/systemd`` exists and ``systemctl
--user is-system-running`` names a state), install writes the user unit
``~/.config/systemd/user/scanbridge.service`` from the template ``units/user/`` of this
package, with the absolute command of this install and its home, and enables and starts
it: systemd restarts the service if it fails. Elsewhere it writes the XDG autostart entry
``~/.config/autostart/scanbridge.desktop`` (``scanbridge start`` at login) and starts the
service now. Either way it runs ``scanbridge trust`` for this user's browsers (Chromium's
``~/.pki/nssdb`` and Firefox profiles; never the system store), making the local CA first
if the service never ran.

Uninstall stops the service, disables and removes both files, untrusts the CA, and with
``--purge`` removes the home: pages, queued uploads, certificates, logs and settings.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from actors.certhelper.commands import cmd_trust, cmd_untrust
from broker import config as configlib
from broker import supervision
from broker.procutil import atomic_write
from common.commands import EXIT_USAGE, CommandError, command, fail, load_config

from . import service

UNIT = "scanbridge.service"
UNIT_TEMPLATE = Path(__file__).resolve().parent / "units" / "user" / UNIT
# `is-system-running` prints "offline" (exit 1) when no manager answers.
MANAGER_STATES = ("running", "degraded", "starting", "initializing", "maintenance")
# What a home holds (docs/operations.md); --purge refuses a folder with anything else.
HOME_ENTRIES = {*configlib.Home.PRIVATE, "supervisor.d"}
SYSTEMCTL_SECONDS = 60  # `enable --now` waits for the start, which waits for the programs


def config_folder() -> Path:
    """``$XDG_CONFIG_HOME``, else ``~/.config`` (a relative one is to be ignored)."""
    folder = os.environ.get("XDG_CONFIG_HOME", "")
    return Path(folder) if os.path.isabs(folder) else Path.home() / ".config"


def unit_path() -> Path:
    return config_folder() / "systemd" / "user" / UNIT


def wants_path() -> Path:
    """What ``systemctl --user enable`` makes for ``WantedBy=default.target``."""
    return config_folder() / "systemd" / "user" / "default.target.wants" / UNIT


def autostart_path() -> Path:
    return config_folder() / "autostart" / "scanbridge.desktop"


def user_systemd() -> bool:
    """Whether a systemd user manager runs for this user now."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    if not Path(runtime, "systemd").is_dir() or not shutil.which("systemctl"):
        return False
    try:
        state = subprocess.run(["systemctl", "--user", "is-system-running"], text=True,
                               capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return state in MANAGER_STATES


def launcher() -> tuple[list[str], dict[str, str]]:
    """The absolute command of this install's ``scanbridge`` and what it needs set."""
    script = Path(os.path.abspath(sys.executable)).parent / "scanbridge"  # a venv's, unresolved
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)], {}
    command = [os.path.abspath(sys.executable), "-m", "scanbridge"]
    return command, {} if configlib.INSTALLED else {"PYTHONPATH": str(configlib.CHECKOUT)}


def service_command(home: configlib.Home) -> tuple[list[str], dict[str, str]]:
    """The command to write (with this home, which the login's environment may not name
    the same way) and its environment."""
    command, environment = launcher()
    if not home.own_ini:
        environment["SCANBRIDGE_CONFIG"] = str(home.ini)
    return [*command, "--home", str(home.root)], environment


# --- the two files and their quoting

def systemd_word(word: str, executable: bool = False) -> str:
    """One word of ``ExecStart=``: specifiers (%) and variables ($) taken literally
    (systemd expands no variable in the executable's path, so a $ stays single there)."""
    word = word.replace("%", "%%")
    if not executable:
        word = word.replace("$", "$$")
    if re.fullmatch(r"[A-Za-z0-9_@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_assignment(key: str, value: str) -> str:
    """``Environment="KEY=VALUE"`` (no $ expansion there; % specifiers still apply)."""
    text = f"{key}={value}".replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    return f'Environment="{text}"'


def user_unit(command: list[str], environment: dict[str, str] | None = None,
              template: Path = UNIT_TEMPLATE) -> str:
    """The user unit for ``command`` (the words before ``run``)."""
    lines = "\n".join(systemd_assignment(k, v) for k, v in (environment or {}).items())
    if re.search(r"[\"'\\\x00-\x1f\x7f]", command[0]):
        # systemd refuses such an executable path (string_is_safe); env takes it as a word.
        command = ["/usr/bin/env", *command]
    words = [systemd_word(command[0], executable=True), *map(systemd_word, command[1:])]
    text = template.read_text(encoding="utf-8")
    text = text.replace("\nExecStart=@SCANBRIDGE@ ",
                        f"\nExecStart={' '.join(words)} ")
    return text.replace("\n@ENVIRONMENT@\n", f"\n{lines}\n" if lines else "\n")


def desktop_word(word: str) -> str:
    """One word of a desktop entry's ``Exec=``: its quoting rule, then the string escape
    rule (a backslash doubled again) and field codes (% doubled)."""
    if re.search(r"[\s\"'\\<>~|&;$*?#()`]", word) or not word:
        word = '"' + re.sub(r'(["`$\\])', r"\\\1", word) + '"'
    return word.replace("\\", "\\\\").replace("%", "%%")


def autostart_entry(command: list[str], environment: dict[str, str]) -> str:
    words = [*(["env", *(f"{k}={v}" for k, v in environment.items())] if environment else []),
             *command, "start"]
    return ("[Desktop Entry]\n"
            "Type=Application\n"
            "Name=Scanbridge\n"
            "Comment=Lets web pages use this computer's scanners and cameras\n"
            f"Exec={' '.join(desktop_word(w) for w in words)}\n"
            "Terminal=false\n"
            "NoDisplay=true\n"
            "X-GNOME-Autostart-enabled=true\n")


def systemctl(*args: str) -> str:
    """``systemctl --user ARGS``; its complaint ("" when it succeeded)."""
    try:
        done = subprocess.run(["systemctl", "--user", *args], text=True, capture_output=True,
                              timeout=SYSTEMCTL_SECONDS)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr or done.stdout).strip() or \
        f"exit status {done.returncode}"


def running(home: configlib.Home) -> bool:
    try:
        supervision.rpc(home)
        return True
    except supervision.NotRunning:
        return False


def write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text.encode(), mode=0o644)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}")


# --- install

def build_install(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="store_true", required=True,
                        help="for this user, without root (the only kind; system-wide: the "
                             "Debian package)")
    parser.add_argument("--via", choices=("systemd", "autostart"),
                        help="how to start at login (default: systemd when a user manager "
                             "runs, else an XDG autostart entry)")
    parser.add_argument("--no-start", action="store_true", help="do not start it now")


@command("install", "start the service at every login of this user (no root needed)",
         build_install)
def cmd_install(home: configlib.Home, opts: argparse.Namespace) -> int:
    load_config(home)  # a bad file stops here, before anything is written
    managed = user_systemd()
    via = opts.via or ("systemd" if managed else "autostart")
    command, environment = service_command(home)
    # One way of starting at login, not two: the other one goes.
    if via == "systemd":
        remove_autostart()
        write(unit_path(), user_unit(command, environment))
        enabled = enable(managed)
        print(f"installed {unit_path()} ({enabled})")
    else:
        remove_unit(managed)
        write(autostart_path(), autostart_entry(command, environment))
        print(f"installed {autostart_path()} (scanbridge start at every login)")
    trust_browsers(home)
    if not opts.no_start:
        start(home, opts, via == "systemd" and managed)
    return 0


def enable(managed: bool) -> str:
    if not managed:
        # What `systemctl --user enable` does; the manager reads it when it next starts.
        link = wants_path()
        try:
            link.parent.mkdir(parents=True, exist_ok=True)
            link.unlink(missing_ok=True)
            link.symlink_to(unit_path())
        except OSError as exc:
            fail(f"cannot enable {UNIT}: {link}: {exc.strerror or exc}")
        return "enabled from the next login: no systemd user manager runs now"
    problem = systemctl("daemon-reload") or systemctl("enable", UNIT)
    if problem:
        fail(f"systemctl --user enable {UNIT}: {problem}")
    return "enabled: systemd starts it at login and restarts it if it fails"


def trust_browsers(home: configlib.Home) -> None:
    """``scanbridge trust`` for this user's browsers; HTTPS still works untrusted (with a
    warning), so a failure is reported, not fatal."""
    try:
        status = cmd_trust(home, argparse.Namespace(no_system=True))
    except CommandError as exc:
        status = 1
        print(f"not trusted yet: {exc}")
    if status:
        print("some browsers do not trust the local CA yet: see above, then run: "
              "scanbridge trust")


def start(home: configlib.Home, opts: argparse.Namespace, managed: bool) -> None:
    if running(home):
        print(f"the service already runs for {home.root}; it stays as it is"
              + (" (systemd starts it from the next login)" if managed else ""))
        return
    if not managed:
        service.cmd_start(home, opts)
        return
    problem = systemctl("start", UNIT)
    if problem:
        fail(f"systemctl --user start {UNIT}: {problem} (see: journalctl --user -u {UNIT})")
    print(f"started (systemctl --user status {UNIT})")


# --- uninstall

def build_uninstall(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="store_true", required=True,
                        help="what install --user did (the Debian package: apt remove)")
    parser.add_argument("--purge", action="store_true",
                        help="also remove the home: every page, queued upload, certificate, "
                             "log and setting")


@command("uninstall", "stop starting the service at login, stop it, untrust its CA "
                      "(--purge: and remove its home)", build_uninstall)
def cmd_uninstall(home: configlib.Home, opts: argparse.Namespace) -> int:
    if opts.purge:
        refusal = purge_refusal(home)
        if refusal:
            fail(f"will not remove {home.root}: {refusal}; nothing was changed", EXIT_USAGE)
    managed = user_systemd()
    removed = [remove_unit(managed), remove_autostart()]  # both, whatever the first did
    if not any(removed):
        print("no systemd user unit or autostart entry of Scanbridge was installed")
    if running(home):
        service.cmd_stop(home, opts)
    if (home.cert / "ca.pem").exists():
        try:
            cmd_untrust(home, argparse.Namespace(no_system=True))
        except CommandError as exc:
            print(f"not untrusted: {exc}")
    if opts.purge and home.root.exists():
        print(f"removing {home.root}: every page, queued upload, certificate, log and "
              "setting of Scanbridge for this user")
        try:
            shutil.rmtree(home.root)
        except OSError as exc:
            fail(f"cannot remove all of {home.root}: {exc.strerror or exc}")
        if not home.own_ini:
            print(f"left {home.ini}: its configuration belongs to the administrator")
    return 0


def remove_unit(managed: bool) -> bool:
    """Stop, disable and remove the user unit; whether there was one."""
    unit, link = unit_path(), wants_path()
    if not unit.exists() and not link.is_symlink():
        return False
    if managed:
        problem = systemctl("disable", "--now", UNIT)
        if problem:
            print(f"systemctl --user disable --now {UNIT}: {problem}")
    link.unlink(missing_ok=True)
    unit.unlink(missing_ok=True)
    if managed:
        systemctl("daemon-reload")
    print(f"removed {unit}")
    return True


def remove_autostart() -> bool:
    entry = autostart_path()
    if not entry.exists():
        return False
    entry.unlink()
    print(f"removed {entry}")
    return True


def purge_refusal(home: configlib.Home) -> str:
    """Why ``home`` does not look like a Scanbridge home alone ("" when it does)."""
    root = home.root
    if not root.exists():
        return ""
    if (root / ".git").exists() or (not configlib.INSTALLED and root == configlib.CHECKOUT):
        return "it is a source checkout"
    if root == Path(root.anchor) or Path.home().resolve().is_relative_to(root):
        return "it holds your home folder"
    others = sorted(entry.name for entry in root.iterdir() if entry.name not in HOME_ENTRIES)
    if others:
        return f"it holds other files too ({', '.join(others[:5])})"
    return ""
