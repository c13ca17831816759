"""Where an install finds its files and its home: ``shipped()``, ``INSTALLED``,
``home_default()``, ``SCANBRIDGE_CONFIG`` and the default ini files a new home gets.

An installed wheel is told from a checkout by ``broker/shipped/``; the test that sees the
installed side copies the ``broker`` package next to such a folder and asks a fresh
interpreter, since ``INSTALLED`` is decided once, at import.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broker import config
from broker.config import CHECKOUT, INI_FILES, Home, home_default, shipped


def test_a_checkout_is_not_installed_and_ships_its_own_files():
    assert not (CHECKOUT / "broker" / "shipped").exists()
    assert config.INSTALLED is False
    assert shipped("supervisor.conf") == CHECKOUT / "supervisor.conf"
    assert shipped("ini/sane.d").is_dir()


def test_a_package_with_shipped_files_is_installed_and_reads_them_there(tmp_path):
    shutil.copytree(CHECKOUT / "broker", tmp_path / "broker",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "broker" / "shipped" / "ini").mkdir(parents=True)
    probe = ("import json; from broker import config; print(json.dumps([config.INSTALLED, "
             "str(config.shipped('ini/sane.d')), str(config.Home().root)]))")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "user"), "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    installed, sane, root = json.loads(done.stdout)
    assert installed is True
    assert sane == str(tmp_path / "broker" / "shipped" / "ini" / "sane.d")
    assert root == str(tmp_path / "user" / ".local" / "share" / "scanbridge")


@pytest.mark.parametrize("environ, installed, expected", [
    ({"HOME": "/home/ann"}, False, CHECKOUT),
    ({"HOME": "/home/ann"}, True, Path("/home/ann/.local/share/scanbridge")),
    ({"HOME": "/home/ann", "XDG_DATA_HOME": "/data/ann"}, True, Path("/data/ann/scanbridge")),
    # XDG: a relative path in XDG_DATA_HOME is invalid and to be ignored.
    ({"HOME": "/home/ann", "XDG_DATA_HOME": "data"}, True,
     Path("/home/ann/.local/share/scanbridge")),
    ({"HOME": "/home/ann", "SCANBRIDGE_HOME": "/srv/sb"}, True, Path("/srv/sb")),
    ({"HOME": "/home/ann", "SCANBRIDGE_HOME": "/srv/sb"}, False, Path("/srv/sb")),
])
def test_the_home_is_scanbridge_home_else_the_checkout_else_the_users_data_folder(
        environ, installed, expected):
    assert home_default(environ, installed) == expected


def test_scanbridge_config_moves_the_ini_folder_and_ensure_leaves_it_alone(tmp_path,
                                                                          monkeypatch):
    etc = tmp_path / "etc"
    monkeypatch.setenv("SCANBRIDGE_CONFIG", str(etc))
    home = Home(tmp_path / "home")
    assert home.ini == etc and not home.own_ini
    home.ensure()
    assert not etc.exists()  # the administrator's folder: never made by the service
    assert config.load(home).ports.http == [18622, 18625]  # no folder: the defaults
    etc.mkdir()
    (etc / "DSConfiguration.ini").write_text("[ports]\nhttp = 18700\n")
    assert config.load(home).ports.http == [18700]


def test_a_new_home_gets_the_shipped_ini_files_and_keeps_its_own(tmp_path):
    home = Home(tmp_path / "home")
    home.ensure()
    own = "[ports]\nhttp = 18700\n"
    (home.ini / "DSConfiguration.ini").write_text(own)
    assert home.seed() == ["service.ini", "user_config.ini", "sane.d"]
    assert (home.ini / "DSConfiguration.ini").read_text() == own
    for name in INI_FILES[1:]:
        assert (home.ini / name).read_bytes() == (CHECKOUT / "ini" / name).read_bytes()
    assert sorted(p.name for p in (home.ini / "sane.d").iterdir()) == \
        sorted(p.name for p in (CHECKOUT / "ini" / "sane.d").iterdir())
    assert home.seed() == []  # once


def test_seeding_an_ini_folder_that_cannot_be_written_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANBRIDGE_CONFIG", str(tmp_path / "absent"))
    home = Home(tmp_path / "home")
    assert home.seed() == []
    assert not (tmp_path / "absent").exists()
    assert not list(tmp_path.glob("**/.*"))  # no partial copy left behind


def test_the_checkouts_own_home_is_not_seeded_from_itself():
    assert Home(CHECKOUT).seed() == []
