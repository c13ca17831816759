"""Browser and system trust stores: finding them, and adding or removing the local CA.

Firefox keeps its own NSS database in every profile; Chromium on Linux reads the user's
``~/.pki/nssdb``; other programs read the system store (``update-ca-certificates``). NSS
databases are changed with ``certutil`` (libnss3-tools), the way mkcert does it: the CA
goes in as ``-t C,,`` (trusted to issue server certificates) under a nickname that is
its own subject name, so two homes' CAs never replace each other.
"""

from __future__ import annotations

import configparser
import getpass
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Where Firefox keeps profiles, relative to a home: the XDG folder (Firefox 147 and later,
# new installs), the classic one, snap, flatpak.
FIREFOX_ROOTS = (".config/mozilla/firefox", ".mozilla/firefox",
                 "snap/firefox/common/.mozilla/firefox",
                 ".var/app/org.mozilla.firefox/config/mozilla/firefox",
                 ".var/app/org.mozilla.firefox/.mozilla/firefox")
NSS_FILES = ("cert9.db", "key4.db", "pkcs11.txt")
SYSTEM_ANCHORS = Path("/usr/local/share/ca-certificates")
CERTUTIL_SECONDS = 30


class TrustError(Exception):
    """A trust store that could not be read or changed; ``str()`` says which and why."""


@dataclass(frozen=True)
class Store:
    browser: str  # "firefox", "chromium" or "system"
    path: Path  # the NSS database folder, or the system anchor file
    user: str

    @property
    def label(self) -> str:
        if self.browser == "system":
            return f"system store ({self.path})"
        return f"{self.browser} {self.path} (user {self.user})"


def homes(users: list[str]) -> list[tuple[str, Path]]:
    """(user, home folder) of each configured user; none configured = this process's user.

    This process's own home is ``$HOME``, so a service started with another HOME (tests,
    containers) looks there.
    """
    if not users:
        return [(getpass.getuser(), Path.home())]
    found = []
    for user in users:
        try:
            found.append((user, Path(pwd.getpwnam(user).pw_dir)))
        except KeyError:
            continue  # reported by doctor; a user may be created later
    return found


def firefox_roots(home: Path) -> list[Path]:
    return [home / root for root in FIREFOX_ROOTS]


def firefox_profiles(home: Path) -> list[Path]:
    """Every Firefox profile folder of one home: listed in profiles.ini, or found inside."""
    found: list[Path] = []
    for root in firefox_roots(home):
        ini = root / "profiles.ini"
        if ini.is_file():
            parser = configparser.RawConfigParser(strict=False)
            try:
                parser.read(ini, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError, OSError):
                pass  # a half-written file: the next event reads it again
            for section in parser.sections():
                path = parser.get(section, "Path", fallback="")
                if not section.startswith("Profile") or not path:
                    continue
                relative = parser.get(section, "IsRelative", fallback="1") != "0"
                found.append(root / path if relative else Path(path))
        if root.is_dir():
            for child in root.iterdir():
                if (child / "prefs.js").exists() or (child / "cert9.db").exists():
                    found.append(child)
    unique: dict[str, Path] = {}
    for path in found:
        if path.is_dir():
            unique.setdefault(os.path.realpath(path), path)
    return sorted(unique.values())


def firefox_stores(users: list[str]) -> list[Store]:
    return [Store("firefox", profile, user)
            for user, home in homes(users) for profile in firefox_profiles(home)]


def chromium_store(user: str, home: Path) -> Store:
    return Store("chromium", home / ".pki" / "nssdb", user)


def system_anchor(nickname: str) -> Path:
    safe = "".join(c if c.isalnum() else "-" for c in nickname).strip("-").lower()
    return SYSTEM_ANCHORS / f"{safe}.crt"


def certutil(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("certutil")
    if exe is None:
        raise TrustError("certutil not found (install libnss3-tools)")
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True,
                              timeout=CERTUTIL_SECONDS)
    except subprocess.TimeoutExpired:
        raise TrustError(f"certutil {args[0]} did not finish in {CERTUTIL_SECONDS} s "
                         "(is the database locked?)") from None


def _database(store: Store) -> str:
    return f"sql:{store.path}"


def has_ca(store: Store, nickname: str, ca_pem: bytes | None = None) -> bool:
    """True when the store holds the CA (for the system store: the same file)."""
    if store.browser == "system":
        try:
            return ca_pem is None or store.path.read_bytes() == ca_pem
        except OSError:
            return False
    if not (store.path / "cert9.db").exists():
        return False
    return certutil("-L", "-d", _database(store), "-n", nickname).returncode == 0


def add_ca(store: Store, nickname: str, ca_path: Path) -> None:
    if store.browser == "system":
        _system_add(store, ca_path)
        return
    if store.browser == "chromium" and not (store.path / "cert9.db").exists():
        store.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        done = certutil("-N", "--empty-password", "-d", _database(store))
        if done.returncode != 0:
            raise TrustError(f"cannot create {store.label}: {_reason(done)}")
    done = certutil("-A", "-d", _database(store), "-n", nickname, "-t", "C,,", "-i",
                    str(ca_path))
    if done.returncode != 0:
        raise TrustError(f"cannot add the CA to {store.label}: {_reason(done)}")
    _give_back(store)


def remove_ca(store: Store, nickname: str) -> bool:
    """Remove the CA; False when it was not there."""
    if store.browser == "system":
        if not store.path.exists():
            return False
        store.path.unlink()
        _update_system_store(fresh=True)  # without it the symlinks to the file stay
        return True
    if not has_ca(store, nickname):
        return False
    done = certutil("-D", "-d", _database(store), "-n", nickname)
    if done.returncode != 0:
        raise TrustError(f"cannot remove the CA from {store.label}: {_reason(done)}")
    return True


def _reason(done: subprocess.CompletedProcess) -> str:
    text = (done.stderr or done.stdout).strip().splitlines()
    return text[-1] if text else f"certutil exit status {done.returncode}"


def _give_back(store: Store) -> None:
    """As root, files certutil created in a user's folder must stay that user's."""
    if os.geteuid() != 0:
        return
    if store.browser == "chromium":  # ~/.pki/nssdb: the home's owner
        owner = store.path.parent.parent.stat()
        paths = [store.path.parent, store.path]
    else:  # a Firefox profile: the profile folder's owner
        owner = store.path.stat()
        paths = []
    for path in paths + [store.path / name for name in NSS_FILES]:
        if path.exists():
            os.chown(path, owner.st_uid, owner.st_gid)


def _system_add(store: Store, ca_path: Path) -> None:
    if os.geteuid() != 0:
        raise TrustError("the system store needs root (run: sudo scanbridge trust)")
    if not SYSTEM_ANCHORS.parent.is_dir():
        raise TrustError(f"{SYSTEM_ANCHORS.parent} does not exist (install ca-certificates)")
    SYSTEM_ANCHORS.mkdir(exist_ok=True)
    shutil.copyfile(ca_path, store.path)
    store.path.chmod(0o644)
    _update_system_store()


def _update_system_store(fresh: bool = False) -> None:
    exe = shutil.which("update-ca-certificates")
    if exe is None:
        raise TrustError("update-ca-certificates not found (install ca-certificates)")
    done = subprocess.run([exe, *(["--fresh"] if fresh else [])], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise TrustError(f"update-ca-certificates failed: {_reason(done)}")
