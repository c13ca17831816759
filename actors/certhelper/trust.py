"""Browser and system trust stores: finding them, and adding or removing the local CA.

Firefox keeps its own NSS database in every profile; Chromium on Linux reads the user's
``~/.pki/nssdb``; other programs read the system store (``update-ca-certificates``); the
browsers of every user of the machine, their enterprise policies (``policies.py``). NSS
databases are changed with ``certutil`` (libnss3-tools), the way mkcert does it: the CA
goes in as ``-t C,,`` (trusted to issue server certificates) under a nickname that is
its own subject name, so two homes' CAs never replace each other.

As root, the files in a user's folders are the user's to swap for links at any moment, so
root only looks there: ``certutil`` (and ``mkdir``) run as the store's user, with their
uid, gid and groups, and can change only what that user could; ``profiles.ini`` is read
only when it is a regular file of the user's (not a link, never blocking), and a profile
is a folder the user owns. Nothing is chowned.
"""

from __future__ import annotations

import configparser
import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import policies
from .policies import PolicyError

# Where Firefox keeps profiles, relative to a home: the XDG folder (Firefox 147 and later,
# new installs), the classic one, snap, flatpak.
FIREFOX_ROOTS = (".config/mozilla/firefox", ".mozilla/firefox",
                 "snap/firefox/common/.mozilla/firefox",
                 ".var/app/org.mozilla.firefox/config/mozilla/firefox",
                 ".var/app/org.mozilla.firefox/.mozilla/firefox")
SYSTEM_ANCHORS = Path("/usr/local/share/ca-certificates")
SYSTEM_LINKS = Path("/etc/ssl/certs")  # update-ca-certificates' NAME.pem links to anchors
SYSTEM_HOOKS = Path("/etc/ca-certificates/update.d")
CERTUTIL_SECONDS = 30
INI_BYTES = 1 << 20  # profiles.ini is a few hundred bytes


class TrustError(Exception):
    """A trust store that could not be read or changed; ``str()`` says which and why."""


@dataclass(frozen=True)
class Store:
    browser: str  # "firefox", "chromium", "system" or a policy kind (policies.KINDS)
    path: Path  # the NSS database folder, the system anchor file or the policy file
    user: str

    @property
    def label(self) -> str:
        if self.browser == "system":
            return f"system store ({self.path})"
        if self.browser in policies.KINDS:
            return f"{self.browser.split('-')[0].capitalize()} policy ({self.path})"
        return f"{self.browser} {self.path} (user {self.user})"


def homes(users: list[str]) -> list[tuple[str, Path]]:
    """(user, home folder) of each configured user; none configured = this process's user.

    This process's own home is ``$HOME``, so a service started with another HOME (tests,
    containers) looks there.
    """
    if not users:
        return [(home_user(Path.home()), Path.home())]
    found = []
    for user in users:
        try:
            found.append((user, Path(pwd.getpwnam(user).pw_dir)))
        except KeyError:
            continue  # reported by doctor; a user may be created later
    return found


def home_user(home: Path) -> str:
    """Who this process's own home is worked in as: as root, the home's owner (a root
    service with another user's HOME must not work there as root); else this user."""
    uid = os.geteuid()
    if uid == 0:
        try:
            uid = home.stat().st_uid
        except OSError:
            pass
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _owner_uid(user: str) -> int | None:
    """The uid a folder must have to count as ``user``'s; None when no check is needed."""
    if os.geteuid() != 0:
        return None  # this process can do no more in a folder than its own user can
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return -1  # no such user: nothing counts as theirs


def _owned_text(path: Path, uid: int | None) -> str | None:
    """A small regular file's text, read without following a link at its name and without
    blocking (a FIFO), when ``uid`` (if given) owns it; else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return None
    with open(fd, "rb") as file:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or uid is not None and st.st_uid != uid:
            return None
        return file.read(INI_BYTES).decode("utf-8", errors="replace")


def firefox_roots(home: Path) -> list[Path]:
    return [home / root for root in FIREFOX_ROOTS]


def firefox_profiles(home: Path, user: str) -> list[Path]:
    """Every Firefox profile folder of one home: listed in profiles.ini, or found inside."""
    uid = _owner_uid(user)
    found: list[Path] = []
    for root in firefox_roots(home):
        text = _owned_text(root / "profiles.ini", uid)
        if text is not None:
            parser = configparser.RawConfigParser(strict=False)
            try:
                parser.read_string(text)
            except configparser.Error:
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
        try:
            st = path.stat()
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode) and (uid is None or st.st_uid == uid):
            unique.setdefault(os.path.realpath(path), path)
    return sorted(unique.values())


def firefox_stores(users: list[str]) -> list[Store]:
    return [Store("firefox", profile, user)
            for user, home in homes(users) for profile in firefox_profiles(home, user)]


def chromium_store(user: str, home: Path) -> Store:
    return Store("chromium", home / ".pki" / "nssdb", user)


def system_anchor(nickname: str) -> Path:
    safe = "".join(c if c.isalnum() else "-" for c in nickname).strip("-").lower()
    return SYSTEM_ANCHORS / f"{safe}.crt"


def system_stores(nickname: str) -> list[Store]:
    """What trusts the CA for every user of the machine: the system store first (the
    Firefox policy installs its copy), then the browsers' enterprise policies."""
    return [Store("system", system_anchor(nickname), "root")] + [
        Store(kind, policies.paths(kind)[0], "root") for kind in policies.KINDS]


