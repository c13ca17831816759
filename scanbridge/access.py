"""``scanbridge allow ORIGIN``: let a web origin use the service (``[access]
allowed_origins`` in ``user_config.ini``, which the gateway re-reads).

    scanbridge allow https://app.example.com
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import stat
from pathlib import Path

from broker import config as configlib
from broker.procutil import atomic_write
from common.commands import EXIT_CONFIG, EXIT_USAGE, command, fail


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
    keep_owner(path, lambda mode: atomic_write(path, text.encode("utf-8"), mode))
    return True


def keep_owner(path: Path, write) -> None:
    """Replace ``path`` by ``write(mode)`` keeping the owner and group it had: the system
    service's /etc/scanbridge files are root:scanbridge 0640, and one that root rewrote as
    root:root would shut the service out. Camera URLs may hold passwords, so the file is
    never left for others, and the group keeps its read only where it is a group of its
    own (the service's), not the owner's primary group: a home's files stay 0600."""
    try:
        before = path.stat()
    except FileNotFoundError:
        write(0o600)
        return
    mode = stat.S_IMODE(before.st_mode) & 0o600
    if before.st_mode & stat.S_IRGRP and before.st_gid != primary_group(before.st_uid):
        mode |= stat.S_IRGRP
    write(mode)
    after = path.stat()
    if (after.st_uid, after.st_gid) != (before.st_uid, before.st_gid):
        try:
            os.chown(path, before.st_uid, before.st_gid)
        except PermissionError:
            pass  # not root: the file stays this user's
    if stat.S_IMODE(after.st_mode) != mode:  # the umask (077) took the group's read
        os.chmod(path, mode)


def primary_group(uid: int) -> int | None:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return None


def build(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("origin", help="e.g. https://app.example.com")


@command("allow", "allow a web origin to use the service", build)
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
    except OSError as exc:
        fail(f"cannot change {path}: {exc.strerror}")
    print(f"{'allowed' if added else 'already allowed'}: {origin} (in {path})")
    return 0
