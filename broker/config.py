"""The home folder and the three ini files, checked against one schema.

``SCANBRIDGE_HOME`` holds ``ini/ logs/ dumps/ cache/ cert/ upload/ run/``; by default it is
the checkout when running from one, and ``$XDG_DATA_HOME/scanbridge`` for an installed
wheel (``home_default``). ``SCANBRIDGE_CONFIG`` puts the ini files in another folder (the
system service reads them from ``/etc/scanbridge``). The files of the checkout the service
reads (``supervisor.conf``, the shipped ini files and ``sane.d``, the docs) are found with
``shipped()``: a wheel carries them in ``broker/shipped/``. A new home gets copies of the
default ini files on its first start (``Home.seed``).

The ini files are ``DSConfiguration.ini`` (ports, limits, timings), ``service.ini``
(names) and ``user_config.ini`` (access). A missing file means "all defaults". A bad
value, or a line that is not a setting, raises ``ConfigError`` whose text is
``file:line: key: reason`` - the CLI prints it as it is, never a traceback; an unknown
section or key is a warning instead (``config_unused``: an older file must not stop an
upgrade).

Every key is declared once in ``SCHEMA`` (``config_schema``) with its default, its parser
(``config_values``) and a one-line meaning; ``docs/configuration.md`` and the shipped files
follow it. Callers read all of it through this module.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Mapping

from . import config_unused as unused
from .config_schema import SCHEMA, Key
from .config_unused import ConfigWarning
# Read through this module by the gateway, the uploader, the CLI and the broker.
from .config_values import (CurveClient, parse_origin, parse_upload_target,  # noqa: F401
                            path_escape)

if TYPE_CHECKING:
    from .logs import Log

# Where the packages are: the checkout when running from one (site-packages when installed).
CHECKOUT = Path(__file__).resolve().parent.parent
# An installed wheel has no checkout: its build copies the checkout's files here.
SHIPPED = Path(__file__).resolve().parent / "shipped"
INSTALLED = SHIPPED.is_dir()
INI_FILES = ("DSConfiguration.ini", "service.ini", "user_config.ini")


def shipped(relative: str) -> Path:
    """A file the project ships (``supervisor.conf``, ``ini/sane.d``, ``docs/api.md``...):
    in ``broker/shipped/`` of an installed wheel, else in the checkout."""
    return (SHIPPED if INSTALLED else CHECKOUT) / relative


def home_default(environ: Mapping[str, str] = os.environ, installed: bool = INSTALLED) -> Path:
    """``SCANBRIDGE_HOME``; else the checkout when running from one (where ``make run``
    always kept it); else the user's data folder, as XDG says (a relative
    ``XDG_DATA_HOME`` is to be ignored)."""
    if environ.get("SCANBRIDGE_HOME"):
        return Path(environ["SCANBRIDGE_HOME"])
    if not installed:
        return CHECKOUT
    data = environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data):
        data = os.path.join(environ.get("HOME") or Path.home(), ".local", "share")
    return Path(data) / "scanbridge"


class ConfigError(Exception):
    """A configuration problem; ``str()`` is the one line shown to the operator."""


@dataclass(frozen=True)
class Line:
    """One ``key = value`` of an ini file with where it was written."""
    section: str
    key: str
    value: str
    number: int


def read_ini(path: Path) -> list[Line | tuple[str, int]]:
    """Parse an ini file keeping line numbers: ``Line`` items and ``(section, line)``."""
    items: list[Line | tuple[str, int]] = []
    section = None
    last: Line | None = None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}:1: (file): not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}:1: (file): cannot read: {exc.strerror}") from None
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped[0] in "#;":
            continue
        if raw[0] in " \t" and last is not None:  # continuation of a long value
            last = Line(last.section, last.key, f"{last.value} {stripped}", last.number)
            items[-1] = last
            continue
        if stripped.startswith("["):
            if not stripped.endswith("]"):
                raise ConfigError(f"{path}:{number}: {stripped}: section header lacks ']'")
            section = stripped[1:-1].strip()
            items.append((section, number))
            last = None
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)\s*[=:]\s*(.*)$", stripped)
        if not match:
            raise ConfigError(f"{path}:{number}: {stripped[:40]}: not 'key = value'")
        last = Line(section or "", match.group(1), match.group(2).strip(), number)
        items.append(last)
    return items


def _schema_key(section: dict[str, Key], key: str) -> Key | None:
    if key in section:
        return section[key]
    for pattern, spec in section.items():
        if pattern.startswith("*") and key.endswith(pattern[1:]) and len(key) > len(pattern) - 1:
            return spec
    return None


def load_file(path: Path, name: str,
              warnings: list[ConfigWarning] | None = None) -> dict[str, dict[str, Any]]:
    """Values of one ini file (defaults filled in). Lines read but not used (unknown keys
    and sections, the commercial service's keys) are added to ``warnings``; anything else
    wrong raises ConfigError (``config_unused`` says which is which, and why)."""
    schema = SCHEMA[name]
    values = {sec: {k: spec.parse(spec.default) for k, spec in keys.items() if "*" not in k}
              for sec, keys in schema.items()}
    if not path.exists():
        return values
    found: list[ConfigWarning] = []
    seen_sections: set[str] = set()
    seen: set[tuple[str, str]] = set()
    for item in read_ini(path):
        if isinstance(item, tuple):
            section, number = item
            if section in seen_sections:
                raise ConfigError(f"{path}:{number}: [{section}]: section written twice")
            seen_sections.add(section)
            if section not in schema:
                found.append(unused.unknown_section(path, number, section, schema))
            continue
        spec = _schema_key(schema.get(item.section, {}), item.key)
        if spec is None:
            warning = unused.commercial(path, name, item.number, item.key)
            # The keys of an unknown section go unsaid: its header was warned about.
            if warning is None and (item.section in schema or not item.section):
                warning = unused.unknown_key(path, item.number, item.key, item.section,
                                             schema)
            if warning is not None:
                found.append(warning)
            continue
        if (item.section, item.key) in seen:
            raise ConfigError(f"{path}:{item.number}: {item.key}: key written twice")
        seen.add((item.section, item.key))
        try:
            values[item.section][item.key] = spec.parse(item.value)
        except ValueError as exc:
            raise ConfigError(f"{path}:{item.number}: {item.key}: {exc}") from None
    if warnings is not None:
        warnings.extend(found)
    return values


class Home:
    """The folders of one Scanbridge home (see module docstring)."""

    # 0700, all of them: sockets, keys and pages, but also camera passwords (ini/), upload
    # URLs (logs/) and stacks (dumps/) that other local users must not read.
    PRIVATE = ("ini", "logs", "dumps", "run", "cert", "cache", "upload")
    UMASK = 0o077  # for every process writing in the home (supervisor.conf says it too)

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root or home_default()).resolve()
        for name in ("ini", "logs", "dumps", "cache", "cert", "upload", "run"):
            setattr(self, name, self.root / name)
        # The administrator's folder (/etc/scanbridge), not the home's: never made or chmodded.
        config = os.environ.get("SCANBRIDGE_CONFIG")
        self.own_ini = not config
        if config:
            self.ini = Path(config).resolve()
        self.buffer = self.cache / "buffer"  # the buffer's pages and saved documents

    def ensure(self) -> list[str]:
        """Create the folders, mode 0700 even if they existed.

        A ``cert/`` that cannot be made so is returned as a problem instead of raised: it
        only costs HTTPS, and the service must still serve HTTP. So is an ``ini/`` of
        another owner (shared, read-only configuration).
        """
        problems = []
        for name in self.PRIVATE:
            if name == "ini" and not self.own_ini:
                continue
            folder: Path = getattr(self, name)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                folder.chmod(0o700)
            except OSError as exc:
                if name == "cert":
                    problems.append(f"{folder}: {exc.strerror or exc}: HTTPS will not be "
                                    "served")
                elif name == "ini" and folder.is_dir():
                    problems.append(f"{folder}: {exc.strerror or exc}: others may read it")
                else:
                    raise
        return problems

    def seed(self) -> list[str]:
        """Copy the shipped ini files and ``sane.d/`` that the ini folder lacks, so that a
        new home has files to edit; returns what was written. A folder this user may not
        write (an administrator's) is left alone: a missing file means the defaults."""
        written: list[str] = []
        if not self.ini.is_dir():  # not made by ensure(): an administrator's, not there
            return written
        for name in (*INI_FILES, "sane.d"):
            source, target = shipped(f"ini/{name}"), self.ini / name
            if target.exists() or target.is_symlink() or source.resolve() == target.resolve():
                continue
            partial = target.with_name(f".{name}.{os.getpid()}")  # renamed when whole
            try:
                if source.is_dir():
                    # The shipped 0755/0644 must not follow into a private home: files
                    # take the umask (copyfile), the folder copytree's copystat undoes
                    shutil.copytree(source, partial, copy_function=shutil.copyfile)
                    partial.chmod(0o700)
                else:
                    shutil.copyfile(source, partial)
                os.replace(partial, target)
            except OSError:
                if partial.is_dir():
                    shutil.rmtree(partial, ignore_errors=True)
                else:
                    partial.unlink(missing_ok=True)
                continue
            written.append(name)
        return written

    @property
    def incoming(self) -> Path:
        """Request bodies the gateway spools for the buffer (an import too big to hold in
        memory and to send as a message)."""
        return self.cache / "incoming"

    def ipc(self, name: str) -> str:
        return f"ipc://{self.run / name}"

    @property
    def broker_endpoint(self) -> str:
        return self.ipc("broker.sock")

    @property
    def events_in(self) -> str:
        return self.ipc("events-in.sock")

    @property
    def events_out(self) -> str:
        return self.ipc("events-out.sock")


class Config(SimpleNamespace):
    """All settings: ``config.ports.http``, ``config.access.allowed_origins``, ...

    Sections are namespaces; ``config.home`` is the ``Home``.
    """

    home: Home
    warnings: list[ConfigWarning]  # lines read but not used (see config_unused)

    def ocr_workers(self) -> int:
        return self.ocr.ocr_workers or os.cpu_count() or 1

    def idle_stop(self, program: str) -> float:
        specific = getattr(self.ondemand, f"{program}_idle_stop", None)
        return self.ondemand.idle_stop if specific is None else specific


def load(home: Home | None = None) -> Config:
    """Read and check all three ini files of ``home``; raise ConfigError on any problem
    (lines read but not used are ``warnings``)."""
    home = home or Home()
    sections: dict[str, SimpleNamespace] = {}
    warnings: list[ConfigWarning] = []
    for name in INI_FILES:
        for section, values in load_file(home.ini / name, name, warnings).items():
            # Sections of the same name in two files share one namespace.
            sections.setdefault(section or "access", SimpleNamespace()).__dict__.update(values)
    cfg = Config(home=home, warnings=warnings, **sections)
    _check_together(cfg)
    return cfg


def log_warnings(cfg: Config, log: Log) -> None:
    """Each warning as one record of a program's log, at its start."""
    for warning in cfg.warnings:
        log.warning("configuration line not used", file=str(warning.path), line=warning.line,
                    key=warning.key, reason=warning.reason)


def _check_together(cfg: Config) -> None:
    """Rules between keys, reported at the line of the second key."""
    def fail(section: str, key: str, reason: str) -> None:
        path = cfg.home.ini / "DSConfiguration.ini"
        number = 1
        if path.exists():
            for item in read_ini(path):
                if isinstance(item, Line) and (item.section, item.key) == (section, key):
                    number = item.number
        raise ConfigError(f"{path}:{number}: {key}: {reason}")

    both = set(cfg.ports.http) & set(cfg.ports.https)
    if both:
        fail("ports", "https", f"port {min(both)} is also an HTTP port")
    if cfg.certhelper.renew_days >= cfg.certhelper.server_days:
        fail("certhelper", "renew_days", f"{cfg.certhelper.renew_days} is not fewer than "
             f"server_days ({cfg.certhelper.server_days}): the certificate would be "
             "renewed all the time")


def load_or_exit(home: Home | None = None) -> Config:
    """``load()`` for program entry points: a bad file ends the process with one line."""
    try:
        return load(home)
    except ConfigError as exc:
        print(f"scanbridge: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(78) from None  # EX_CONFIG


def render_defaults(name: str) -> str:
    """The text of a shipped ini file: every key with its default and meaning."""
    out = []
    for section, keys in SCHEMA[name].items():
        if section:
            out.append(f"[{section}]")
        for key, spec in keys.items():
            if "*" in key:
                out.append(f"; {key.replace('*', '<program>')} = {spec.default}  ({spec.doc})")
                continue
            out.append(f"; {spec.doc}")
            out.append(f"{key} = {spec.default}".rstrip())
        out.append("")
    return "\n".join(out)
