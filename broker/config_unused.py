"""Lines of the ini files that Scanbridge reads past: warnings, not refusals.

An ini file written for another Scanbridge release may name a key or a section this one
does not have (removed, renamed or moved since): refusing it would stop the service after
an upgrade that left the administrator's file as it was. So an unknown key or section is
a ``ConfigWarning`` collected in ``Config.warnings``: each program logs them when it
starts, ``scanbridge start``/``run`` print them and ``scanbridge doctor`` lists them. Keys
of the commercial service's ``DSConfiguration.ini`` (a file carried over from it) get their
own, friendlier warning: Scanbridge knows them and says what it has instead.

Still refused (``ConfigError``, see ``config.load_file``), because going on could run the
service with a setting other than the one written: a bad value of a known key (a wrong
port is not replaced by the default), a key or a section written twice (which one was
meant?), a line that is not ``key = value`` or a section header without ``]`` (it may be a
real setting mistyped). No release ever started with such a file, so an upgrade never
meets one it did not already refuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# Keys of the commercial service's DSConfiguration.ini named in its public documentation
# (its own file is matched without regard to case, as Windows reads ini files), with what
# Scanbridge has instead. Access-Control-Allow-Origin is there too, and used: config_schema.
#   Server:         https://www.dynamsoft.com/web-twain/docs/faq/enable-remote-scan.html
#   LogLevel:       https://www.dynamsoft.com/web-twain/docs/faq/general-troubleshooting-steps.html
#   EnableWebSetup: https://www.dynamsoft.com/web-twain/docs/extended-usage/
#                   dynamsoft-service-configuration.html
COMMERCIAL = {
    "server": "[network] bind sets the addresses Scanbridge listens on",
    "loglevel": "[log] level sets how much Scanbridge logs",
    "enablewebsetup": "Scanbridge has no setup page; these ini files are its settings "
                      "(scanbridge doctor checks them)",
}
COMMERCIAL_FILE = "DSConfiguration.ini"


@dataclass(frozen=True)
class ConfigWarning:
    """A line that was read but is not used; ``str()`` is ``file:line: key: reason``."""
    path: Path
    line: int
    key: str  # "[section]" for a section header
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.key}: {self.reason}"


def commercial(path: Path, name: str, line: int, key: str) -> ConfigWarning | None:
    """The warning for a key of the commercial service's file, if ``key`` is one."""
    instead = COMMERCIAL.get(key.lower()) if name == COMMERCIAL_FILE else None
    if instead is None:
        return None
    return ConfigWarning(path, line, key, "a setting of the commercial service's "
                         f"{name}, not used by Scanbridge ({instead})")


def unknown_key(path: Path, line: int, key: str, section: str,
                schema: dict[str, dict]) -> ConfigWarning:
    """An unknown key in ``section`` of a file whose sections are ``schema``: the keys the
    section has, or the section the key belongs in (a key moved, or written in the wrong
    place, is the likely case)."""
    where = f"in [{section}]" if section else "above the first [section]"
    homes = [s for s, keys in schema.items() if s != section and key in keys]
    if homes:
        hint = f"it is a key of [{homes[0]}]" if homes[0] else \
            "it is a key above the first [section]"
    elif schema.get(section):
        hint = f"known: {', '.join(schema[section])}"
    else:
        hint = "keys belong in a [section]"
    return ConfigWarning(path, line, key, f"unknown key {where}, not used ({hint})")


def unknown_section(path: Path, line: int, section: str,
                    schema: dict[str, dict]) -> ConfigWarning:
    known = ", ".join(f"[{s}]" for s in schema if s)
    return ConfigWarning(path, line, f"[{section}]", "unknown section, not used (its keys "
                         f"neither; this file has {known})")