def _policy(call, *args):
    try:
        return call(*args)
    except PolicyError as exc:
        raise TrustError(str(exc)) from None


def _as_user(user: str) -> dict:
    """``subprocess`` arguments that run a program as ``user`` when this process is root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise TrustError(f"no user {user!r} on this system") from None
    if entry.pw_uid == 0:
        return {}
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(user, entry.pw_gid), "cwd": "/",
            "env": {"HOME": entry.pw_dir, "USER": user, "LOGNAME": user,
                    "PATH": os.environ.get("PATH", os.defpath)}}


def _run(store: Store, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which(argv[0])
    if exe is None:
        raise TrustError(f"{argv[0]} not found" +
                         (" (install libnss3-tools)" if argv[0] == "certutil" else ""))
    try:
        return subprocess.run([exe, *argv[1:]], input=stdin, capture_output=True, text=True,
                              timeout=CERTUTIL_SECONDS, **_as_user(store.user))
    except subprocess.TimeoutExpired:
        raise TrustError(f"{' '.join(argv[:2])} did not finish in {CERTUTIL_SECONDS} s "
                         "(is the database locked?)") from None


def certutil(store: Store, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """``certutil`` on the store's database, as the store's user."""
    return _run(store, ["certutil", *args, "-d", f"sql:{store.path}"], stdin)


def has_ca(store: Store, nickname: str, ca_pem: bytes | None = None) -> bool:
    """True when the store holds the CA (for the system store: the same file)."""
    if store.browser == "system":
        try:
            return ca_pem is None or store.path.read_bytes() == ca_pem
        except OSError:
            return False
    if store.browser in policies.KINDS:
        return _policy(policies.has, store.browser, nickname, ca_pem, system_anchor(nickname))
    if not (store.path / "cert9.db").exists():
        return False
    return certutil(store, "-L", "-n", nickname).returncode == 0


def add_ca(store: Store, nickname: str, ca_path: Path) -> None:
    if store.browser == "system":
        _system_add(store, ca_path)
        return
    if store.browser in policies.KINDS:
        _policy(policies.add, store.browser, ca_path.read_bytes(), system_anchor(nickname))
        return
    if store.browser == "chromium" and not (store.path / "cert9.db").exists():
        done = _run(store, ["mkdir", "-p", "-m", "700", "--", str(store.path)])
        if done.returncode == 0:
            done = certutil(store, "-N", "--empty-password")
        if done.returncode != 0:
            raise TrustError(f"cannot create {store.label}: {_reason(done)}")
    # On stdin: the user certutil runs as may not read cert/.
    done = certutil(store, "-A", "-n", nickname, "-t", "C,,", stdin=ca_path.read_text())
    if done.returncode != 0:
        raise TrustError(f"cannot add the CA to {store.label}: {_reason(done)}")


def remove_ca(store: Store, nickname: str) -> bool:
    """Remove the CA; False when it was not there."""
    if store.browser == "system":
        if not store.path.exists():
            return False
        store.path.unlink()
        _update_system_store(fresh=True)  # without it the symlinks to the file stay
        _tell_hooks(f"-{SYSTEM_LINKS / store.path.with_suffix('.pem').name}\n")
        return True
    if store.browser in policies.KINDS:
        return _policy(policies.remove, store.browser, nickname, system_anchor(nickname))
    if not has_ca(store, nickname):
        return False
    done = certutil(store, "-D", "-n", nickname)
    if done.returncode != 0:
        raise TrustError(f"cannot remove the CA from {store.label}: {_reason(done)}")
    return True


def _reason(done: subprocess.CompletedProcess) -> str:
    text = (done.stderr or done.stdout).strip().splitlines()
    return text[-1] if text else f"certutil exit status {done.returncode}"


def _system_add(store: Store, ca_path: Path) -> None:
    if os.geteuid() != 0:
        raise TrustError("the system store needs root (run: sudo scanbridge trust)")
    if not SYSTEM_ANCHORS.parent.is_dir():
        raise TrustError(f"{SYSTEM_ANCHORS.parent} does not exist (install ca-certificates)")
    SYSTEM_ANCHORS.mkdir(exist_ok=True)
    shutil.copyfile(ca_path, store.path)
    store.path.chmod(0o644)
    _update_system_store()


def _tell_hooks(lines: str) -> None:
    """Give update-ca-certificates' hooks the ``-/etc/ssl/certs/NAME.pem`` lines it never
    writes for a removed local CA: without them Java's keystore (ca-certificates-java)
    keeps trusting the CA."""
    if not SYSTEM_HOOKS.is_dir():
        return
    for hook in sorted(SYSTEM_HOOKS.iterdir()):
        if hook.is_file() and os.access(hook, os.X_OK) and not hook.name.startswith("."):
            subprocess.run([str(hook)], input=lines, capture_output=True, text=True,
                           timeout=120)


def _update_system_store(fresh: bool = False) -> None:
    exe = shutil.which("update-ca-certificates")
    if exe is None:
        raise TrustError("update-ca-certificates not found (install ca-certificates)")
    done = subprocess.run([exe, *(["--fresh"] if fresh else [])], capture_output=True,
                          text=True, timeout=120)
    if done.returncode != 0:
        raise TrustError(f"update-ca-certificates failed: {_reason(done)}")
