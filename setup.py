"""The build step setup.cfg cannot say: a wheel carries the checkout's files.

The service reads ``supervisor.conf``, the default ini files and ``sane.d/``, the docs and
``system-packages.txt`` from the checkout; an installed wheel has none, so they are copied
into the package folder ``broker/shipped/`` (same relative paths), where
``broker.config.shipped()`` finds them. They stay written once, in the checkout.

``SCANBRIDGE_VERSION=x.y.z`` (``make wheel VERSION=x.y.z``) builds another version than
``broker.__version__``: an upgrade test needs a newer build of the same tree. The built
``broker/__init__.py`` says it too, so the installed service reports what it is.
"""

import os
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SHIPPED = ("supervisor.conf", "README.md", "system-packages.txt", "ini/DSConfiguration.ini",
           "ini/service.ini", "ini/user_config.ini", "ini/sane.d", "docs/*.md")
VERSION_LINE = re.compile(r'^__version__ = "[^"]*"$', re.M)


def version_override() -> str | None:
    wanted = os.environ.get("SCANBRIDGE_VERSION", "").strip()
    if wanted and not re.fullmatch(r"\d+(\.\d+){1,3}", wanted):
        # One line, not a traceback: the Makefile passes VERSION= through.
        raise SystemExit(f"SCANBRIDGE_VERSION={wanted!r}: want numbers like 0.2.1")
    return wanted or None


def shipped_files() -> list[Path]:
    """The checkout's files the service reads, relative to the checkout."""
    found = []
    for pattern in SHIPPED:
        matches = sorted(HERE.glob(pattern))
        if not matches:
            raise SystemExit(f"setup.py: nothing matches {pattern} in {HERE}")
        for match in matches:
            files = sorted(p for p in match.rglob("*") if p.is_file()) if match.is_dir() \
                else [match]
            found += [path.relative_to(HERE) for path in files]
    return found


class BuildWithShipped(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            # An editable install runs from the checkout, which has the files already; a
            # broker/shipped/ there would make the checkout look like an installed wheel.
            return
        target = Path(self.build_lib, "broker", "shipped")
        shutil.rmtree(target, ignore_errors=True)  # no file removed from the checkout stays
        for relative in shipped_files():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / relative, target / relative)
        version = version_override()
        if version:
            init = Path(self.build_lib, "broker", "__init__.py")
            text, count = VERSION_LINE.subn(f'__version__ = "{version}"', init.read_text())
            if count != 1:
                raise SystemExit(f"setup.py: no single __version__ line in {init}")
            init.write_text(text)

    def get_outputs(self, include_bytecode=True):
        target = Path(self.build_lib, "broker", "shipped")
        return super().get_outputs(include_bytecode) + [
            str(target / relative) for relative in shipped_files()]


setup(cmdclass={"build_py": BuildWithShipped}, version=version_override())
