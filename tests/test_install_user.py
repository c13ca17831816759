"""`scanbridge install --user` / `uninstall --user` from the checkout, in a fresh HOME: the
systemd user unit (checked by `systemd-analyze --user verify`), the XDG autostart entry
(checked by `desktop-file-validate`), browser trust, and what uninstall takes back.

PID 1 here is not systemd and no user manager runs, so units are verified, not booted,
and install without --via takes the autostart path. Starting the service at install is
tested on the installed wheel (tests/test_install_wheel.py); here it is --no-start.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from broker.config import CHECKOUT
from scanbridge.install import UNIT_TEMPLATE, autostart_entry, user_unit
from tests.support.service import SCANBRIDGE
from tests.support.stack import ROOT, env_for


def verify_unit(path: Path, runtime: Path) -> subprocess.CompletedProcess:
    """`systemd-analyze --user verify`: it needs a runtime folder to start its manager in."""
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(["systemd-analyze", "--user", "verify", str(path)], text=True,
                          capture_output=True, timeout=60,
                          env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})


def validate_entry(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["desktop-file-validate", str(path)], text=True,
                          capture_output=True, timeout=30)


@pytest.fixture
def user(tmp_path):
    """A fresh user: HOME and its home of Scanbridge, no user manager, no XDG folders."""
    home = tmp_path / "user"
    home.mkdir()
    env = {k: v for k, v in env_for(tmp_path / "sbhome").items()
           if not k.startswith("XDG_")}
    env["HOME"] = str(home)

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*SCANBRIDGE, *args], env=env, cwd=ROOT, text=True,
                              capture_output=True, timeout=120)

    cli.home = home
    cli.sbhome = tmp_path / "sbhome"
    return cli


def test_install_via_systemd_writes_a_unit_that_verifies_and_enables_it(user, tmp_path):
    done = user("install", "--user", "--via", "systemd", "--no-start")
    assert done.returncode == 0, done.stderr
    unit = user.home / ".config/systemd/user/scanbridge.service"
    assert f"installed {unit} (enabled from the next login" in done.stdout
    text = unit.read_text()
    start = next(line for line in text.splitlines() if line.startswith("ExecStart="))
    command = start.removeprefix("ExecStart=").split()
    assert Path(command[0]).is_absolute() and os.access(command[0], os.X_OK), start
    assert command[-3:] == ["--home", str(user.sbhome), "run"]
    assert "\nRestart=on-failure\n" in text and "\nWantedBy=default.target\n" in text
    wants = user.home / ".config/systemd/user/default.target.wants/scanbridge.service"
    assert wants.resolve() == unit
    verified = verify_unit(unit, tmp_path / "runtime")
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    # Trust is part of install: the CA was made (the service never ran) and Chromium's
    # database of this user has it.
    assert (user.sbhome / "cert" / "ca.pem").exists()
    assert "trusted: chromium " in done.stdout
    assert (user.home / ".pki" / "nssdb" / "cert9.db").exists()


def test_install_without_a_user_manager_writes_an_autostart_entry_instead(user):
    assert user("install", "--user", "--via", "systemd", "--no-start").returncode == 0
    done = user("install", "--user", "--no-start")
    assert done.returncode == 0, done.stderr
    entry = user.home / ".config/autostart/scanbridge.desktop"
    assert f"installed {entry} (scanbridge start at every login)" in done.stdout
    assert not (user.home / ".config/systemd/user/scanbridge.service").exists()
    assert not (user.home / ".config/systemd/user/default.target.wants/scanbridge.service"
                ).is_symlink()
    exec_line = next(line for line in entry.read_text().splitlines()
                     if line.startswith("Exec="))
    assert exec_line.endswith(f" --home {user.sbhome} start"), exec_line
    validated = validate_entry(entry)
    assert validated.returncode == 0 and validated.stdout == "", validated.stdout


def test_uninstall_removes_the_entry_and_the_trust_and_purge_the_home(user):
    assert user("install", "--user", "--no-start").returncode == 0
    done = user("uninstall", "--user", "--purge")
    assert done.returncode == 0, done.stderr
    entry = user.home / ".config/autostart/scanbridge.desktop"
    assert done.stdout.splitlines() == [
        f"removed {entry}",
        f"removed from: chromium {user.home}/.pki/nssdb (user root)",
        f"removing {user.sbhome}: every page, queued upload, certificate, log and setting "
        "of Scanbridge for this user"]
    assert not entry.exists() and not user.sbhome.exists()
    again = user("uninstall", "--user")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "no systemd user unit or autostart entry of Scanbridge was " \
                           "installed\n"


def test_purge_refuses_a_folder_that_holds_more_than_a_home_and_changes_nothing(user):
    assert user("install", "--user", "--no-start").returncode == 0
    (user.sbhome / "thesis.odt").write_text("mine")
    done = user("uninstall", "--user", "--purge")
    assert done.returncode == 2
    assert done.stderr == f"scanbridge: will not remove {user.sbhome}: it holds other files " \
                          "too (thesis.odt); nothing was changed\n"
    assert (user.home / ".config/autostart/scanbridge.desktop").exists()


def test_install_and_uninstall_want_user_and_say_so_in_one_line(user):
    for command in ("install", "uninstall"):
        done = user(command)
        assert done.returncode == 2
        assert done.stderr == f"scanbridge {command}: the following arguments are required: " \
                              f"--user (see: scanbridge {command} --help)\n"


def executable_in(folder: Path) -> Path:
    folder.mkdir()
    script = folder / "scanbridge"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("name", ["my scans 100% $HOME", 'my "scans" \\ l\'s'])
def test_odd_paths_are_quoted_so_systemd_reads_them_back(tmp_path, name):
    script = executable_in(tmp_path / name)
    unit = tmp_path / "scanbridge.service"
    unit.write_text(user_unit([str(script), "--home", str(script.parent)],
                              {"SCANBRIDGE_CONFIG": str(script.parent / "etc")}))
    verified = verify_unit(unit, tmp_path / "runtime")
    # verify looks the executable up: found only if its path came back whole. systemd
    # refuses quotes and backslashes in it, so such a path goes through env.
    assert verified.returncode == 0 and verified.stderr == "", verified.stderr
    via_env = "/usr/bin/env " if '"' in name else ""
    assert f"\nExecStart={via_env}\"" in unit.read_text()


def test_odd_paths_are_quoted_so_desktop_readers_read_them_back(tmp_path):
    script = executable_in(tmp_path / 'my "scans" 100% $HOME\\x')
    entry = tmp_path / "scanbridge.desktop"
    entry.write_text(autostart_entry([str(script), "--home", str(script.parent)], {}))
    validated = validate_entry(entry)
    assert validated.returncode == 0 and validated.stdout == "", validated.stdout
    # The spec's quoting rule (\" \` \$ \\ inside quotes), then its string escape rule
    # (every backslash doubled again), then field codes (%%).
    quoted = str(script).replace("\\", "\\\\\\\\").replace('"', '\\\\"') \
        .replace("$", "\\\\$").replace("%", "%%")
    assert f'Exec="{quoted}" --home ' in entry.read_text()


def test_the_unit_template_is_package_data_of_the_cli():
    assert UNIT_TEMPLATE == CHECKOUT / "scanbridge" / "units" / "user" / "scanbridge.service"
    assert "ExecStart=@SCANBRIDGE@ run\n@ENVIRONMENT@\n" in UNIT_TEMPLATE.read_text()
